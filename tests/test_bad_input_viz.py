"""Issue 12, nothing silently wrong in figures and progress: importing the figures leaves
matplotlib's backend alone; an untouched group / pixel never gets the colour of a barely touched
one; the IS figure explains its flat part; the evaluation's progress moves inside a batch (every
model pass is reported) and the time estimate comes from the store's finished examples."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from helpers import small_cnn
from strattack import attacks
from strattack.evaluation.runner import AttackSpec, CostTally, estimate_line, run_evaluation
from strattack.evaluation.store import ExampleRecord, ResultStore
from strattack.interpretability import asm
from strattack.interpretability.analysis import measure_interpretability
from strattack.progress import passes_made, report_passes
from strattack.solver.groups import GroupSpec
from strattack.viz.figures import ZERO_COLOR, attack_comparison_figure
from strattack.viz.interpretability import (asm_panels_figure, is_vs_percentile_figure,
                                            zero_score_note)

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- item 1: backend
IMPORT_AND_PLOT = textwrap.dedent("""
    import sys
    import matplotlib
    if sys.argv[1] == "use":
        matplotlib.use("svg")
    before = matplotlib.get_backend()
    import strattack.cli, strattack.viz, strattack.viz.interpretability, strattack.viz.report_figures
    assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())
    assert "matplotlib.pyplot" not in sys.modules  # no global figure state either
    import torch
    from strattack.solver.groups import GroupSpec
    from strattack.viz import plot_attack_comparison
    from strattack.viz.interpretability import plot_is_vs_percentile
    x = torch.rand(1, 1, 4, 4)
    a = plot_attack_comparison(x, ["7 -> 8"], {"A": ((x + 0.1).clamp(0, 1), ["8"])},
                               GroupSpec.for_inputs(x, 2, 2), sys.argv[2] + "/a.png")
    b = plot_is_vs_percentile([30, 60], {"A": [0.5, 0.6]}, sys.argv[2] + "/b.png",
                              zero_fraction=[0.5])
    for p in (a, b):
        assert p.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n", p
    assert matplotlib.get_backend() == before
    print("backend", before)
""")


@pytest.mark.parametrize("how", ["use", "env"])
def test_importing_figures_keeps_the_matplotlib_backend_and_still_writes_pngs(tmp_path, how):
    env = {**os.environ, "MPLBACKEND": "svg", "OMP_NUM_THREADS": "1"}
    if how == "use":
        env.pop("MPLBACKEND")
    res = subprocess.run([sys.executable, "-c", IMPORT_AND_PLOT, how, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "backend svg"


# ------------------------------------------------------------------ item 3: zeros stand apart
def _rendered(fig) -> np.ndarray:
    """(H, W, 4) RGBA in [0, 1] of the figure as drawn."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba(), dtype=float) / 255


def _pixel(fig, rgba: np.ndarray, ax, col: float, row: float) -> np.ndarray:
    """Rendered colour at the centre of image cell (row, col) of ``ax``."""
    x, y = ax.transData.transform((col, row))
    return rgba[int(round(rgba.shape[0] - y)), int(round(x))]


def test_demo_heatmap_draws_a_zero_group_apart_from_the_smallest_nonzero_one():
    x = torch.zeros(1, 1, 4, 4)
    adv = x.clone()
    adv[0, 0, 0, 2] = 0.0004       # group (0, 1): mean |delta| 0.0255 / 255 scale: barely touched
    adv[0, 0, 2, 0] = 0.2          # group (1, 0)
    adv[0, 0, 3, 3] = 0.8          # group (1, 1): the maximum
    fig = attack_comparison_figure(x, ["7 -> 8"], {"StrAttack": (adv, ["8"])},
                                   GroupSpec.for_inputs(x, 2, 2))
    axes = fig.axes
    rgba = _rendered(fig)
    heat_ax = axes[2]
    zero = _pixel(fig, rgba, heat_ax, 0, 0)
    tiny = _pixel(fig, rgba, heat_ax, 1, 0)
    top = _pixel(fig, rgba, heat_ax, 1, 1)
    np.testing.assert_allclose(zero[:3], to_rgba(ZERO_COLOR)[:3], atol=0.01)
    assert np.abs(zero - tiny)[:3].sum() > 0.5, (zero, tiny)
    assert np.abs(zero - top)[:3].sum() > 0.3, (zero, top)   # nor like the largest
    # the titles say what the class names are
    titles = [ax.get_title() for ax in axes[:3]]
    assert titles[0] == "original\ntrue -> target: 7 -> 8"
    assert titles[1] == "StrAttack\npredicted: 8"
    assert titles[2].endswith("3 of 4 nonzero")
    assert "grey: exactly 0" in fig.axes[-1].get_ylabel()          # the colorbar says so


