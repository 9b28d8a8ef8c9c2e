"""Resolve the model an evaluation attacks: a bundled name or the user's own code + weights."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from .pretrained import load_pretrained

__all__ = ["load_model"]


def load_model(spec: str, weights: str | Path | None = None,
               device: str | torch.device | None = None) -> nn.Module:
    """``spec`` is a bundled name for :func:`load_pretrained` (e.g. ``"mnist"``) or
    ``"package.module:callable"`` whose call returns an ``nn.Module`` taking [0, 1] inputs
    (put any normalisation inside it). ``weights`` (user models only): a ``.safetensors`` file
    or a PyTorch state dict, loaded with ``weights_only=True`` (never an arbitrary pickle).
    The model is returned in eval mode with parameters frozen."""
    if ":" not in spec:
        if weights is not None:
            raise ValueError("--weights applies to a user model (module:callable); bundled "
                             f"model {spec!r} loads its own weights")
        return load_pretrained(spec, device=device)
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name!r} for model {spec!r}: {err} "
                         "(is it on PYTHONPATH / installed?)") from err
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} not found")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    model.eval()
    model.requires_grad_(False)
    return model.to(device) if device is not None else model
