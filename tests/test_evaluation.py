"""Evaluation harness: store, examples and shards, best/average/worst aggregation, resume."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from strattack.cli import main
from strattack.data import load_samples
from strattack.evaluation.report import (case_rows, cost_rows, ratio_rows, report_rows,
                                        store_labels)
from strattack.evaluation.runner import AttackSpec, run_evaluation
from strattack.evaluation.store import ExampleRecord, ResultStore, attack_key, merge_stores
from strattack.evaluation.examples import in_shard, make_examples, parse_shard
from helpers import CountingModel

TESTS = Path(__file__).resolve().parent


def record(image, target, success=True, l2=1.0, l0=10.0, shape=(1, 2, 2), seed=0, **kw):
    delta = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    fields = dict(image=image, target=target, true_label=0, success=success, l0=l0, l1=2 * l2,
                  l2=l2, linf=l2 / 2, groups=1.0, forward_passes=10, backward_passes=5,
                  seconds=0.5, batch_size=4, perturbation=delta)
    return ExampleRecord(**(fields | kw))


def test_a_nan_metric_comes_back_as_nan(tmp_path):
    """SQLite keeps NaN as NULL; groups is NaN for an example run without a group size."""
    with ResultStore(tmp_path / "s.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("fgm", {})
        store.write(key, [record(0, 1, groups=float("nan"), l2=float("nan"))])
        back = list(store.records(key))
    assert math.isnan(back[0].groups) and math.isnan(back[0].l2) and back[0].l0 == 10.0


# ------------------------------------------------------------------ store
def test_store_roundtrip_and_idempotent_writes(tmp_path):
    with ResultStore(tmp_path / "s.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("cw_l2", {"b": 2, "a": 1})
        assert key == attack_key("cw_l2", {"a": 1, "b": 2})      # parameter order is irrelevant
        recs = [record(0, 1, seed=1), record(0, 2, success=False, seed=2)]
        assert store.write(key, recs) == 2
        assert store.write(key, [record(0, 1, l2=99.0)]) == 0      # finished rows are kept
        assert store.done(key) == {(0, 1), (0, 2)}
        back = list(store.records(key, with_perturbation=True))
    assert [r.l2 for r in back] == [1.0, 1.0]
    assert [r.success for r in back] == [True, False]
    np.testing.assert_array_equal(back[0].perturbation, recs[0].perturbation)


def test_store_refuses_a_different_evaluation(tmp_path):
    ResultStore(tmp_path / "s.sqlite", {"dataset": "mnist"}).close()
    with pytest.raises(ValueError, match="dataset: store has 'mnist', this run 'cifar10'"):
        ResultStore(tmp_path / "s.sqlite", {"dataset": "cifar10"})


def test_merge_is_idempotent_and_complete(tmp_path):
    for i, pairs in enumerate([[(0, 1), (1, 2)], [(1, 2), (2, 3)]]):
        with ResultStore(tmp_path / f"{i}.sqlite", {"dataset": "mnist"}) as s:
            key = s.add_attack("fgm", {})
            s.write(key, [record(a, b) for a, b in pairs])
    sources = [tmp_path / "0.sqlite", tmp_path / "1.sqlite"]
    assert list(merge_stores(tmp_path / "m.sqlite", sources).values()) == [2, 1]
    assert list(merge_stores(tmp_path / "m.sqlite", sources).values()) == [0, 0]
    with ResultStore(tmp_path / "m.sqlite") as s:
        assert s.done(attack_key("fgm", {})) == {(0, 1), (1, 2), (2, 3)}


# ------------------------------------------------------------------ examples and shards
def test_make_examples_modes():
    assert make_examples([5], [3], "all", 10) == [(5, t) for t in range(10) if t != 3]
    assert make_examples([5, 6], [9, 0], "next", 10) == [(5, 0), (6, 1)]
    assert make_examples([5], [3], "untargeted", 10) == [(5, -1)]
    assert make_examples([5], [3], [3, 4], 10) == [(5, 4)]
    rnd = make_examples([5, 6], [3, 4], "random", 10, k=3, seed=1)
    assert len(rnd) == 6 and all(t not in (3,) for i, t in rnd if i == 5)
    assert len({t for i, t in rnd if i == 5}) == 3
    # an image's random targets do not depend on the other images in the run
    assert make_examples([6], [4], "random", 10, k=3, seed=1) == [p for p in rnd if p[0] == 6]
    assert make_examples([6], [4], "random", 10, k=3, seed=2) != [p for p in rnd if p[0] == 6]
    with pytest.raises(ValueError, match="out of range"):
        make_examples([0], [0], [10], 10)


def test_shards_cover_every_example_exactly_once():
    examples = make_examples(range(60), [i % 10 for i in range(60)], "all", 10)
    for n in (1, 3, 7):
        parts = [[t for t in examples if in_shard(*t, (i, n))] for i in range(n)]
        assert sorted(sum(parts, [])) == sorted(examples)
        if n > 1:
            assert all(0 < len(p) < len(examples) for p in parts)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "a/b", "1"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_a_store_written_before_devices_were_recorded_is_migrated_and_merges(tmp_path):
    old = tmp_path / "old.sqlite"
    # The examples table as schema 1 wrote it: no device column.
    with closing(sqlite3.connect(old)) as db, db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE attacks (key TEXT PRIMARY KEY, name TEXT NOT NULL, params TEXT NOT NULL,"
            " label TEXT);"
            "CREATE TABLE examples (attack TEXT NOT NULL, image INTEGER NOT NULL,"
            " target INTEGER NOT NULL, true_label INTEGER NOT NULL, success INTEGER NOT NULL,"
            " l0 REAL, l1 REAL, l2 REAL, linf REAL, groups REAL, forward_passes INTEGER,"
            " backward_passes INTEGER, seconds REAL, batch_size INTEGER, shape TEXT NOT NULL,"
            " perturbation BLOB NOT NULL, PRIMARY KEY (attack, image, target));")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", "1"), ("dataset", "mnist")])
        key = attack_key("fgm", {})
        db.execute("INSERT INTO attacks VALUES (?, 'fgm', '{}', NULL)", (key,))
        db.execute("INSERT INTO examples VALUES (?, 0, 1, 0, 1, 3, 2, 1, 0.5, 1, 10, 5, 0.5, 4,"
                   " '[1]', ?)", (key, zlib.compress(np.float32([1]).tobytes())))
    # Merged into a store with devices: the old row comes over with no device.
    with ResultStore(tmp_path / "new.sqlite", {"dataset": "mnist"}) as new:
        new.write(new.add_attack("fgm", {}), [record(5, 1, device="cuda:0 Some GPU")])
    assert list(merge_stores(tmp_path / "new.sqlite", [old]).values()) == [1]
    with ResultStore(tmp_path / "new.sqlite") as new:
        assert {(r.image, r.device) for r in new.records(key)} == {(0, None), (5, "cuda:0 Some GPU")}
    # Opened directly, the old store gains the column and keeps its row.
    with ResultStore(old) as s:
        assert [(r.image, r.l0, r.device) for r in s.records(key)] == [(0, 3.0, None)]
        s.write(key, [record(1, 1, device="cpu (1 thread)")])
        assert [r.device for r in s.records(key)] == [None, "cpu (1 thread)"]


# ------------------------------------------------------------------ report
def test_seconds_are_only_averaged_over_one_device():
    cpu = [record(0, 1, seconds=2.0, device="cpu (1 thread)"),
           record(0, 2, seconds=4.0, device="cpu (1 thread)")]
    gpu = [record(1, 1, seconds=0.1, device="cuda:0 GPU")]
    rows = case_rows("x", cpu)
    assert rows[0]["s/ex"] == 3.0 and rows[0]["device"] == "cpu (1 thread)"
    mixed = case_rows("x", cpu + gpu + [record(2, 1)])
    assert all(math.isnan(r["s/ex"]) for r in mixed)
    assert mixed[1]["device"] == "mixed: cpu (1 thread) x2, cuda:0 GPU x1, not recorded x1"
    assert mixed[1]["passes/ex"] == 15 and mixed[1]["l2"] == 1.0   # the rest is unaffected


def test_report_gives_the_cost_per_device_when_devices_mix(tmp_path):
    with ResultStore(tmp_path / "results.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("fgm", {}, label="FGM")
        store.write(key, [record(0, 1, seconds=2.0, device="cpu (1 thread)"),
                          record(0, 2, seconds=4.0, device="cpu (1 thread)",
                                 forward_passes=20, backward_passes=9),
                          record(1, 1, seconds=0.1, device="cuda:0 GPU")])
        rows = cost_rows(store)
    assert [(r["device"], r["examples"], r["passes/ex"], r["s/ex"], r["seconds"]) for r in rows] \
        == [("cpu (1 thread)", 2, 22.0, 3.0, 6.0), ("cuda:0 GPU", 1, 15.0, 0.1, 0.1)]
    out = CliRunner().invoke(main, ["report", str(tmp_path), "--no-figures"])
    assert out.exit_code == 0, out.output
    assert "cost per device" in out.output and "| FGM | cuda:0 GPU | 1 | 15 | 0.1 | 0.1 |" in out.output


def test_case_rows_on_a_hand_made_store():
    recs = [record(0, 1, l2=1.0, l0=10), record(0, 2, l2=3.0, l0=30),    # image 0: both succeed
            record(1, 1, l2=2.0, l0=20), record(1, 2, success=False, l2=0.0, l0=0),
            record(2, 1, success=False), record(2, 2, success=False)]     # image 2: none
    rows = {r["case"]: r for r in case_rows("x", recs)}
    assert rows["average"]["ASR %"] == pytest.approx(100 * 3 / 6)
    assert rows["average"]["l2"] == pytest.approx((1 + 3 + 2) / 3)
    assert rows["best"]["ASR %"] == pytest.approx(100 * 2 / 3)          # images 0 and 1
    assert rows["best"]["l2"] == pytest.approx((1 + 2) / 2)
    assert rows["best"]["l0"] == pytest.approx((10 + 20) / 2)
    assert rows["worst"]["ASR %"] == pytest.approx(100 / 3)              # only image 0
    assert rows["worst"]["l2"] == pytest.approx(3.0)
    assert rows["average"]["passes/ex"] == 15 and rows["worst"]["s/ex"] == 0.5
    by_l0 = {r["case"]: r for r in case_rows("x", recs, rank_by="l0")}
    assert by_l0["best"]["l0"] == pytest.approx(15.0)
    none = {r["case"]: r for r in case_rows("x", recs[4:])}
    assert none["best"]["ASR %"] == 0 and math.isnan(none["best"]["l2"])


def test_ratio_rows_divide_the_case_means():
    a = [record(0, 1, l2=1.0, l0=10), record(0, 2, l2=3.0, l0=30)]
    b = [record(0, 1, l2=2.0, l0=40), record(0, 2, l2=2.0, l0=80)]
    rows = case_rows("A", a) + case_rows("B", b)
    ratios = {r["case"]: r for r in ratio_rows(rows, "A", "B")}
    assert ratios["average"]["l0"] == pytest.approx(20 / 60)
    assert ratios["average"]["l2"] == pytest.approx(2 / 2)
    assert ratios["best"]["l2"] == pytest.approx(1 / 2)        # A's easiest: 1; B's: 2 (tie)
    assert ratios["worst"]["l0"] == pytest.approx(30 / 40)
    with pytest.raises(ValueError, match="no attack labelled 'C'"):
        ratio_rows(rows, "A", "C")


def test_ratio_rows_divide_the_group_measures_and_the_passes_where_the_rows_have_them():
    rows = [{"attack": "A", "case": "average", "l0": 6.0, "l2": 1.0, "clusters": 1.5,
             "passes/ex": 900.0},
            {"attack": "B", "case": "average", "l0": 3.0, "l2": 2.0, "clusters": 3.0,
             "passes/ex": 3000.0}]
    (ratio,) = ratio_rows(rows, "A", "B")
    assert ratio == pytest.approx({"ratio": "A / B", "case": "average", "l0": 2.0, "l2": 0.5,
                                   "clusters": 0.5, "passes/ex": 0.3})


# ------------------------------------------------------------------ runner
def _linear_task():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(6, 1, 4, 4)
    y = model(x).argmax(1)
    return model, x, y


def test_runner_resumes_without_redoing_work_and_shards_merge_to_the_full_run(tmp_path):
    model, x, y = _linear_task()
    counting = CountingModel(model)
    examples = make_examples(range(6), y.tolist(), "all", 3)
    spec = AttackSpec("ifgsm", {"norm": "l2", "max_epsilon": 4.0})
    with ResultStore(tmp_path / "full.sqlite") as store:
        first = run_evaluation(counting, x, y, examples, [spec], store, batch_size=4,
                               progress=False)
        assert first.attacked == {"ifgsm": 12} and store.count() == 12
        calls = counting.calls
        again = run_evaluation(counting, x, y, examples, [spec], store, batch_size=4,
                               progress=False)
        assert again.attacked == {"ifgsm": 0} and again.skipped == {"ifgsm": 12}
        assert counting.calls == calls                 # nothing redone
        full = {(r.image, r.target): r for r in store.records(attack_key("ifgsm", spec.params))}
    threads = torch.get_num_threads()
    assert {r.device for r in full.values()} == {
        f"cpu ({threads} thread{'s' if threads != 1 else ''})"}
    shards = []
    for i in range(3):
        shards.append(tmp_path / f"s{i}.sqlite")
        with ResultStore(shards[-1]) as store:
            run_evaluation(model, x, y, examples, [spec], store, batch_size=4, shard=(i, 3),
                           progress=False)
    merge_stores(tmp_path / "merged.sqlite", shards)
    with ResultStore(tmp_path / "merged.sqlite") as store:
        merged = {(r.image, r.target): r for r in store.records(attack_key("ifgsm", spec.params))}
    assert merged.keys() == full.keys() == set(examples)
    for k in full:   # the same examples, attacked in other batches, give the same results
        assert merged[k].success == full[k].success
        assert merged[k].l2 == pytest.approx(full[k].l2, rel=1e-4, abs=1e-6)


def test_runner_skips_examples_another_process_finished_meanwhile(tmp_path):
    model, x, y = _linear_task()
    examples = make_examples(range(6), y.tolist(), "all", 3)           # 12 examples
    spec = AttackSpec("fgm", {"norm": "l2"})
    key = attack_key("fgm", spec.params)
    late = examples[-3:]                                             # "the other process" does these

    class OtherWriterOnFirstCall(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, inputs):
            self.calls += 1
            if self.calls == 1:          # after run_evaluation has listed its work
                with ResultStore(tmp_path / "s.sqlite") as other:
                    other.add_attack("fgm", spec.params)
                    other.write(key, [record(i, t, l2=123.0) for i, t in late])
            return model(inputs)

    with ResultStore(tmp_path / "s.sqlite") as store:
        summary = run_evaluation(OtherWriterOnFirstCall(), x, y, examples, [spec], store,
                                 batch_size=4, progress=False)
        assert summary.attacked == {"fgm": 9} and summary.skipped == {"fgm": 3}
        recs = {(r.image, r.target): r for r in store.records(key)}
    assert set(recs) == set(examples)
    assert all(recs[k].l2 == 123.0 for k in late)                # not attacked a second time
    assert all(recs[k].l2 != 123.0 for k in examples[:-3])


def test_runner_rejects_unknown_attack_and_reserved_params():
    with pytest.raises(ValueError, match="unknown attack"):
        AttackSpec("deepfool")
    with pytest.raises(ValueError, match=r"unknown parameters \['rhoo'\]"):
        AttackSpec("str_attack", {"rhoo": 1.0})
    AttackSpec("str_attack", {"rho": 1.0, "group_size": 3})   # admm_attack's keywords pass
    with pytest.raises(ValueError, match="targeted"):
        AttackSpec("fgm", {"targeted": True})
    with pytest.raises(ValueError, match=r"\['seeds'\] are set by the evaluation"):
        AttackSpec("ifgsm", {"seeds": torch.tensor([1])})


def _random_start_run(out: Path, **options) -> Path:
    """A random-start (PGD) l2 IFGSM evaluation of the 8 synthetic test images of fake_mnist x
    next target with the band model (its gradient is zero outside the bands, so the random
    start stays in every stored perturbation)."""
    from strattack.evaluation.config import EvalConfig
    from strattack.evaluation.evaluate import evaluate

    settings = ('ifgsm.norm="l2"', "ifgsm.random_start=true", "ifgsm.steps=3",
                "ifgsm.grid_steps=4", "ifgsm.search_steps=3")
    config = EvalConfig.from_sources(None, {
        "dataset": "mnist", "data_root": out, "model": "band_model:build", "no_weights": True,
        "targets": "next",
        "attacks": ("ifgsm",), "settings": settings, "progress": False, "out": out, **options})
    evaluate(config, log=lambda _: None, warn=lambda _: None)
    return out


def _stored(path: Path) -> dict[tuple[int, int], tuple]:
    """Every stored field of each example but where, when and in which batch it ran."""
    with ResultStore(path) as store:
        (key,) = store.attacks()
        return {(r.image, r.target): (r.true_label, r.success, r.l0, r.l1, r.l2, r.linf,
                                      r.forward_passes, r.backward_passes,
                                      r.perturbation.tobytes())
                for r in store.records(key, with_perturbation=True)}


def test_random_starts_follow_the_example_across_batch_sizes_and_shards(tmp_path, monkeypatch):
    from helpers import fake_mnist

    fake_mnist(monkeypatch)
    one = _stored(_random_start_run(tmp_path / "b1", batch_size=1) / "results.sqlite")
    four = _stored(_random_start_run(tmp_path / "b4", batch_size=4) / "results.sqlite")
    assert len(one) == 8 and sum(r[1] for r in one.values()) >= 4
    assert four == one                               # bit for bit
    for i in range(2):
        _random_start_run(tmp_path / "sh", batch_size=4, shard=f"{i}/2")
    merge_stores(tmp_path / "merged.sqlite", [tmp_path / "sh" / f"results-shard-{i}-of-2.sqlite"
                                              for i in range(2)])
    assert _stored(tmp_path / "merged.sqlite") == one
    other_seed = _stored(_random_start_run(tmp_path / "s1", batch_size=4, seed=1)
                         / "results.sqlite")
    assert all(other_seed[k][-1] != one[k][-1] for k in one if one[k][1])   # seed -> starts


# ------------------------------------------------------------------ CLI
def _count(path: Path) -> int:
    if not path.is_file():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


#: The bundled MNIST images that the random test models classify correctly (eval skips the
#: others: an attack on a misclassified image is no result).
SLOW_MODEL_CORRECT = (12, 43, 62, 92, 96)
GAP_MODEL_CORRECT = (7, 9, 12, 16, 20, 58, 62, 73)


def test_eval_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "strattack.cli", "eval", "--dataset", "mnist", "--bundled",
           "--model", "slow_model:build", "--no-weights",
           "--indices", ",".join(map(str, SLOW_MODEL_CORRECT)),
           "--targets", "1,2,3", "-a", "fgm", "--set", 'fgm.norm="l2"', "--batch-size", "1",
           "--threads", "1", "--no-progress", "-o", str(out)]
    env = os.environ | {"PYTHONPATH": str(TESTS)}
    store = out / "results.sqlite"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while _count(store) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _count(store)
    assert 3 <= killed_at < 21, proc.stdout.read().decode()      # really killed mid-run
    with sqlite3.connect(store) as db:
        before = dict(((i, t), blob) for i, t, blob in
                      db.execute("SELECT image, target, perturbation FROM examples"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{killed_at} already done" in done.stdout
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT image, target, perturbation FROM examples").fetchall()
    pairs = [(i, t) for i, t, _ in rows]
    # 5 images x targets {1,2,3} minus each image's true class
    _, labels, ids = load_samples("mnist")
    labels = dict(zip(ids.tolist(), labels.tolist()))
    expected = {(i, t) for i in SLOW_MODEL_CORRECT for t in (1, 2, 3) if t != labels[i]}
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected
    assert all(dict(((i, t), b) for i, t, b in rows)[k] == v for k, v in before.items())


def test_eval_and_report_end_to_end(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--dataset", "mnist", "--bundled", "-n", "2", "--targets",
                               "next", "-a", "fgm", "-a", "ifgsm", "--set", "ifgsm.steps=5",
                               "--no-progress", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "fgm: 2 attacked" in res.output and "ifgsm: 2 attacked" in res.output
    assert "; device cpu (" in res.output
    res = runner.invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| ifgsm | worst | 2 | 2 |" in res.output
    assert "cost per device" not in res.output          # one device: s/ex in the main table
    for name in ("report.csv", "report.json", "l0_histogram.png", "group_heatmaps.png"):
        assert (tmp_path / name).stat().st_size > 0
    res = runner.invoke(main, ["report", str(tmp_path), "--no-figures", "--ratio", "ifgsm", "fgm"])
    assert res.exit_code == 0 and "| ifgsm / fgm | average |" in res.output, res.output
    ratios = __import__("json").loads((tmp_path / "ratios.json").read_text())
    assert [r["case"] for r in ratios] == ["best", "average", "worst"]
    res = runner.invoke(main, ["report", str(tmp_path), "--no-figures", "--ratio", "x", "fgm"])
    assert res.exit_code != 0 and "no attack labelled 'x'" in res.output


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist", "--data-root", "{tmp}", "-a", "fgm"], "t10k-images-idx3-ubyte.gz"),
    (["--dataset", "mnist", "--bundled", "--model", "nosuch", "-a", "fgm"], "nosuch"),
    (["--dataset", "mnist", "--bundled", "-a", "fgm", "--set", "fgm=1"], "ATTACK.PARAM=VALUE"),
    (["--dataset", "mnist", "--bundled", "-a", "fgm", "--shard", "3/2"], "shard"),
    (["--dataset", "mnist", "--bundled", "-a", "deepfool"], "unknown attack"),
    (["--dataset", "mnist", "--bundled"], "no attack given"),
    (["--dataset", "{tmp}/nofolder", "-a", "fgm"], "nofolder"),
    (["--dataset", "mnist", "--bundled", "--indices", "3,5000", "-a", "fgm"],
     "images [5000] are not in the dataset"),
])
def test_eval_errors_are_clear(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = CliRunner().invoke(main, ["eval", *args, "-o", str(tmp_path / "out")])
    assert res.exit_code != 0 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_report_on_shards_says_to_merge(tmp_path):
    ResultStore(tmp_path / "results-shard-0-of-2.sqlite").close()
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code != 0 and "strattack merge" in res.output


def test_eval_config_file_and_command_line_override(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('dataset = "mnist"\nbundled = true\nnum_images = 3\ntargets = "next"\n'
                      'batch_size = 2\n\n[[attack]]\nname = "fgm"\nlabel = "FGM-l2"\nnorm = "l2"\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "-n", "2", "--no-progress",
                                    "--set", "FGM-l2.grid_steps=6", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "2 images" in res.output and "FGM-l2: 2 attacked" in res.output
    with ResultStore(tmp_path / "results.sqlite") as store:
        (name, params), = store.attacks().values()
    assert name == "fgm" and params == {"norm": "l2", "grid_steps": 6}
    config.write_text("colour = 1\n" + config.read_text())
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "-o", str(tmp_path)])
    assert res.exit_code == 2 and "colour" in res.output
    config.write_text(config.read_text().replace("colour = 1\n", "") + "colour = 1\n")
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "-o", str(tmp_path)])
    assert res.exit_code == 2 and "unknown parameters ['colour'] for fgm" in res.output


def test_explain_from_a_store_writes_curves_and_panels(tmp_path):
    env = {"PYTHONPATH": str(TESTS)}
    sys.path.insert(0, str(TESTS))
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--dataset", "mnist", "--bundled", "--model",
                               "gap_model:build", "--no-weights",
                               "--indices", ",".join(map(str, GAP_MODEL_CORRECT)),
                               "--targets", "all",
                               "-a", "fgm", "-a", "ifgsm", "--set", "ifgsm.steps=3",
                               "--no-progress", "-o", str(tmp_path)], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["explain", str(tmp_path), "--figures", "1"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "explain"
    summary = __import__("json").loads((out / "interpretability.json").read_text())
    assert set(summary["asm"]) == {"fgm", "ifgsm"} and set(summary["cam"]) == {"fgm", "ifgsm"}
    assert len(summary["asm"]["fgm"]) == len(summary["percentiles"]) == 7
    assert all(0 <= v <= 1 for v in summary["cam"]["ifgsm"])
    for name in ("asm_is.png", "cam_is.png"):
        assert (out / name).stat().st_size > 0
    # named by image and target ("asm_0_to_0.png" read as "0 becomes 0")
    panels = sorted(p.name for p in out.glob("*_image*_target*.png"))
    assert len(panels) == 2 and panels[0].startswith("asm_") and panels[1].startswith("cam_")
    assert re.fullmatch(r"asm_image\d+_target\d+\.png", panels[0]), panels
    assert not list(out.glob("*_to_*.png"))
    pair = summary["paired_difference"]
    assert pair["attacks"] == ["fgm", "ifgsm"] and len(pair["cam"]["mean"]) == 7
    assert "ASM fgm - ifgsm (mean ± standard error" in res.output
    threads = torch.get_num_threads()
    try:  # one example: no standard error to print (was "±nan"); --threads is accepted
        res = runner.invoke(main, ["explain", str(tmp_path), "-n", "1", "--figures", "0",
                                   "--threads", "1", "-o", str(tmp_path / "one")])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    assert "ASM fgm - ifgsm (one example)" in res.output and "nan" not in res.output
    one = json.loads((tmp_path / "one" / "interpretability.json").read_text())
    assert one["paired_difference"]["asm"]["standard_error"] is None
    res = runner.invoke(main, ["explain", str(tmp_path), "-a", "nosuch"])
    assert res.exit_code != 0 and "nosuch" in res.output


@pytest.mark.parametrize("config", sorted((TESTS.parent / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_configs_are_valid(config, tmp_path):
    """Every shipped configuration parses into an EvalConfig (all values checked), as eval would
    read it with -o given."""
    from strattack.evaluation.config import EvalConfig

    # ImageNet configurations leave the image folder to --dataset
    parsed = EvalConfig.from_sources(config, {"out": tmp_path, "dataset": None
                                              if "dataset =" in config.read_text() else "images"})
    assert parsed.attacks and len({s.display for s in parsed.attacks}) == len(parsed.attacks)
    assert parsed.named_dataset or parsed.model is not None


def test_eval_on_an_image_folder_with_a_user_model_and_weights(tmp_path):
    from PIL import Image
    from safetensors.torch import save_file

    sys.path.insert(0, str(TESTS))
    import rgb_model

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    (folder / "labels.csv").write_text("filename,label_index,class_name\n0.png,1,cat\n"
                                       "1.png,2,dog\n2.png,999,tissue\n")
    model = rgb_model.build()
    with torch.no_grad():
        model[-1].weight.mul_(3)            # weights differ from build()'s: loading must matter
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    # Labels = the model's own predictions: eval skips images the model misclassifies.
    from strattack.data.evaluation_data import load_evaluation_data

    with torch.no_grad():
        predicted = model(load_evaluation_data(str(folder)).images).argmax(1).tolist()
    (folder / "labels.csv").write_text("filename,label_index,class_name\n" + "".join(
        f"{k}.png,{p},class {p}\n" for k, p in enumerate(predicted)))
    from strattack.models.loading import load_model

    for weights in ("w.safetensors", "w.pt"):
        loaded = load_model("rgb_model:build", tmp_path / weights)
        assert torch.equal(loaded[-1].weight, model[-1].weight) and not loaded.training
    res = CliRunner().invoke(main, ["eval", "--dataset", str(folder), "--model", "rgb_model:build",
                                    "--weights", str(tmp_path / "w.safetensors"), "--indices",
                                    "0,1,2", "--targets", "random", "-k", "2", "-a", "fgm",
                                    "--no-progress", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "3 images" in res.output and "6 examples" in res.output
    with ResultStore(tmp_path / "out" / "results.sqlite") as store:
        assert store.meta()["group_size"] == 13
        (key,) = store.attacks()
        recs = list(store.records(key, with_perturbation=True))
    assert len(recs) == 6 and recs[0].perturbation.shape == (3, 224, 224)
    res = CliRunner().invoke(main, ["eval", "--dataset", str(folder), "-a", "fgm", "-o",
                                    str(tmp_path / "o2")])
    assert res.exit_code != 0 and "--model is required" in res.output
    res = CliRunner().invoke(main, ["eval", "--dataset", "mnist", "--bundled", "--model",
                                    "rgb_model:nosuch", "--no-weights", "-a", "fgm",
                                    "-o", str(tmp_path / "o3")])
    assert res.exit_code != 0 and "no callable 'nosuch'" in res.output


def test_an_attack_that_never_ran_does_not_rename_one_with_the_same_label(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        old = store.add_attack("cw_linf", {}, "C&W-linf")
        new = store.add_attack("cw_linf", {"initial_const": 1.0}, "C&W-linf")
        store.write(new, [record(0, 1)])
        labels = store_labels(store)
        assert labels[new] == "C&W-linf" and labels[old] == f"C&W-linf [{old}]"
        assert [r["attack"] for r in report_rows(store)] == ["C&W-linf"] * 3


def test_labels_given_by_a_run_name_attacks_in_reports(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        a = store.add_attack("str_attack", {"tau": 0.5})
        b = store.add_attack("str_attack", {"tau": 2.0}, label="StrAttack")
        for key in (a, b):
            store.write(key, [record(0, 1)])
        labels = [r["attack"] for r in report_rows(store) if r["case"] == "best"]
    assert labels == ["str_attack (tau=0.5)", "StrAttack"]
    with ResultStore(tmp_path / "s.sqlite") as store:           # a later label replaces it
        store.add_attack("str_attack", {"tau": 2.0}, label="StrAttack tau=2")
        assert list(store.labels().values()) == ["StrAttack tau=2"]
    merge_stores(tmp_path / "m.sqlite", [tmp_path / "s.sqlite"])
    with ResultStore(tmp_path / "m.sqlite") as store:
        assert list(store.labels().values()) == ["StrAttack tau=2"]


@pytest.mark.parametrize("args, message", [
    ([], "give RUN_DIR, or --dataset, --image and --target"),
    (["--dataset", "mnist", "--bundled", "--image", "0", "--target", "7"], "other than the true class 7"),
    (["--dataset", "mnist", "--bundled", "--image", "5000", "--target", "1"], "not in the dataset"),
])
def test_explain_single_image_errors(tmp_path, args, message):
    res = CliRunner().invoke(main, ["explain", *args, "-o", str(tmp_path)])
    assert res.exit_code != 0 and message in res.output, res.output


def test_shards_skip_what_an_earlier_unsharded_run_finished(tmp_path):
    base = ["eval", "--dataset", "mnist", "--bundled", "--targets", "next", "-a", "fgm",
            "--set", 'fgm.norm="l2"', "--no-progress", "-o", str(tmp_path)]
    res = CliRunner().invoke(main, [*base, "-n", "3"])
    assert res.exit_code == 0 and "fgm: 3 attacked" in res.output, res.output
    attacked = 0
    shards = []
    for i in range(2):
        res = CliRunner().invoke(main, [*base, "-n", "8", "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
        attacked += int(res.output.split("fgm: ")[1].split(" attacked")[0])
        shards.append(str(tmp_path / f"results-shard-{i}-of-2.sqlite"))
    assert attacked == 5                      # the 3 finished examples were not redone
    res = CliRunner().invoke(main, ["merge", str(tmp_path), *shards])
    assert res.exit_code == 0, res.output
    assert _count(tmp_path / "results.sqlite") == 8


def test_first_correct_decodes_an_image_folder_only_as_far_as_needed(tmp_path, monkeypatch):
    from PIL import Image

    from strattack.data import image_folder
    from strattack.data.evaluation_data import load_evaluation_data
    from strattack.evaluation.selection import first_correct

    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for k in range(10):          # image k is filled with grey level 20*k; its label is k % 3
        Image.fromarray(np.full((230, 230, 3), 20 * k, dtype=np.uint8)).save(folder / f"{k}.png")
        rows.append(f"{k}.png,{k % 3}")
    (folder / "labels.csv").write_text("filename,label_index\n" + "\n".join(rows) + "\n")

    class ByBrightness(torch.nn.Module):    # predicts k % 3 for images 0..4, class 0 after
        def forward(self, x):
            k = (x.mean(dim=(1, 2, 3)) * 255 / 20).round().long()
            pred = torch.where(k < 5, k % 3, torch.zeros_like(k))
            return 10 * torch.nn.functional.one_hot(pred, 1000).float()    # logits

    decoded = []
    original = image_folder.preprocess_image
    monkeypatch.setattr(image_folder, "preprocess_image",
                        lambda path, **kw: decoded.append(path) or original(path, **kw))
    data = first_correct(ByBrightness(), str(folder), 6, chunk=4)
    # correct: 0..4 (k % 3) and 6, 9 (label 0); the first six are 0,1,2,3,4,6
    assert data.ids.tolist() == [0, 1, 2, 3, 4, 6]
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 0]
    assert len(decoded) == 8                     # two chunks of 4, not all 10 images
    full = load_evaluation_data(str(folder))
    assert torch.equal(data.images, full.images[[0, 1, 2, 3, 4, 6]])
    some = load_evaluation_data(str(folder), ids=[7, 2])
    assert some.ids.tolist() == [7, 2] and torch.equal(some.images, full.images[[7, 2]])
    with pytest.raises(ValueError, match=r"images \[10\] are not in the dataset"):
        load_evaluation_data(str(folder), ids=[10])
    # a model of another input size (EfficientNet-Lite1: 240) gets crops of its size
    assert load_evaluation_data(str(folder), ids=[1], image_size=96).images.shape == (1, 3, 96, 96)
    assert first_correct(ByBrightness(), str(folder), 2, image_size=96).images.shape[-2:] == (96, 96)


def test_only_runs_the_chosen_attacks_of_a_config_and_rejects_unknown_ones(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('dataset = "mnist"\nbundled = true\ntargets = "next"\n'
                      '[[attack]]\nname = "fgm"\nlabel = "FGM"\nnorm = "l2"\n'
                      '[[attack]]\nname = "ifgsm"\nlabel = "I-FGSM"\nnorm = "l2"\nsteps = 2\n')
    base = ["eval", "--config", str(config), "--no-progress", "-o", str(tmp_path / "run")]
    res = CliRunner().invoke(main, [*base, "-n", "3", "--only", "I-FGSM"])
    assert res.exit_code == 0, res.output
    assert "I-FGSM: 3 attacked" in res.output and "FGM:" not in res.output
    # extending to more images for one attack leaves the other alone and skips what is done
    res = CliRunner().invoke(main, [*base, "-n", "5", "--only", "ifgsm"])   # by attack name
    assert res.exit_code == 0 and "I-FGSM: 2 attacked" in res.output, res.output
    assert _count(tmp_path / "run" / "results.sqlite") == 5
    res = CliRunner().invoke(main, [*base, "-n", "3", "--only", "C&W"])
    assert res.exit_code != 0 and "--only 'C&W'" in res.output and "I-FGSM" in res.output


def test_an_unusable_device_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    base = ["eval", "--dataset", "mnist", "--bundled", "-n", "1", "-a", "fgm", "-o", str(out)]
    res = CliRunner().invoke(main, [*base, "--device", "cuda"])
    assert res.exit_code == 2 and "no usable CUDA device" in res.output, res.output
    res = CliRunner().invoke(main, [*base, "--device", "gpu0"])
    assert res.exit_code == 2 and "'gpu0' is not a torch device" in res.output, res.output
    config = tmp_path / "c.toml"                       # a device from a config file too
    config.write_text('dataset = "mnist"\nbundled = true\ndevice = "cuda:1"\n'
                      '[[attack]]\nname = "fgm"\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "-n", "1", "-o", str(out)])
    assert res.exit_code == 2 and "device: 'cuda:1'" in res.output, res.output
    res = CliRunner().invoke(main, ["explain", "--dataset", "mnist", "--bundled", "--image", "3",
                                    "--target", "5", "--device", "cuda", "-o", str(out)])
    assert res.exit_code == 2 and "no usable CUDA device" in res.output, res.output
    assert not out.exists()                            # nothing written


@pytest.mark.parametrize("successes,n", [(0, 10), (5, 10), (10, 10), (67, 100), (998, 1000)])
def test_wilson_interval_matches_the_score_test_inversion(successes, n):
    # Reference: the Wilson interval is {p : |rate - p| <= z sqrt(p (1 - p) / n)}, scanned on a grid.
    from strattack.evaluation.report import wilson_interval
    rate, z = successes / n, 1.959964
    grid = torch.linspace(0, 1, 200001, dtype=torch.float64)
    inside = grid[(rate - grid).abs() <= z * (grid * (1 - grid) / n).sqrt()]
    low, high = wilson_interval(rate, n)
    assert low == pytest.approx(inside.min().item(), abs=2e-5)
    assert high == pytest.approx(inside.max().item(), abs=2e-5)


def test_report_rows_carry_the_interval_over_images():
    records = [record(image=i, target=t, success=(i < 3 or t == 1)) for i in range(5)
               for t in (1, 2)]
    rows = {r["case"]: r for r in case_rows("a", records)}
    assert rows["average"]["ASR %"] == 80.0
    from strattack.evaluation.report import wilson_interval
    low, high = wilson_interval(0.8, 5)                 # n = 5 images, not 10 examples
    assert rows["average"]["ASR 95% CI"] == f"[{100 * low:.1f}, {100 * high:.1f}]"


def test_paper_convention_picks_best_and_worst_per_norm():
    from strattack.evaluation.report import paper_case_rows
    records = [record(0, 1, l0=5, l2=3), record(0, 2, l0=9, l2=1), record(0, 3, success=False),
               record(1, 1, l0=4, l2=2), record(1, 2, l0=6, l2=5), record(1, 3, l0=1, l2=9)]
    paper = {r["case"]: r for r in paper_case_rows("a", records)}
    ours = {r["case"]: r for r in case_rows("a", records)}
    assert (paper["best"]["l0"], paper["best"]["l2"]) == ((5 + 1) / 2, (1 + 2) / 2)
    assert (ours["best"]["l0"], ours["best"]["l2"]) == ((9 + 4) / 2, (1 + 2) / 2)   # l2-ranked
    assert (paper["worst"]["l0"], paper["worst"]["l2"], paper["worst"]["ASR %"]) == (6, 9, 50.0)
    assert (ours["worst"]["l0"], ours["worst"]["l2"]) == (1, 9)


def test_paper_average_case_is_one_reproducible_random_target_per_image():
    from strattack.evaluation.report import paper_case_rows
    # 300 images x 3 targets: target t has l2 = t and only target 3 fails
    records = [record(i, t, success=t != 3, l2=float(t)) for i in range(300) for t in (1, 2, 3)]
    avg = [r for r in paper_case_rows("a", records) if r["case"] == "average"][0]
    assert avg == [r for r in paper_case_rows("a", records) if r["case"] == "average"][0]
    assert abs(avg["ASR %"] - 200 / 3) < 8                     # 2 of 3 targets succeed
    assert 1.35 < avg["l2"] < 1.65                             # mean of the picks among {1, 2}
    other = [r for r in paper_case_rows("a", records, seed=1) if r["case"] == "average"][0]
    assert other["l2"] != avg["l2"]


def _two_attack_store(path):
    """'a' on images 0-1 (l2 1 and 9), 'b' on image 0 only (l2 2): a merged store of runs of
    different sizes."""
    store = ResultStore(path, {"dataset": "mnist"})
    a, b = store.add_attack("a", {}), store.add_attack("b", {})
    store.write(a, [record(0, 1, l2=1.0), record(1, 1, l2=9.0)])
    store.write(b, [record(0, 1, l2=2.0)])
    return store


def test_common_restricts_every_attack_to_the_examples_all_finished(tmp_path):
    from strattack.evaluation.report import common_examples
    with _two_attack_store(tmp_path / "s.sqlite") as store:
        assert common_examples(store) == {(0, 1)}
        every = {(r["attack"], r["case"]): r for r in report_rows(store)}
        common = {(r["attack"], r["case"]): r for r in report_rows(store, common=True)}
        paper = {(r["attack"], r["case"]): r
                 for r in report_rows(store, convention="paper", common=True)}
    assert every[("a", "average")]["l2"] == 5.0 and every[("a", "average")]["examples"] == 2
    assert common[("a", "average")]["l2"] == 1.0 and common[("a", "average")]["examples"] == 1
    assert paper[("a", "best")]["l2"] == 1.0 and common[("b", "average")]["l2"] == 2.0
    ratio = {r["case"]: r for r in ratio_rows(list(common.values()), "a", "b")}
    assert ratio["average"]["l2"] == 0.5


def test_a_ratio_over_different_examples_gets_a_note_and_common_one_none(tmp_path):
    from strattack.evaluation.report import ratio_notes
    with _two_attack_store(tmp_path / "s.sqlite") as store:
        notes = ratio_notes(store, [("a", "b"), ("b", "b")])
    assert notes == ["note: 'a' finished 2 examples and 'b' 1 (1 in common), so their ratio "
                     "compares different examples; --common restricts every attack to the "
                     "common ones"]
    _two_attack_store(tmp_path / "results.sqlite").close()
    out = CliRunner().invoke(main, ["report", str(tmp_path), "--no-figures", "--ratio", "a", "b"])
    assert out.exit_code == 0 and "compares different examples" in out.output
    out = CliRunner().invoke(main, ["report", str(tmp_path), "--no-figures", "--ratio", "a", "b",
                                    "--common"])
    assert out.exit_code == 0 and "compares different" not in out.output
    assert "| a / b | average | 1 | 0.5 |" in out.output and "(--common)" in out.output


def test_paper_l0_counts_entries_of_at_least_1e7():
    from strattack.evaluation.report import with_paper_l0
    delta = np.array([0, 5e-8, 1e-7, -2e-7, 0.3], np.float32).reshape(1, 1, 5)
    assert with_paper_l0(record(0, 1, perturbation=delta)).l0 == 3


def test_a_stored_image_folder_run_is_reloaded_at_the_crop_eval_used(tmp_path):
    """eval crops an image folder to the model's input size (Lite1: 240); readers of the store
    (transfer, explain, export) must crop the same, read from the stored perturbations."""
    from PIL import Image

    from strattack.evaluation.finished_run import load_store_data
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((90, 120, 3), 77, dtype=np.uint8)).save(folder / "0.png")
    (folder / "labels.csv").write_text("filename,label_index\n0.png,3\n")
    with ResultStore(tmp_path / "results.sqlite", {"dataset": str(folder)}) as store:
        key = store.add_attack("fgm", {})
        store.write(key, [record(0, 1, shape=(3, 40, 40))])
        assert load_store_data(store).images.shape == (1, 3, 40, 40)