def test_asm_panels_draw_zero_perturbation_and_zero_score_apart_from_small_ones():
    x0 = torch.zeros(1, 6, 6, dtype=torch.float64)
    x0[0, 2] = 1.0                                   # a white stroke, like a digit's
    scores = torch.linspace(1, 2, 36, dtype=torch.float64).reshape(1, 6, 6)
    scores[0, 0, 0] = 0.0                            # zero ASM score (also the minimum)
    scores[0, 0, 1] = 1e-4                           # the smallest nonzero score
    delta = torch.zeros_like(x0)
    delta[0, 2, 1] = 1e-3                            # barely perturbed stroke pixel
    delta[0, 4, 4] = 0.5                             # the largest perturbation
    fig = asm_panels_figure(x0, scores, {"A": delta}, mask_percentile=0.0)   # keeps score > 0
    rgba = _rendered(fig)
    asm_ax, pert_ax = fig.axes[1], fig.axes[2]
    untouched_stroke = _pixel(fig, rgba, pert_ax, 3, 2)
    tiny_stroke = _pixel(fig, rgba, pert_ax, 1, 2)
    assert np.abs(untouched_stroke - tiny_stroke)[:3].sum() > 0.4, (untouched_stroke, tiny_stroke)
    zero_score = _pixel(fig, rgba, asm_ax, 0, 0)
    tiny_score = _pixel(fig, rgba, asm_ax, 1, 0)
    np.testing.assert_allclose(zero_score[:3], to_rgba(ZERO_COLOR)[:3], atol=0.01)
    assert np.abs(zero_score - tiny_score)[:3].sum() > 0.3, (zero_score, tiny_score)


def test_is_figure_notes_the_share_of_zero_scores():
    note = zero_score_note(torch.tensor([0.6, 0.7]))
    assert note.startswith("65% of the ASM scores are exactly 0 (per image 60% to 70%)")
    assert note.endswith("flat curves below ν ≈ 60.")
    assert "in every image" in zero_score_note([0.5, 0.5], "CAM")
    fig = is_vs_percentile_figure([30, 60, 90], {"A": [0.5, 0.5, 0.4]}, zero_fraction=[0.6, 0.7])
    assert [t.get_text() for t in fig.axes[0].texts] == [note]
    fig = is_vs_percentile_figure([30, 60, 90], {"A": [0.5, 0.5, 0.4]})
    assert not fig.axes[0].texts


def test_measure_interpretability_records_the_share_of_zero_asm_scores():
    model = small_cnn(1, seed=1).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = model(x).argmax(1)
    t = (y + 1) % 5
    curves = measure_interpretability(model, x, y, t, {"A": torch.rand_like(x) - 0.5},
                                      batch_size=2)
    want = (asm(model, x, y, t) == 0).flatten(1).double().mean(1)
    np.testing.assert_allclose(curves.zero_fraction["asm"].numpy(), want.numpy())
    assert curves.cam_method.startswith("Grad-CAM")    # no GAP head here: Grad-CAM instead


