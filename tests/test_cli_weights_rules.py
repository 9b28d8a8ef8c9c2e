"""Command-line options of `explain` and `transfer` that would be ignored or would silently use a
randomly initialised network: `explain -n` without RUN_DIR, a module:callable model without
--weights or --no-weights (eval's rule, in `explain` and `transfer`), --no-weights where nothing
takes it. Each is a usage error (exit 2) with a one-line message before any work; the
accepted forms run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from strattack.cli import main
from strattack.commands import explain as explain_module
from strattack.errors import DataError
from strattack.evaluation.config import EvalConfig
from strattack.evaluation.evaluate import evaluate
from strattack.evaluation.transfer_store import TRANSFER_STORE_NAME

pytestmark = pytest.mark.usefixtures("one_thread")

#: A user module whose network takes the bundled MNIST images.
NET = "import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n" \
      "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"

ONE_IMAGE = ("explain", "--bundled", "--image", "0", "--target", "1")


def _user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    """The spec ``name:build`` of :data:`NET` in an importable folder (each test its own
    name: a module stays imported)."""
    folder = tmp_path / "code"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(NET)
    monkeypatch.syspath_prepend(str(folder))
    return f"{name}:build"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _refused(res: Result, *messages: str) -> None:
    assert res.exit_code == 2, res.output
    for message in messages:
        assert message in res.output, res.output
    assert "Traceback" not in res.output


# ------------------------------------------------------------------ explain -n
def test_explain_num_examples_without_a_run_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _invoke(*ONE_IMAGE, "-n", "5")
    _refused(res, "-n/--num-examples chooses how many examples of a RUN_DIR's store to explain; "
             "without RUN_DIR, StrAttack and C&W-l2 attack one image (--image)")
    assert not (tmp_path / "explain").exists()


@pytest.mark.parametrize("args, expected", [((), 100), (("-n", "7"), 7)])
def test_explain_num_examples_with_a_run_folder_counts_the_store_examples(tmp_path, monkeypatch,
                                                                          args, expected):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.sqlite").touch()
    asked = []

    def common_successes(_store, _labels, n):
        asked.append(n)
        raise DataError("stop here")

    monkeypatch.setattr(explain_module, "read_store", lambda _path: _Nothing())
    monkeypatch.setattr(explain_module, "store_labels", lambda _store: {"a": "A", "b": "B"})
    monkeypatch.setattr(explain_module, "common_successes", common_successes)
    res = _invoke("explain", str(run), *args)
    assert res.exit_code == 1 and "stop here" in res.output, res.output
    assert asked == [expected]


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


# ------------------------------------------------------------------ explain: a model's weights
def test_explain_a_user_model_without_weights_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _user_module(tmp_path, monkeypatch, "explain_unweighted")
    res = _invoke(*ONE_IMAGE, "--model", spec)
    _refused(res, f"--model '{spec}' without --weights would attack the network as the callable "
             "builds it", "give --weights FILE", "or --no-weights")
    assert not (tmp_path / "explain").exists()


@pytest.mark.parametrize("args, message", [
    (("--model", "anything:build", "--no-weights", "--weights", "w.pt"),
     "--no-weights and --weights contradict each other: give one"),
    (("--model", "mnist", "--no-weights"), "--no-weights applies to a module:callable --model; "
     "a bundled model loads its own weights"),
    (("--no-weights",), "--no-weights applies to a module:callable --model"),
])
def test_explain_no_weights_with_weights_or_a_bundled_model_is_refused(tmp_path, monkeypatch,
                                                                        args, message):
    monkeypatch.chdir(tmp_path)
    _refused(_invoke(*ONE_IMAGE, *args), message)
    assert not (tmp_path / "explain").exists()


@pytest.mark.parametrize("args, given", [
    (("--no-weights",), "--no-weights applies"),
    (("--weights", "w.pt"), "--weights applies"),
    (("--model", "m:build", "--weights", "w.pt"), "--model, --weights apply"),
])
def test_explain_with_a_run_folder_refuses_weights_options(tmp_path, args, given):
    run = tmp_path / "run"
    _refused(_invoke("explain", str(run), *args), f"{given} only without RUN_DIR")
    assert not run.exists()


def _cheap_attack(seen: list):
    """explain's `_attack` without the attacks: fixed perturbations; records the model."""
    def attack(ex, _group_size):
        seen.append(ex.model)
        g = torch.Generator().manual_seed(5)
        return {k: 0.05 * torch.randn(ex.x.shape, generator=g) for k in ("A", "B")}, []
    return attack


