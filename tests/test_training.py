"""`strattack train`'s schedule and PGD options reach the training function, bad values are
usage errors before any data loads, and PGD adversarial training crafts its batches with the
library's ifgsm on the model in eval mode, then steps the optimiser in train mode."""
from __future__ import annotations

import warnings

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from strattack.cli import main
from strattack.models import adversarial_training, training
from strattack.models.adversarial_training import AdversarialTraining
from strattack.models.pretrained import build_model
from strattack.models.recipe import Schedule

from helpers import fake_mnist, record_fit_calls

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(tmp_path, *args: str):
    return CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-root", str(tmp_path),
                                     "--out", str(tmp_path / "w.safetensors"), *args])


def test_the_schedule_and_pgd_options_reach_the_training_function(tmp_path, monkeypatch):
    fake_mnist(monkeypatch, n_train=24)
    calls = record_fit_calls(monkeypatch)
    res = _train(tmp_path, "--epochs", "1", "--threads", "1", "--batch-size", "8",
                 "--max-lr", "0.02", "--limit-train", "16", "--adv-eps", "0.25",
                 "--adv-steps", "2", "--adv-step-size", "0.1", "--adv-ramp-epochs", "0")
    assert res.exit_code == 0, res.output
    [(arguments, _)] = calls
    assert arguments["schedule"] == Schedule(epochs=1, batch_size=8, max_lr=0.02)
    assert len(arguments["x_train"]) == 16
    assert arguments["adversarial"] == AdversarialTraining(0.25, 2, 0.1, 0.0)
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        meta = f.metadata()
    assert "AdversarialTraining(eps=0.25" in meta["adversarial"] and "pgd40_acc_1000" in meta


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["--max-lr", "0"], "Invalid value for '--max-lr'"),
    (["--limit-train", "0"], "Invalid value for '--limit-train'"),
    (["--adv-eps", "0"], "Invalid value for '--adv-eps'"),
    (["--adv-eps", "1.5"], "Invalid value for '--adv-eps'"),
    (["--adv-eps", "0.3", "--adv-steps", "0"], "Invalid value for '--adv-steps'"),
    (["--adv-steps", "3"], "--adv-steps goes with --adv-eps"),
    (["--adv-ramp-epochs", "1"], "--adv-ramp-epochs goes with --adv-eps"),
    (["--adv-eps", "0.3", "--defense", "distillation", "--temperature", "10"],
     "does not go with --defense distillation"),
])
def test_bad_training_options_are_usage_errors_before_any_data_loads(tmp_path, args, message):
    res = _train(tmp_path, *args)      # tmp_path holds no data: a data error would be exit 1
    assert res.exit_code == 2 and message in res.output, res.output


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"max_lr": -1.0}, "max_lr must be a number > 0"),
    ({"limit_train": 0}, "limit_train must be an integer >= 1"),
])
def test_the_training_function_checks_its_schedule_before_reading_data(tmp_path, kwargs,
                                                                       message):
    with pytest.raises(ValueError, match=message):
        training.train("mnist", tmp_path, tmp_path / "w.safetensors", **kwargs)


def test_pgd_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="adversarial eps must be a number > 0"):
        AdversarialTraining(eps=0.0)
    with pytest.raises(ValueError, match="adversarial steps must be an integer >= 1"):
        AdversarialTraining(steps=0)


def test_pgd_examples_stay_in_the_ball_and_give_the_model_back_in_train_mode():
    torch.manual_seed(0)
    model = build_model("mnist").train()
    x = torch.rand(4, 1, 28, 28)
    y = torch.arange(4)
    pgd = AdversarialTraining(eps=0.2, steps=2, step_size=0.1, ramp_epochs=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no "model in training mode" warning
        adv = pgd.examples(model, x, y, epochs_done=1.0)   # half-way up the ramp: eps 0.1
    assert model.training
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(pgd.examples(model, x, y, epochs_done=0.0), x)   # ramp start: clean


def test_adversarial_training_attacks_in_eval_mode_and_steps_in_train_mode(tmp_path,
                                                                          monkeypatch):
    fake_mnist(monkeypatch, n_train=16)
    attacked, trained = [], []
    real_ifgsm = adversarial_training.ifgsm

    def spy_ifgsm(model, inputs, labels, **kwargs):
        attacked.append((model.training, kwargs["epsilon"], kwargs["random_start"]))
        return real_ifgsm(model, inputs, labels, **kwargs)

    real_build = training.build_model

    def watched_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_hook(lambda m, i, o: trained.append(len(o))
                                    if m.training and torch.is_grad_enabled() else None)
        return model

    monkeypatch.setattr(adversarial_training, "ifgsm", spy_ifgsm)
    monkeypatch.setattr(training, "build_model", watched_build)
    training.train("mnist", tmp_path, tmp_path / "w.safetensors", epochs=1, batch_size=8,
                   num_threads=1, adversarial=AdversarialTraining(0.3, 1, 0.3, ramp_epochs=1))
    # two training batches: the first at the ramp's start (clean), the second at eps 0.15,
    # then PGD-40 at 0.3 on the test images for the robust accuracy
    assert trained == [8, 8]
    assert attacked[0] == (False, pytest.approx(0.15), True) and attacked[-1][1] == 0.3
    assert all(not training_mode for training_mode, _, _ in attacked)
