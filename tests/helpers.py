"""Models shared by the attack tests (importable as ``helpers``: pytest runs with
pythonpath = ["tests"])."""
from __future__ import annotations

import torch
from torch import nn


class TwoClassLinear(nn.Module):
    """Z_0 = 0, Z_1 = <w, x> + b. Reaching class 1 from margin m = -(<w, x0> + b) > 0 needs, when
    the box does not bind, ||delta||_2 >= m/||w||_2, ||delta||_inf >= m/||w||_1 and
    ||delta||_1 >= m/max|w_i| (Hoelder), with equality for delta along w, sign(w), and the
    largest-weight coordinate respectively."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.flatten(1) @ self.w.flatten().to(x.dtype) + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


def linear_case():
    """A TwoClassLinear model on a 6x6 image at 0.5 with three nonzero weights (3, -1, 0.5), in
    class 0 with margin 0.3: (model, x0, w)."""
    w = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    w[0, 0, 1, 1], w[0, 0, 3, 4], w[0, 0, 4, 2] = 3.0, -1.0, 0.5
    x0 = torch.full((1, 1, 6, 6), 0.5, dtype=torch.float64)
    b = -(x0.flatten() @ w.flatten()).item() - 0.3           # class 0 with margin 0.3
    return TwoClassLinear(w, b), x0, w


def small_cnn(channels: int = 1, classes: int = 5, seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, classes))
    with torch.no_grad():   # logit spreads of a few units, like a trained classifier
        model[-1].weight.mul_(30)
    return model.to(dtype).eval()


class CountingModel:
    """Calls ``model`` and counts the calls (``calls``)."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def __call__(self, x):
        self.calls += 1
        return self.model(x)


def count_passes(model: nn.Module) -> dict[str, int]:
    """Hooks on ``model`` counting the images it runs forward ("fwd") and backward ("bwd"); the
    returned dict is updated as the model runs."""
    seen = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda m, i, o: seen.__setitem__("fwd", seen["fwd"] + o.shape[0]))
    model.register_full_backward_hook(
        lambda m, gi, go: seen.__setitem__("bwd", seen["bwd"] + go[0].shape[0]))
    return seen


def synthetic_mnist(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is the brightest of 10 horizontal bands: learnable in one epoch."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    for i, c in enumerate(y.tolist()):
        x[i, 0, 2 + 2 * c : 4 + 2 * c] = 0.9
    return x, y


def fake_mnist(monkeypatch, n_train: int = 12) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The mnist entry of the registry reading a small synthetic training split (and 8 test
    images), so that training and ``--split train`` run without the dataset files."""
    from dataclasses import replace

    from strattack.data.registry import DATASETS

    data = {"train": synthetic_mnist(n_train, 5), "test": synthetic_mnist(8, 6)}
    monkeypatch.setitem(DATASETS, "mnist", replace(
        DATASETS["mnist"], loader=lambda root, split="test", download=False: data[split]))
    return data


def record_fit_calls(monkeypatch) -> list[tuple[dict, nn.Module]]:
    """Spy on ``strattack.models.training.fit``: the list fills with (its arguments by name,
    defaults included; the model it returned), one per call, e.g. teacher then student."""
    import inspect

    from strattack.models import training

    calls: list[tuple[dict, nn.Module]] = []
    real_fit = training.fit

    def spy(*args, **kwargs):
        bound = inspect.signature(real_fit).bind(*args, **kwargs)
        bound.apply_defaults()
        model, result = real_fit(*args, **kwargs)
        calls.append((dict(bound.arguments), model))
        return model, result

    monkeypatch.setattr(training, "fit", spy)
    return calls


def bundled_run(out, targets: str = "next", indices: str = "0,1,2", settings: tuple = ()):
    """A finished `strattack eval --bundled` run into ``out`` (returned): MNIST ``indices`` x
    ``targets``, FGM and 3-step I-FGSM (and ``settings``, e.g. ``("fgm.epsilon=1e-4",)``), in
    well under a second."""
    from strattack.evaluation.config import EvalConfig
    from strattack.evaluation.evaluate import evaluate

    options = {"dataset": "mnist", "bundled": True, "indices": indices, "targets": targets,
               "attacks": ("fgm", "ifgsm"), "settings": ("ifgsm.steps=3", *settings),
               "progress": False, "out": out}
    evaluate(EvalConfig.from_sources(None, options), log=lambda _: None, warn=lambda _: None)
    return out