def test_explain_attacks_a_user_model_with_no_weights(tmp_path, monkeypatch):
    spec = _user_module(tmp_path, monkeypatch, "explain_built")
    seen: list = []
    monkeypatch.setattr(explain_module, "_attack", _cheap_attack(seen))
    res = _invoke(*ONE_IMAGE, "--model", spec, "--no-weights", "--figures", "0",
                  "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert len(seen) == 1
    torch.manual_seed(0)                       # the network exactly as build() makes it
    built = torch.nn.Linear(784, 10)
    assert torch.equal(seen[0][1].weight, built.weight)
    assert (tmp_path / "out" / "interpretability.json").is_file()


def test_explain_loads_the_weights_of_a_user_model(tmp_path, monkeypatch):
    spec = _user_module(tmp_path, monkeypatch, "explain_weighted")
    weights = tmp_path / "w.pt"
    torch.save({"1.weight": torch.full((10, 784), 0.01), "1.bias": torch.arange(10.0)}, weights)
    seen: list = []
    monkeypatch.setattr(explain_module, "_attack", _cheap_attack(seen))
    res = _invoke(*ONE_IMAGE, "--model", spec, "--weights", str(weights), "--figures", "0",
                  "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert torch.equal(seen[0][1].bias, torch.arange(10.0))
    assert torch.equal(seen[0][1].weight, torch.full((10, 784), 0.01))


# ------------------------------------------------------------------ transfer: a model's weights
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """2 bundled MNIST images x next target, attacked with FGM."""
    out = tmp_path_factory.mktemp("run")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    config = EvalConfig.from_sources(None, {"dataset": "mnist", "bundled": True,
                                            "indices": "0,1,2", "targets": "next",
                                            "attacks": ("fgm",), "progress": False, "out": out})
    evaluate(config, log=lambda _: None, warn=lambda _: None)
    torch.set_num_threads(previous)
    return out


def test_transfer_to_a_user_model_without_weights_is_refused(run, tmp_path, monkeypatch):
    spec = _user_module(tmp_path, monkeypatch, "transfer_unweighted")
    out = tmp_path / "out"
    res = _invoke("transfer", str(run), "--model", spec, "--model", "mnist", "-o", str(out))
    _refused(res, f"--model '{spec}' without --weights would transfer to the network as the "
             "callable builds it", "give --weights [SPEC=]FILE", "or --no-weights")
    assert not out.exists()


def test_transfer_names_every_user_model_without_weights(run, tmp_path):
    res = _invoke("transfer", str(run), "--model", "a.b:build", "--model", "c:build",
                  "--model", "d:build", "--weights", "d:build=w.pt")
    _refused(res, "--model 'a.b:build', --model 'c:build' without --weights would transfer to "
             "the networks as the callables build them")
    assert not (run / TRANSFER_STORE_NAME).exists()


@pytest.mark.parametrize("args", [
    ("--model", "mnist", "--no-weights"),
    ("--model", "m:build", "--weights", "w.pt", "--no-weights"),
    ("--model", "m:build", "--model", "mnist", "--weights", "m:build=w.pt", "--no-weights"),
])
def test_transfer_no_weights_that_would_be_ignored_is_refused(run, tmp_path, args):
    out = tmp_path / "out"
    res = _invoke("transfer", str(run), *args, "-o", str(out))
    _refused(res, "--no-weights applies to a module:callable --model without --weights; here "
             "there is none")
    assert not out.exists()


def test_transfer_to_a_user_model_with_no_weights(run, tmp_path, monkeypatch):
    spec = _user_module(tmp_path, monkeypatch, "transfer_built")
    out = tmp_path / "out"
    res = _invoke("transfer", str(run), "--model", spec, "--model", "mnist", "--no-weights",
                  "--threads", "1", "-o", str(out))
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "transfer.json").read_text())
    assert set(doc["models"]) == {spec, "mnist"}
    assert doc["models"][spec] == f"{spec} weights=none (the network as the callable builds it)"
    assert doc["models"]["mnist"] == "mnist"
    assert {r["model"] for r in doc["rows"]} == {spec, "mnist"}
