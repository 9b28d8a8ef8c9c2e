"""Pixel-level group-sparsity metrics (pixel l0, 4-connected clusters, d_{2,0}) and GSE's
interpretability score convention, on hand-made perturbations with known answers, and their
columns in `strattack report` (text, CSV, JSON, HTML)."""
from __future__ import annotations

import csv
import json
from collections import deque

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from strattack.cli import main
from strattack.evaluation.metrics import (cluster_count, group_sparsity_metrics, nonzero_patches,
                                          pixel_l0)
from strattack.evaluation.store import ResultStore
from strattack.interpretability.analysis import asm_interpretability_scores
from strattack.interpretability.asm import asm
from strattack.interpretability.score import (gse_interpretability_mask, percentile_mask,
                                              percentile_threshold)

pytestmark = pytest.mark.usefixtures("one_thread")


def _three_clusters() -> torch.Tensor:
    """(1, 3, 10, 10): an L on the border (channel 0; its corner in all channels), a U in the
    middle (channel 1) and a hook touching the U only diagonally (channel 2, negative)."""
    delta = torch.zeros(1, 3, 10, 10)
    for r, c in [(0, 0), (0, 1), (1, 0), (2, 0)]:                       # L on the border
        delta[0, 0, r, c] = 0.5
    delta[0, :, 0, 0] = 0.25
    for r, c in [(4, 3), (5, 3), (6, 3), (6, 4), (6, 5), (5, 5), (4, 5)]:   # U: arms meet below
        delta[0, 1, r, c] = 0.1
    for r, c in [(7, 6), (8, 6), (8, 7)]:                               # (7, 6) is diagonal to (6, 5)
        delta[0, 2, r, c] = -0.2
    return delta


def test_pixel_l0_counts_pixels_not_entries():
    delta = _three_clusters()
    assert int((delta != 0).sum()) == 16                  # the corner changes 3 channels
    assert pixel_l0(delta).tolist() == [14]
    assert pixel_l0(torch.zeros(2, 3, 4, 4)).tolist() == [0, 0]


def test_clusters_are_4_connected():
    delta = _three_clusters()
    assert cluster_count(delta).tolist() == [3]           # diagonal contact does not join
    joined = delta.clone()
    joined[0, 1, 7, 5] = 0.1                              # now the hook touches the U's corner
    assert cluster_count(joined).tolist() == [2]
    batch = torch.cat([delta, joined, torch.zeros_like(delta), torch.ones_like(delta)])
    assert cluster_count(batch).tolist() == [3, 2, 0, 1]  # images never join each other


def _bfs_clusters(mask: torch.Tensor) -> int:
    """Reference: breadth-first search over the 4-neighbours."""
    seen, count = set(), 0
    h, w = mask.shape
    for start in zip(*torch.nonzero(mask, as_tuple=True)):
        start = (int(start[0]), int(start[1]))
        if start in seen:
            continue
        count += 1
        queue = deque([start])
        seen.add(start)
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < h and 0 <= nc < w and mask[nr, nc] and (nr, nc) not in seen:
                    seen.add((nr, nc))
                    queue.append((nr, nc))
    return count


def test_clusters_match_a_search_on_random_masks():
    generator = torch.Generator().manual_seed(0)
    for density in (0.1, 0.3, 0.5, 0.7):
        delta = (torch.rand(20, 2, 9, 13, generator=generator) < density / 2).float()
        expected = [_bfs_clusters((d != 0).any(dim=0)) for d in delta]
        assert cluster_count(delta).tolist() == expected


def test_a_long_snake_is_one_cluster():
    mask = torch.zeros(1, 1, 31, 31)
    mask[0, 0, ::2, :] = 1                              # rows joined at alternating ends
    mask[0, 0, 1::4, -1] = 1
    mask[0, 0, 3::4, 0] = 1
    assert cluster_count(mask).tolist() == [1]


