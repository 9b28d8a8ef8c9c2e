"""Defensive distillation (issue 14 §1) on tiny synthetic data: the formulas against direct
computations, and the teacher -> soft labels -> student pipeline."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from strattack.models import training
from strattack.models.pretrained import build_model

from helpers import fake_mnist, record_fit_calls, synthetic_mnist


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("temperature", [1.0, 10.0, 100.0])
def test_training_loss_is_the_cross_entropy_of_the_softmax_at_t(temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 10, generator=g, dtype=torch.float64) * 30
    labels = torch.tensor([0, 3, 9, 3, 1])
    soft = torch.softmax(torch.randn(5, 10, generator=g, dtype=torch.float64), dim=1)
    p = torch.exp(logits / temperature) / torch.exp(logits / temperature).sum(1, keepdim=True)
    hard_ref = -torch.log(p[torch.arange(5), labels]).mean()
    soft_ref = -(soft * torch.log(p)).sum(1).mean()
    assert torch.allclose(training.training_loss(logits, labels, temperature), hard_ref)
    assert torch.allclose(training.training_loss(logits, soft, temperature), soft_ref)


def test_soft_labels_are_the_teachers_softmax_at_t():
    teacher = build_model("mnist")
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = F.softmax(teacher.eval()(x) / 20.0, dim=1)
    got = training.soft_labels(teacher, x, 20.0, batch_size=4)
    assert torch.allclose(got, expected) and torch.allclose(got.sum(1), torch.ones(6))


def test_distill_trains_the_student_on_the_teachers_soft_labels_and_deploys_it_at_t1(
        tmp_path, monkeypatch):
    data = {"train": synthetic_mnist(96, 0), "test": synthetic_mnist(32, 1)}
    monkeypatch.setattr(training, "_load", lambda dataset, root, split: data[split])
    calls = record_fit_calls(monkeypatch)
    out = tmp_path / "student.safetensors"
    result = training.distill("mnist", tmp_path, out, temperature=50.0, epochs=1,
                              num_threads=1)
    (teacher_targets, t_teacher, teacher), (student_targets, t_student, student) = [
        (arguments["targets"], arguments["temperature"], model) for arguments, model in calls]
    assert torch.equal(teacher_targets, data["train"][1]) and t_teacher == 50.0
    assert t_student == 50.0 and student_targets.is_floating_point()
    assert torch.allclose(student_targets, training.soft_labels(teacher, data["train"][0], 50.0))
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["defense"] == "distillation" and meta["temperature"] == "50"
    assert float(meta["test_acc"]) == pytest.approx(result["test_acc"], abs=1e-4)
    assert "teacher_test_acc" in meta
    deployed = build_model("mnist")
    deployed.load_state_dict(load_file(str(out)))
    x = data["test"][0][:4]
    with torch.no_grad():       # deployed at T = 1: the raw logits, no division by T
        assert torch.allclose(deployed.eval()(x), student(x), atol=1e-6)


def test_folding_the_temperature_scales_the_logits_by_t_and_keeps_predictions():
    model = build_model("mnist").eval()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x)
        after = training.fold_temperature(model, 100.0)(x)
    assert torch.allclose(after, 100 * before, rtol=1e-5, atol=1e-4)
    assert torch.allclose(F.softmax(after / 100, dim=1), F.softmax(before, dim=1), atol=1e-6)


def test_an_architecture_name_with_weights_loads_those_weights(tmp_path):
    """`strattack train` writes weights of the mnist architecture; eval --model mnist --weights
    FILE attacks them (a bundled model name other than an architecture keeps refusing)."""
    from safetensors.torch import save_file

    from strattack.models.loading import load_model

    model = build_model("mnist")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "w.safetensors"))
    loaded = load_model("mnist", tmp_path / "w.safetensors")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(ValueError, match="loads its own weights"):
        load_model("mnist_robust", tmp_path / "w.safetensors")


@pytest.mark.parametrize("args, message", [
    (["--defense", "distillation"], "--temperature goes with --defense distillation"),
    (["--temperature", "10"], "--temperature goes with --defense distillation"),
    (["--defense", "distillation", "--temperature", "0"], "--temperature must be > 0"),
])
def test_train_defense_options_are_checked_before_any_data_loads(tmp_path, args, message):
    from click.testing import CliRunner

    from strattack.cli import main

    res = CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-root", str(tmp_path),
                                    "--out", str(tmp_path / "w.safetensors"), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_train_command_distills_when_asked(tmp_path, monkeypatch):
    from strattack.commands.train import train

    seen = {}
    monkeypatch.setattr(training, "distill", lambda *a, **k: seen.setdefault("distill", (a, k)))
    monkeypatch.setattr(training, "train", lambda *a, **k: seen.setdefault("train", (a, k)))
    train("mnist", tmp_path / "w.safetensors", tmp_path, epochs=2, defense="distillation",
          temperature=10.0)
    assert list(seen) == ["distill"] and seen["distill"][0][3] == 10.0


def _shipped_weights() -> list[str]:
    from strattack.models.pretrained import weights_path
    return sorted(p.stem for p in weights_path("mnist").parent.glob("*.safetensors"))


def test_every_shipped_weights_file_is_registered_by_name():
    from strattack.models.pretrained import _SAFETENSORS_MODELS
    assert _shipped_weights() == sorted(_SAFETENSORS_MODELS)


@pytest.mark.parametrize("name", _shipped_weights())
def test_every_shipped_model_loads_and_matches_its_recorded_accuracy(name):
    """On the 100 bundled test images, within 3 binomial standard errors (at least 1 image) of
    the test accuracy recorded in the weights' metadata."""
    from strattack.data import load_samples
    from strattack.models import load_pretrained
    from strattack.models.pretrained import weights_path

    with safe_open(str(weights_path(name)), "pt") as f:
        meta = f.metadata()
    dataset = meta["dataset"]
    recorded = float(meta.get("exact_acc", meta["test_acc"]))
    x, y, _ = load_samples(dataset)
    with torch.no_grad():
        acc = (load_pretrained(name)(x).argmax(1) == y).float().mean().item()
    tolerance = max(3 * (recorded * (1 - recorded) / len(y)) ** 0.5, 1 / len(y))
    assert abs(acc - recorded) <= tolerance, (acc, recorded)
    if name.endswith("_distilled"):
        assert meta["defense"] == "distillation" and meta["temperature"] == "100"