# ----------------------------------------------------------------------- item 2: progress
FAST = {
    "str_attack": dict(binary_search_steps=2, max_iterations=12),
    "cw_l2": dict(binary_search_steps=2, max_iterations=12),
    "ead": dict(binary_search_steps=2, max_iterations=12),
    "fgm": dict(grid_steps=3, search_steps=3),
    "ifgsm": dict(steps=3, grid_steps=3, search_steps=3),
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_every_model_pass_is_reported_and_adds_up_to_the_forward_passes(name):
    model = small_cnn(1, seed=2)
    x = torch.rand(3, 1, 8, 8)
    target = (model(x).argmax(1) + 1) % 5
    calls: list[int] = []
    with report_passes(calls.append):
        res = attacks.__dict__[name](model, x, target, targeted=True, **FAST[name])
    assert len(calls) > 1                       # reported during the call, not once at its end
    assert sum(calls) == int(res.forward_passes.sum())
    passes_made(5)                              # outside the block: nobody listens any more
    assert sum(calls) == int(res.forward_passes.sum())


def test_report_passes_nests_and_restores():
    outer: list[int] = []
    inner: list[int] = []
    with report_passes(outer.append):
        passes_made(1)
        with report_passes(inner.append):
            passes_made(2)
        with report_passes(None):
            passes_made(4)
        passes_made(8)
    assert outer == [1, 8] and inner == [2]


class FakeBar:
    """Records what run_evaluation does with its progress bar."""

    def __init__(self) -> None:
        self.n, self.total, self.updates, self.totals, self.postfix = 0, None, [], [], []

    def update(self, n: int) -> None:
        self.n += n
        self.updates.append(n)

    def refresh(self) -> None:
        self.totals.append(self.total)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix.append(text)

    def close(self) -> None:
        pass


def fake_bars(monkeypatch) -> list[FakeBar]:
    """The bars run_evaluation makes from now on, as FakeBars."""
    import strattack.evaluation.runner as runner

    bars: list[FakeBar] = []
    monkeypatch.setattr(runner, "_progress", lambda enabled, total: bars.append(FakeBar()) or bars[-1])
    return bars


def four_targeted_examples() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, list]:
    """A tiny model, 4 images, their labels and one targeted example per image."""
    model = small_cnn(1, seed=2)
    x = torch.rand(4, 1, 8, 8)
    labels = model(x).argmax(1)
    return model, x, labels, [(i, int(labels[i] + 1) % 5) for i in range(4)]


def test_evaluation_progress_moves_inside_a_batch_and_learns_passes_per_example(tmp_path,
                                                                                  monkeypatch):
    bars = fake_bars(monkeypatch)
    model, x, labels, tasks = four_targeted_examples()
    spec = AttackSpec("cw_l2", FAST["cw_l2"])
    lines: list[str] = []
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_evaluation(model, x, labels, tasks[:2], [spec], store, batch_size=2, group_size=2,
                       log=lines.append)
        first = bars[-1]
        key = next(iter(store.attacks()))
        passes = sum(r.forward_passes for r in store.records(key))
        assert len(first.updates) > 1 and first.n == passes      # many updates within one batch
        assert first.totals[0] is None                           # nothing known yet: no total
        assert lines == []                                       # and no time estimate
        assert first.postfix[0] == "cw_l2: 0/2 examples, 0/2 in all, estimating…"
        assert first.postfix[-1] == "cw_l2: 2/2 examples, 2/2 in all"
        run_evaluation(model, x, labels, tasks, [spec], store, batch_size=2, group_size=2,
                       log=lines.append)
        second = bars[-1]
    # the store's 2 finished examples give the passes of the 2 left: a total from the start
    assert second.totals[0] == passes
    assert len(lines) == 1 and lines[0].startswith("estimated time: ~")
    assert "(from 2 finished examples of cw_l2 on this device)" in lines[0]