def test_nonzero_patches_by_hand():
    delta = torch.zeros(1, 2, 4, 5)
    delta[0, 0, 0, 0] = delta[0, 1, 0, 1] = delta[0, 0, 2, 3] = 1.0
    # k=2 (windows at rows 0..2, cols 0..3): (0,0) -> (0,0); (0,1) -> (0,0), (0,1);
    # (2,3) -> rows {1,2} x cols {2,3}: 1 + 1 + 4 = 6 windows
    assert nonzero_patches(delta, 2).tolist() == [6]
    # k=3 (rows 0..1, cols 0..2): (0,0) -> (0,0); (0,1) -> (0,0), (0,1);
    # (2,3) -> rows {0,1} x cols {1,2}, which holds (0,1): 1 + 4 = 5 windows
    assert nonzero_patches(delta, 3).tolist() == [5]
    assert nonzero_patches(delta, 1).tolist() == [3]
    assert nonzero_patches(torch.ones(1, 1, 4, 5), 4).tolist() == [2]
    with pytest.raises(ValueError, match=r"patch side must lie in \[1, 4\]"):
        nonzero_patches(delta, 5)


def test_nonzero_patches_match_a_loop():
    generator = torch.Generator().manual_seed(1)
    delta = (torch.rand(6, 3, 8, 7, generator=generator) < 0.02).float()
    for k in (2, 3, 5):
        expected = [sum(bool(d[:, r:r + k, c:c + k].any()) for r in range(8 - k + 1)
                        for c in range(7 - k + 1)) for d in delta]
        assert nonzero_patches(delta, k).tolist() == expected


def test_group_sparsity_metrics_names_its_columns():
    delta = _three_clusters()
    metrics = {k: v.tolist() for k, v in group_sparsity_metrics(delta, patch=3).items()}
    assert metrics == {"pixel l0": [14.0], "clusters": [3.0],
                       "d20": [float(nonzero_patches(delta, 3))]}
    # no 11 x 11 window fits a 10 x 10 image: d20 is undefined, the rest is not
    too_big = group_sparsity_metrics(delta, patch=11)
    assert torch.isnan(too_big["d20"]).all() and too_big["clusters"].tolist() == [3.0]


# ------------------------------------------------------------------ GSE's IS convention
def test_the_nonzero_rank_threshold_by_hand():
    scores = torch.tensor([[0.0, 0.0, 3.0, 1.0, 2.0, -1.0]])
    # non-zero scores sorted: -1, 1, 2, 3 (m = 4); rank ceil(P/100 * 5), 1-based
    assert percentile_threshold(scores, 50, "nonzero").tolist() == [2.0]      # rank 3
    assert percentile_threshold(scores, 20, "nonzero").tolist() == [-1.0]     # rank 1
    assert percentile_threshold(scores, 0, "nonzero").tolist() == [0.0]       # rank 0
    assert percentile_threshold(scores, 95, "nonzero").tolist() == [3.0]      # past the top
    assert percentile_mask(scores, 50, rank="nonzero").tolist() == [[False] * 2 + [True]
                                                                    + [False] * 3]
    assert percentile_threshold(torch.zeros(1, 4), 50, "nonzero").tolist() == [0.0]
    with pytest.raises(ValueError, match="rank must be"):
        percentile_threshold(scores, 50, "nearest")