# --- adversarial training by data augmentation (issue 14 §2) --------------------------------

def _store(path, meta, records):
    import numpy as np

    from strattack.evaluation.store import ExampleRecord, ResultStore

    with ResultStore(path / "results.sqlite", meta) as store:
        key = store.add_attack("fgm", {})
        store.write(key, [ExampleRecord(i, t, y, ok, 1.0, 1.0, 1.0, 1.0, 1.0, 2, 1, 0.1, 4,
                                        np.full((1, 28, 28), 0.05 * (i + 1), np.float32))
                          for i, t, y, ok in records])


def test_adversarial_training_data_are_the_successful_examples_with_true_labels(tmp_path,
                                                                             monkeypatch):
    from strattack.commands.train import adversarial_training_data

    data = fake_mnist(monkeypatch)
    x, y = data["train"]
    _store(tmp_path, {"dataset": "mnist", "split": "train"},
           [(0, 3, int(y[0]), True), (1, 4, int(y[1]), False), (5, 2, int(y[5]), True)])
    images, labels = adversarial_training_data(tmp_path, "mnist", tmp_path)
    assert labels.tolist() == [int(y[0]), int(y[5])]
    expected = torch.stack([(x[0] + 0.05).clamp(0, 1), (x[5] + 0.3).clamp(0, 1)])
    assert torch.allclose(images, expected)


@pytest.mark.parametrize("meta, message", [
    ({"dataset": "cifar10", "split": "train"}, "dataset 'cifar10'"),
    ({"dataset": "mnist"}, "split 'test'"),
])
def test_adversarial_training_rejects_a_store_of_another_dataset_or_split(tmp_path, monkeypatch,
                                                                          meta, message):
    from strattack.commands.train import adversarial_training_data
    from strattack.errors import DataError

    fake_mnist(monkeypatch)
    _store(tmp_path, meta, [(0, 3, 0, True)])
    with pytest.raises(DataError, match=message):
        adversarial_training_data(tmp_path, "mnist", tmp_path)


def test_eval_on_the_training_split_feeds_train_defense_adversarial(tmp_path, monkeypatch):
    """End to end through the CLI: eval --split train stores training-set examples; train
    --defense adversarial retrains on the clean set plus the successful ones."""
    from click.testing import CliRunner

    from strattack.cli import main

    data = fake_mnist(monkeypatch)
    model = tmp_path / "w.safetensors"
    res = CliRunner().invoke(main, ["eval", "--dataset", "mnist", "--data-root", str(tmp_path),
                                    "--split", "train", "--targets", "untargeted", "-a", "fgm",
                                    "--model", "band_model:build", "--no-weights",
                                    "-o", str(tmp_path / "run"),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    seen = {}
    monkeypatch.setattr(training, "train", lambda *a, **k: seen.update(k))
    res = CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-root", str(tmp_path),
                                    "--out", str(model), "--defense", "adversarial",
                                    "--adv-examples", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    images, labels = seen["extra_train"]
    assert len(labels) >= 1 and labels.tolist() == [
        int(data["train"][1][i]) for i in _successful_images(tmp_path / "run")]


def _successful_images(run):
    from strattack.evaluation.store import ResultStore

    with ResultStore(run / "results.sqlite", read_only=True) as store:
        return [r.image for key in store.attacks() for r in store.records(key) if r.success]


def test_the_training_split_needs_a_named_datasets_files(tmp_path):
    from click.testing import CliRunner

    from strattack.cli import main

    res = CliRunner().invoke(main, ["eval", "--bundled", "--split", "train", "-a", "fgm",
                                    "-o", str(tmp_path / "run")])
    assert res.exit_code == 2 and "--split train needs the files" in res.output, res.output