def test_bar_has_a_total_of_examples_and_passes_from_the_first_batch_of_the_first_attack(
        tmp_path, monkeypatch):
    """Before any batch ends the bar says how many examples there are and that it is still
    estimating; after the first batch of the first attack, its passes per example stand in for
    the attacks not started yet, so the bar has a total (and tqdm an ETA) for the whole run."""
    bars = fake_bars(monkeypatch)
    model, x, labels, tasks = four_targeted_examples()
    specs = [AttackSpec("fgm", FAST["fgm"]), AttackSpec("cw_l2", FAST["cw_l2"])]
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_evaluation(model, x, labels, tasks, specs, store, batch_size=2, group_size=2)
        fgm = list(store.records(next(iter(store.attacks()))))        # registered first
    bar = bars[-1]
    assert bar.postfix[0] == "fgm: 0/4 examples, 0/8 in all, estimating…"
    assert bar.totals[0] is None
    first_batch = sum(r.forward_passes for r in fgm[:2])
    # after fgm's first batch: its passes per example times the 6 examples left, fgm's and cw's
    assert bar.postfix[1] == "fgm: 2/4 examples, 2/8 in all"
    assert bar.totals[1] == first_batch + round(first_batch / 2 * 6)
    assert all(total is not None for total in bar.totals[1:])
    assert bar.postfix[-1] == "cw_l2: 4/4 examples, 8/8 in all"


def test_a_total_the_passes_outrun_is_dropped_until_the_batch_ends():
    import strattack.evaluation.runner as runner

    bar = FakeBar()
    bar.total = 10
    advance = runner._advance(bar)
    advance(8)
    assert bar.total == 10
    advance(4)                                  # 12 of 10: the guess was low
    assert bar.n == 12 and bar.total is None


def _record(image: int, seconds: float, passes: int, device: str) -> ExampleRecord:
    return ExampleRecord(image=image, target=1, true_label=0, success=True, l0=1.0, l1=1.0,
                         l2=1.0, linf=1.0, groups=1.0, forward_passes=passes,
                         backward_passes=passes // 2, seconds=seconds, batch_size=8,
                         perturbation=np.zeros((1, 2, 2), np.float32), device=device)


def test_time_estimate_from_the_store_uses_this_devices_examples(tmp_path):
    here = "cpu (1 thread)"
    with ResultStore(tmp_path / "r.sqlite") as store:
        cw = store.add_attack("cw_l2", {})
        st = store.add_attack("str_attack", {})
        store.write(cw, [_record(i, 2.0, 100 + 2 * (i % 2), here) for i in range(40)])
        store.write(cw, [_record(100 + i, 500.0, 300, "cuda:0 H100") for i in range(10)])
        store.write(st, [_record(i, 6.0, 50, "cpu (2 threads)") for i in range(5)])
        tally = CostTally.from_stores([store], cw, here)
        other = CostTally.from_stores([store], st, here)
    assert tally.seconds_per_example == 2.0                      # the H100 rows are not timed
    assert tally.passes_per_example == (40 * 101 + 10 * 300) / 50  # passes: every device
    assert other.seconds_per_example is None and other.passes_per_example == 50
    assert estimate_line({"cw_l2": (360, tally)}) == (
        "estimated time: ~12 min (from 40 finished examples of cw_l2 on this device)")
    assert estimate_line({"cw_l2": (0, tally), "str_attack": (9, other)}) is None
    assert estimate_line({"cw_l2": (5400, tally), "str_attack": (9, other)}) == (
        "estimated time: ~3.0 h (from 40 finished examples of cw_l2 on this device), plus "
        "str_attack: no finished examples on this device yet")


def test_store_heatmaps_without_a_common_success_still_write_a_figure(tmp_path):
    """Was: ValueError from the empty perturbations once every panel shared one colour scale."""
    from strattack.viz.report_figures import plot_group_heatmaps

    with ResultStore(tmp_path / "r.sqlite", {"group_size": "2"}) as store:
        a = store.add_attack("fgm", {}, "fgm")
        b = store.add_attack("ifgsm", {}, "ifgsm")
        store.write(a, [_record(0, 1.0, 4, "cpu")])
        store.write(b, [_record(1, 1.0, 4, "cpu")])          # another image: nothing in common
        path = plot_group_heatmaps(store, tmp_path / "heat.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