class _Linear(nn.Module):
    """Logits W x of a 1 x 2 x 2 image: the logit gradients are the rows of W."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.tensor([[-1.0, 2.0, 1.0, 0.0],      # true class 0
                                    [2.0, 1.0, -1.0, 3.0],      # target 1
                                    [0.0, 0.0, 0.0, 0.0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def test_gse_saliency_drops_the_sign_conditions():
    x, y, t = torch.zeros(1, 1, 2, 2), torch.tensor([0]), torch.tensor([1])
    # g_t = (2, 1, -1, 3), g_t0 = (-1, 2, 1, 0)
    assert asm(_Linear(), x, y, t, variant="gse").flatten().tolist() == [2.0, 2.0, -1.0, 0.0]
    assert asm(_Linear(), x, y, t, variant="61").flatten().tolist() == [2.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="needs true_labels"):
        asm(_Linear(), x, None, t, variant="gse")


def test_both_interpretability_scores_by_hand():
    x, y, t = torch.zeros(1, 1, 2, 2), torch.tensor([0]), torch.tensor([1])
    delta = torch.tensor([3.0, 4.0, 12.0, 0.0]).reshape(1, 1, 2, 2)      # norm 13
    # P = 25, ours: ASM (2, 0, 0, 0), linear percentile 0, keeps entry 0: 3 / 13.
    # GSE: ASM (2, 2, -1, 0), non-zero (-1, 2, 2), rank ceil(0.25 * 4) = 1: threshold -1,
    # keeps entries 0, 1, 3: |(3, 4)| / 13 = 5 / 13.
    scores = asm_interpretability_scores(_Linear(), x, y, t, delta, 25)
    assert scores["ours"].tolist() == pytest.approx([3 / 13])
    assert scores["gse"].tolist() == pytest.approx([5 / 13])
    # P = 50: GSE's rank 2 is 2, which no score exceeds
    assert asm_interpretability_scores(_Linear(), x, y, t, delta, 50)["gse"].tolist() == [0.0]
    gse_scores = asm(_Linear(), x, y, t, variant="gse")
    assert gse_interpretability_mask(gse_scores, 25).flatten().tolist() == [True, True, False,
                                                                            True]
    zero = asm_interpretability_scores(_Linear(), x, y, t, torch.zeros_like(delta), 25)
    assert torch.isnan(zero["gse"]).all() and torch.isnan(zero["ours"]).all()


# ------------------------------------------------------------------ the report columns
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`strattack eval` of FGM on one bundled MNIST image toward class 3 (adversarial)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    result = CliRunner().invoke(main, ["eval", "--dataset", "mnist", "--bundled", "-n", "1",
                                       "--targets", "3", "-a", "fgm", "--no-progress",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _stored_perturbations(run) -> torch.Tensor:
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        (key,) = store.attacks()
        records = list(store.records(key, with_perturbation=True))
    assert all(r.success for r in records)
    return torch.stack([torch.from_numpy(r.perturbation) for r in records])


def _report(run, out, *options: str) -> tuple[str, list[dict], list[dict]]:
    """`strattack report RUN --no-figures OPTIONS -o OUT`: its output, report.json's rows and
    report.csv's rows."""
    result = CliRunner().invoke(main, ["report", str(run), "--no-figures", *options,
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    return result.output, json.loads((out / "report.json").read_text()), table


def test_report_prints_and_writes_the_group_sparsity_columns(run, tmp_path):
    output, rows, table = _report(run, tmp_path, "--patch", "3")
    assert "| groups | pixel l0 | clusters | d20 | fwd/ex |" in output
    assert "d20: 3x3 windows holding one" in output
    assert "IS (GSE)" not in output
    delta = _stored_perturbations(run)
    expected = {"pixel l0": float(pixel_l0(delta)), "clusters": float(cluster_count(delta)),
                "d20": float(nonzero_patches(delta, 3))}
    for row, line in zip(rows, table, strict=True):
        assert {k: row[k] for k in expected} == expected
        assert {k: float(line[k]) for k in expected} == expected
    assert 0 < expected["pixel l0"] <= delta[0].numel()


def test_report_is_adds_ours_and_gses_score(run, tmp_path):
    output, rows, table = _report(run, tmp_path, "--is", "90")
    assert "| d20 | IS | IS (GSE) | fwd/ex |" in output
    assert "IS at the 90th percentile" in output
    assert {"IS", "IS (GSE)"} <= set(table[0])
    for row in rows:
        assert 0 <= row["IS"] <= 1 and 0 <= row["IS (GSE)"] <= 1


def test_report_html_shows_the_new_columns(run, tmp_path):
    result = CliRunner().invoke(main, ["report", str(run), "--no-figures", "--html",
                                       "--gallery", "1", "--is", "80", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    for column in ("pixel l0", "clusters", "d20", "IS", "IS (GSE)"):
        assert f"<th>{column}</th>" in page


def test_report_patch_and_percentile_options(run, tmp_path):
    _, rows, _ = _report(run, tmp_path, "--patch", "29")       # no 29 x 29 window fits
    assert [r["d20"] for r in rows] == [None] * 3
    for option in (["--patch", "0"], ["--is", "100"]):
        bad = CliRunner().invoke(main, ["report", str(run), "--no-figures", *option,
                                        "-o", str(tmp_path)])
        assert bad.exit_code == 2, bad.output
