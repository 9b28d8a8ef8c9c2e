"""`strattack transfer`: stored adversarial examples evaluated on other models (Table 3).
Tiny stores of 3 bundled MNIST images, the bundled models, forward passes only."""
from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from strattack.cli import main
from strattack.errors import ConfigError, DataError
from strattack.evaluation.config import EvalConfig
from strattack.evaluation.evaluate import evaluate
from strattack.evaluation.store import ResultStore
from strattack.evaluation.transfer import Receiver, transfer
from strattack.evaluation.transfer_store import TRANSFER_STORE_NAME
from strattack.models import load_pretrained


pytestmark = pytest.mark.usefixtures("one_thread")


def _evaluate(out, targets):
    config = EvalConfig.from_sources(None, {"dataset": "mnist", "bundled": True,
                                            "indices": "0,1,2", "targets": targets,
                                            "attacks": ("fgm", "ifgsm"),
                                            "settings": ("ifgsm.steps=3",), "progress": False,
                                            "out": out})
    evaluate(config, log=lambda _: None, warn=lambda _: None)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """3 bundled MNIST images x next target; FGM fails on some, 3-step I-FGSM on none."""
    torch.set_num_threads(1)
    return _evaluate(tmp_path_factory.mktemp("run"), "next")


@pytest.fixture(scope="module")
def untargeted_run(tmp_path_factory):
    torch.set_num_threads(1)
    return _evaluate(tmp_path_factory.mktemp("untargeted"), "untargeted")


def _transfer(run_dir, receivers, out, **kwargs):
    with ResultStore(run_dir / "results.sqlite", read_only=True) as store:
        return transfer(store, receivers, out, **kwargs)


def _rows(out):
    with sqlite3.connect(out / TRANSFER_STORE_NAME) as db:
        return db.execute("SELECT attack, model, image, target, top1, top5, clean_top1, "
                          "clean_top5 FROM transfers ORDER BY attack, image").fetchall()


def _stored(run_dir):
    with ResultStore(run_dir / "results.sqlite", read_only=True) as store:
        return {k: list(store.records(k, with_perturbation=True)) for k in store.attacks()}


def test_transfer_to_the_source_model_reproduces_the_stored_success(run, tmp_path):
    summary = _transfer(run, [Receiver("mnist", load_pretrained("mnist"))], tmp_path,
                        batch_size=2)
    stored = _stored(run)
    successes = {(k, r.image, r.target) for k, recs in stored.items() for r in recs if r.success}
    rows = _rows(tmp_path)
    # exactly the successful examples are transferred, and each is top-1 on its own model
    assert {(a, i, t) for a, _, i, t, *_ in rows} == successes
    assert all(top1 == 1 and top5 == 1 for *_, top1, top5, _, _ in rows)
    # the store records how many of each attack's examples were transferred
    by_name = {key.split()[0]: recs for key, recs in stored.items()}
    assert summary.sources == {name: (len(recs), sum(r.success for r in recs))
                               for name, recs in by_name.items()}
    assert all(r["top-1 %"] == 100.0 for r in summary.rows)
    assert any("only those are transferred" in n for n in summary.notes)


def test_untargeted_success_is_a_changed_prediction_and_has_no_top5(untargeted_run, tmp_path):
    summary = _transfer(untargeted_run, [Receiver("mnist", load_pretrained("mnist"))], tmp_path)
    rows = _rows(tmp_path)
    assert rows and all(t == -1 and top1 == 1 and top5 is None and clean1 == 0
                        for _, _, _, t, top1, top5, clean1, _ in rows)
    assert all(r["top-1 %"] == 100.0 and r["top-5 %"] != r["top-5 %"] for r in summary.rows)


def test_clean_baseline_is_what_the_clean_images_give(run, tmp_path):
    model = load_pretrained("mnist")
    summary = _transfer(run, [Receiver("mnist", model)], tmp_path / "a")
    # the source classifies its attacked images correctly: no target is top-1 on them
    assert all(r["clean top-1 %"] == 0.0 for r in summary.rows)
    # a store of the same examples with zero perturbations: adversarial == clean, no more
    zero = tmp_path / "zero"
    with ResultStore(run / "results.sqlite", read_only=True) as src:
        meta, attacks = src.meta(), src.attacks()
    with ResultStore(zero / "results.sqlite", meta) as dest:
        for key, records in _stored(run).items():
            dest.add_attack(*attacks[key])
            dest.write(key, [dataclasses.replace(r, perturbation=0 * r.perturbation)
                             for r in records])
    _transfer(zero, [Receiver("mnist", model)], zero)
    rows = _rows(zero)
    assert rows and all(top1 == clean1 == 0 and top5 == clean5
                        for *_, top1, top5, clean1, clean5 in rows)


