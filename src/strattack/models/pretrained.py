"""Load the shipped pretrained MNIST / CIFAR-10 classifiers."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .nets import CIFAR10Net, MNISTNet, Normalized

__all__ = ["load_pretrained", "build_model", "NORMALIZATION", "PRETRAINED_NAMES", "weights_path"]

PRETRAINED_NAMES: tuple[str, ...] = ("mnist", "cifar10")
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: Per-channel normalisation constants (training-set statistics).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def build_model(dataset: str) -> Normalized:
    """Return the untrained ``Normalized`` network for ``dataset``."""
    if dataset == "mnist":
        net: nn.Module = MNISTNet()
    elif dataset == "cifar10":
        net = CIFAR10Net()
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'mnist' or 'cifar10'")
    mean, std = NORMALIZATION[dataset]
    return Normalized(net, mean, std)


def weights_path(name: str) -> Path:
    """Path of the shipped ``.safetensors`` file for ``name``."""
    if name not in PRETRAINED_NAMES:
        raise ValueError(f"unknown pretrained model {name!r}; valid names: {list(PRETRAINED_NAMES)}")
    return _WEIGHTS_DIR / f"{name}.safetensors"


def load_pretrained(name: str, device: str | torch.device | None = None) -> nn.Module:
    """Return the pretrained ``Normalized`` classifier ``name`` (``"mnist"`` or ``"cifar10"``).

    The model takes images in ``[0, 1]`` (NCHW) and returns logits. It is in eval
    mode (dropout off, BatchNorm using running statistics) with parameters frozen,
    since attacks only need gradients with respect to the input.
    """
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} not found; recreate them with "
            f"`python -m strattack.models.training --dataset {name} --data-root DATA_ROOT "
            f"--out {path}`"
        )
    model = build_model(name)
    model.load_state_dict(load_file(str(path)))
    model.eval()
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
