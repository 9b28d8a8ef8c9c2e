"""strattack eval --ray on a real local Ray runtime (2 CPUs), started once for the module: the
store of a local run, a worker killed mid-task, a restarted driver, and errors before any work."""
from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from strattack.cli import main
from strattack.evaluation.config import EvalConfig
from strattack.evaluation.distributed import RayOptions, driver, evaluate_on_ray
from strattack.evaluation.distributed.worker import Report
from strattack.evaluation.evaluate import evaluate
from strattack.evaluation.store import merge_stores

pytestmark = pytest.mark.usefixtures("one_thread")

#: Columns that say how and where an example ran, not what came out.
RUN_COLUMNS = {"seconds", "batch_size", "device"}

#: 4 bundled MNIST images x 9 targets with the cheapest attack.
RUN = ["eval", "--bundled", "-n", "4", "--targets", "all", "-a", "fgm", "--set", 'fgm.norm="l2"']


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module."""
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        yield
    finally:
        ray.shutdown()


def _crash_once(marker: Path, report: Report) -> Report:
    """``report``, and then, after a shard's first batch, the end of its worker, like a worker
    killed mid-task, if ``marker`` is still there to delete (deleting is atomic, so one task
    dies, once). A nested function: Ray sends it to the workers by value."""
    def report_then_crash(examples: int) -> None:
        report(examples)
        if not examples:
            return
        try:
            os.unlink(marker)
        except FileNotFoundError:
            return
        os._exit(1)
    return report_then_crash


def _config(out: Path, n: int = 4) -> EvalConfig:
    return EvalConfig.from_sources(None, {"bundled": True, "num_images": n, "targets": "all",
                                          "attacks": ("fgm",), "settings": ('fgm.norm="l2"',),
                                          "out": out, "progress": False})


def _quiet(_line: str) -> None:
    pass


def _table(store: Path, table: str, skip: set[str] = frozenset()) -> dict:
    """The rows of ``table`` by primary key, without the columns in ``skip``."""
    with sqlite3.connect(store) as db:
        cursor = db.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor]
    key = {"meta": ("key",), "attacks": ("key",), "examples": ("attack", "image", "target")}
    return {tuple(r[k] for k in key[table]): {c: v for c, v in r.items() if c not in skip}
            for r in rows}


def test_ray_writes_the_store_of_a_local_run(ray_runtime, tmp_path):
    local = evaluate(_config(tmp_path / "local"), log=_quiet, warn=_quiet)
    lines = []
    on_ray = evaluate_on_ray(_config(tmp_path / "ray"), RayOptions("local", tasks=4),
                             log=lines.append, warn=_quiet)
    assert (on_ray.attacked, on_ray.successes, on_ray.skipped) == (
        local.attacked, local.successes, local.skipped) and local.attacked == {"fgm": 36}
    assert "ray local: 4 tasks, 2 at once (1 CPU each)" in lines[0]
    a, b = tmp_path / "local" / "results.sqlite", tmp_path / "ray" / "results.sqlite"
    assert _table(a, "meta") == _table(b, "meta") and _table(a, "attacks") == _table(b, "attacks")
    # fgm is deterministic, and on CPU the same in any batch: the same numbers, bit for bit
    assert _table(a, "examples", RUN_COLUMNS) == _table(b, "examples", RUN_COLUMNS)


def test_a_worker_killed_mid_task_is_retried_and_recorded_once(ray_runtime, tmp_path,
                                                               monkeypatch):
    marker = tmp_path / "crash-once"
    marker.touch()                            # the first shard task to write a batch dies
    reporter = driver.progress_reporter
    monkeypatch.setattr(driver, "progress_reporter",
                        lambda progress, shard: _crash_once(marker, reporter(progress, shard)))
    res = CliRunner().invoke(main, [*RUN, "-n", "3", "--batch-size", "4", "--ray", "local",
                                    "--ray-tasks", "3", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert not marker.exists()                # the fault fired
    assert "27/27" in res.output              # the progress bar counts examples
    assert re.search(r"^done: fgm: 27 attacked \(\d+ adversarial\), 0 already done in "
                     r"[\d.]+ s$", res.output, re.M), res.output    # a local run's line
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        pairs = db.execute("SELECT image, target FROM examples").fetchall()
    assert len(pairs) == len(set(pairs)) == 27


def test_a_restarted_driver_schedules_only_what_is_missing(ray_runtime, tmp_path):
    config = _config(tmp_path)
    # What a driver killed after merging shard 0 of 4 leaves behind.
    first = evaluate(replace(config, shard=(0, 4)), log=_quiet, warn=_quiet)
    merge_stores(tmp_path / "results.sqlite", [tmp_path / "results-shard-0-of-4.sqlite"])
    lines = []
    again = evaluate_on_ray(config, RayOptions("local", tasks=4), log=lines.append, warn=_quiet)
    assert f"ray: 3 of 4 shards have examples to attack ({36 - first.attacked['fgm']}; " \
           f"{first.attacked['fgm']} already in the store)" in lines
    assert again.attacked["fgm"] + again.skipped["fgm"] == 36
    assert again.skipped == first.attacked
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(DISTINCT image || ':' || target), COUNT(*) "
                          "FROM examples").fetchone() == (36, 36)


def test_a_task_no_node_can_hold_is_refused_before_any_work(ray_runtime, tmp_path):
    res = CliRunner().invoke(main, [*RUN, "--ray", "local", "--device", "cuda",
                                    "--gpus-per-task", "1", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "no node of the Ray cluster can hold one task (1 CPU, 1 GPU; the cluster: 2 CPU, " \
           "0 GPU)" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    (["--ray", "nowhere"], "expected local, auto, HOST:PORT"),
    (["--ray", "http://head:10001"], "expected local, auto, HOST:PORT"),
    (["--ray", "ray://head"], "expected local, auto, HOST:PORT"),
    (["--ray-tasks", "4"], "--ray-tasks needs --ray ADDRESS"),
    (["--ray", "local", "--shard", "0/2"], "--shard with --ray"),
    (["--ray", "local", "--threads", "2"], "--cpus-per-task"),
    (["--ray", "local", "--device", "cuda"], "needs --gpus-per-task"),
    (["--ray", "local", "--gpus-per-task", "0.5"], "add --device cuda"),
])
def test_bad_ray_options_are_clear_errors_before_any_work(tmp_path, options, message):
    res = CliRunner().invoke(main, [*RUN, *options, "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_an_address_where_nothing_answers_is_a_clear_error_before_any_work(tmp_path):
    pytest.importorskip("ray")              # the address is probed once ray is imported
    res = CliRunner().invoke(main, [*RUN, "--ray", "127.0.0.1:1", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "nothing answers at 127.0.0.1:1" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_ray_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray: ImportError
    res = CliRunner().invoke(main, [*RUN, "--ray", "local", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "pip install 'strattack[ray]'" in res.output, res.output
    assert not (tmp_path / "out").exists()