class _Spy32(nn.Module):
    """Takes (N, 1, 32, 32) only; remembers the range and shape of what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32 * 32, 10)
        self.seen: list[tuple[tuple[int, ...], float, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((tuple(x.shape), float(x.min()), float(x.max())))
        return self.linear(x.flatten(1))


def test_resize_path_keeps_inputs_in_the_unit_box(run, tmp_path):
    spy = _Spy32()
    summary = _transfer(run, [Receiver("spy32", spy, input_size=(32, 32))], tmp_path)
    assert len(spy.seen) > 1 and summary.rows[0]["examples"] > 0
    for shape, low, high in spy.seen:
        assert shape[1:] == (1, 32, 32) and low >= 0.0 and high <= 1.0
    with sqlite3.connect(tmp_path / TRANSFER_STORE_NAME) as db:
        meta = dict(db.execute("SELECT * FROM meta"))
    assert json.loads(meta["model spy32"]).endswith("@ 32x32")       # metadata is JSON


@pytest.mark.parametrize("model, match", [
    (nn.Conv2d(3, 4, 3), "spy rejects the mnist images"),           # 3 channels expected
    (nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10)), "spy rejects"),  # 32x32 expected
    (nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 7)), r"returns \(1, 7\)"),
])
def test_a_model_that_rejects_the_input_fails_before_any_work(run, tmp_path, model, match):
    with pytest.raises(ConfigError, match=match):
        _transfer(run, [Receiver("mnist", load_pretrained("mnist")), Receiver("spy", model)],
                  tmp_path)
    assert not (tmp_path / TRANSFER_STORE_NAME).exists()


def test_a_store_without_perturbations_is_a_clear_error(tmp_path):
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                         "CREATE TABLE attacks (key TEXT PRIMARY KEY, name TEXT, params TEXT);"
                         "CREATE TABLE examples (attack TEXT, image INTEGER, target INTEGER, "
                         "success INTEGER);")
    with pytest.raises(DataError, match="stores no perturbations"):
        _transfer(tmp_path, [Receiver("mnist", load_pretrained("mnist"))], tmp_path)
    assert not (tmp_path / TRANSFER_STORE_NAME).exists()


def test_a_store_without_successes_is_a_clear_error(run, tmp_path):
    with ResultStore(run / "results.sqlite", read_only=True) as src:
        meta, attacks = src.meta(), src.attacks()
    with ResultStore(tmp_path / "results.sqlite", meta) as dest:
        for key, records in _stored(run).items():
            dest.add_attack(*attacks[key])
            dest.write(key, [dataclasses.replace(r, success=False) for r in records])
    with pytest.raises(DataError, match="no example that succeeded"):
        _transfer(tmp_path, [Receiver("mnist", load_pretrained("mnist"))], tmp_path)
    assert not (tmp_path / TRANSFER_STORE_NAME).exists()


def test_a_rerun_adds_nothing(run, tmp_path):
    receivers = [Receiver("mnist", load_pretrained("mnist")),
                 Receiver("robust", load_pretrained("mnist_robust"))]
    first = _transfer(run, receivers, tmp_path, batch_size=2)
    rows = _rows(tmp_path)
    again = _transfer(run, receivers, tmp_path, batch_size=2)
    assert first.added == len(rows) > 0 and again.added == 0
    assert _rows(tmp_path) == rows and again.rows == first.rows


def test_a_model_name_reused_for_another_model_is_refused(run, tmp_path):
    _transfer(run, [Receiver("m", load_pretrained("mnist"), spec="mnist")], tmp_path)
    with pytest.raises(ConfigError, match="holds other transfer results"):
        _transfer(run, [Receiver("m", load_pretrained("mnist_robust"), spec="mnist_robust")],
                  tmp_path)


def test_cli_prints_the_table_and_writes_csv_json_png(run, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["transfer", str(run), "--model", "mnist", "--model",
                                       "mnist_distilled", "-o", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "| attack | model | examples | top-1 % | top-1 95% CI | top-5 % |" in result.output
    assert "| ifgsm | mnist_distilled | 3 |" in result.output
    with open(out / "transfer.csv") as f:
        assert len(list(csv.DictReader(f))) == 4          # 2 attacks x 2 models
    doc = json.loads((out / "transfer.json").read_text())
    assert doc["models"] == {"mnist": "mnist", "mnist_distilled": "mnist_distilled"}
    assert doc["sources"]["ifgsm"] == {"stored": 3, "transferred": 3}
    assert (out / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run / TRANSFER_STORE_NAME).exists()      # -o: the run folder is left alone


def test_cli_errors_are_clear(run, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["transfer", str(run), "--model", "no_such_model", "-o",
                               str(tmp_path)])
    assert bad.exit_code == 1 and "no_such_model" in bad.output and "Traceback" not in bad.output
    weights = runner.invoke(main, ["transfer", str(run), "--model", "mnist", "--model",
                                   "mnist_robust", "--weights", "w.safetensors"])
    assert weights.exit_code == 2 and "SPEC=FILE" in weights.output
    missing = runner.invoke(main, ["transfer", str(tmp_path), "--model", "mnist"])
    assert missing.exit_code == 1 and "no store" in missing.output


def test_cli_resizes_for_a_user_model_that_declares_its_input_size(run, tmp_path):
    result = CliRunner().invoke(main, ["transfer", str(run), "--model",
                                       "upscaled_mnist_model:build", "--no-weights", "-o",
                                       str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "transfer.json").read_text())
    assert doc["models"] == {"upscaled_mnist_model:build": "upscaled_mnist_model:build "
                             "weights=none (the network as the callable builds it) @ 32x32"}
    assert all(r["examples"] > 0 for r in doc["rows"])


def test_a_corrupt_transfer_store_is_a_clear_error(run, tmp_path):
    (tmp_path / TRANSFER_STORE_NAME).write_bytes(b"not sqlite" * 100)
    with pytest.raises(DataError, match="is not a readable transfer store"):
        _transfer(run, [Receiver("mnist", load_pretrained("mnist"))], tmp_path)


def test_transfer_rows_carry_wilson_intervals():
    """5 of 10 gives the textbook Wilson 95% interval [23.7, 76.3]; an undefined rate (untargeted
    top-5) has none."""
    from strattack.evaluation.transfer import with_intervals
    row = with_intervals({"examples": 10, "top-1 %": 50.0, "top-5 %": float("nan")})
    assert row["top-1 95% CI"] == "[23.7, 76.3]"
    assert row["top-5 95% CI"] == "n/a"
