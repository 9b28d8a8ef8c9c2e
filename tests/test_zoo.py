"""The cross-architecture model zoo (issue 15 §2): `strattack train --arch`, architecture
recorded in the weights and rebuilt on loading, the shipped MNIST zoo. Synthetic data only."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from strattack.cli import main, train_command
from strattack.models import training, zoo
from strattack.models.loading import load_model
from strattack.models.nets import MNISTNet
from strattack.models.pretrained import ARCHITECTURES, build_model, weights_path

from helpers import fake_mnist, record_fit_calls

pytestmark = pytest.mark.usefixtures("one_thread")

#: The shipped zoo: name -> the architecture its metadata must record.
SHIPPED_ZOO = {"mnist_mlp": "mlp", "mnist_lenet5": "lenet5", "mnist_seed1": "cnn",
               "mnist_resnet": "resnet", "mnist_vgg": "vgg"}


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("dataset, shape", [("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_every_architecture_maps_images_of_each_dataset_to_ten_logits(arch, dataset, shape):
    model = build_model(dataset, arch).eval()
    with torch.no_grad():
        logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    assert model.mean.shape[1] == shape[0]          # the dataset's normalisation, whatever arch


def test_the_cli_offers_exactly_the_library_architectures():
    arch_option = next(p for p in train_command.params if p.name == "arch")
    assert tuple(arch_option.type.choices) == ARCHITECTURES


@pytest.fixture
def tiny_mnist(monkeypatch):
    """The mnist registry entry reading 32 synthetic training and 8 test images."""
    return fake_mnist(monkeypatch, n_train=32)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_train_arch_round_trip_rebuilds_the_architecture_with_the_same_logits(
        arch, tmp_path, tiny_mnist, monkeypatch):
    calls = record_fit_calls(monkeypatch)
    out = tmp_path / f"{arch}.safetensors"
    res = CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-root", str(tmp_path),
                                    "--out", str(out), "--arch", arch, "--epochs", "1",
                                    "--threads", "1"])
    assert res.exit_code == 0, res.output
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["arch"] == arch and meta["dataset"] == "mnist" and meta["epochs"] == "1"
    [(arguments, trained)] = calls
    loaded = load_model("mnist", weights=out)
    assert arguments["arch"] == arch and type(loaded.model) is type(trained.model)
    x = tiny_mnist["test"][0]
    with torch.no_grad():
        assert torch.equal(loaded(x), trained.eval()(x))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_distillation_trains_teacher_and_student_in_the_asked_architecture(
        tmp_path, tiny_mnist, monkeypatch):
    calls = record_fit_calls(monkeypatch)
    out = tmp_path / "student.safetensors"
    training.distill("mnist", tmp_path, out, temperature=10.0, epochs=1, arch="lenet5")
    assert [arguments["arch"] for arguments, _ in calls] == ["lenet5", "lenet5"]
    assert isinstance(load_model("mnist", weights=out).model, zoo.LeNet5)


def test_an_unknown_arch_is_refused_before_any_data_is_read(tmp_path):
    from strattack.commands.train import train
    from strattack.errors import ConfigError

    res = CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-root", str(tmp_path),
                                    "--out", str(tmp_path / "w.safetensors"), "--arch", "bogus"])
    assert res.exit_code == 2 and "'bogus' is not one of" in res.output, res.output
    with pytest.raises(ConfigError, match="--arch must be one of"):
        train("mnist", tmp_path / "w.safetensors", tmp_path, arch="bogus")
    for fn in (training.train, training.distill):      # tmp_path holds no data: checked first
        extra = {"temperature": 10.0} if fn is training.distill else {}
        with pytest.raises(ValueError, match="unknown architecture 'bogus'"):
            fn("mnist", tmp_path, tmp_path / "w.safetensors", arch="bogus", **extra)


def _weights(tmp_path, arch: str, metadata: dict[str, str], name: str = "w.safetensors"):
    """``arch``'s untrained MNIST weights saved with ``metadata``."""
    path = tmp_path / name
    state = {k: v.contiguous() for k, v in build_model("mnist", arch).state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("metadata, message", [
    ({"arch": "resnet"}, r"does not fit model mnist \(arch resnet\)"),   # MLP tensors
    ({"arch": "bogus"}, "architecture 'bogus', unknown"),
    ({"arch": "mlp", "dataset": "cifar10"}, "trained on 'cifar10', not 'mnist'"),
])
def test_weights_whose_metadata_does_not_match_are_a_clear_error(tmp_path, metadata, message):
    path = _weights(tmp_path, "mlp", metadata)
    with pytest.raises(ValueError, match=message):
        load_model("mnist", weights=path)


def test_a_tagged_weights_file_loads_by_name_in_its_recorded_architecture(tmp_path, monkeypatch):
    from strattack.models import pretrained

    monkeypatch.setattr(pretrained, "_WEIGHTS_DIR", tmp_path)
    _weights(tmp_path, "vgg", {"dataset": "mnist", "arch": "vgg"}, "mnist_other.safetensors")
    _weights(tmp_path, "vgg", {"dataset": "mnist", "arch": "lenet5"}, "mnist_wrong.safetensors")
    assert isinstance(pretrained.load_pretrained("mnist_other").model, zoo.VGG)
    with pytest.raises(ValueError, match="does not fit model mnist_wrong"):
        pretrained.load_pretrained("mnist_wrong")


def test_files_without_an_arch_hold_the_datasets_cnn(tmp_path):
    """The weights shipped before --arch existed record no architecture."""
    with safe_open(str(weights_path("mnist")), "pt") as f:
        assert "arch" not in f.metadata()
    assert type(load_model("mnist").model) is MNISTNet
    path = _weights(tmp_path, "cnn", {"dataset": "mnist"})
    assert type(load_model("mnist", weights=path).model) is MNISTNet


@pytest.mark.parametrize("name, arch", SHIPPED_ZOO.items())
def test_the_shipped_zoo_records_its_architecture_and_loads_it_by_name(name, arch):
    """Their accuracy on the bundled images is checked with every shipped model's in
    test_defenses.py."""
    with safe_open(str(weights_path(name)), "pt") as f:
        meta = f.metadata()
    assert meta["arch"] == arch and meta["dataset"] == "mnist" and meta["epochs"] == "3"
    assert meta["seed"] == ("1" if name == "mnist_seed1" else "0")
    expected = MNISTNet if arch == "cnn" else zoo.ZOO[arch]
    assert type(load_model(name).model) is expected


def test_transfer_takes_the_zoo_by_name(tmp_path):
    from strattack.evaluation.config import EvalConfig
    from strattack.evaluation.evaluate import evaluate

    run = tmp_path / "run"
    config = EvalConfig.from_sources(None, {"dataset": "mnist", "bundled": True, "indices": "0,1",
                                            "targets": "next", "attacks": ("ifgsm",),
                                            "settings": ("ifgsm.steps=3",), "progress": False,
                                            "out": run})
    evaluate(config, log=lambda _: None, warn=lambda _: None)
    models = [arg for name in SHIPPED_ZOO for arg in ("--model", name)]
    res = CliRunner().invoke(main, ["transfer", str(run), *models, "-o", str(tmp_path / "t"),
                                    "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert all(f"| ifgsm | {name} | 2 |" in res.output for name in SHIPPED_ZOO), res.output
