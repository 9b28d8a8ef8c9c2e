"""Resolve the model an evaluation attacks: a bundled name or the user's own code + weights."""
from __future__ import annotations

import importlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.registry import NAMED_DATASETS
from .pretrained import (architecture_of, build_model, load_pretrained, load_state,
                         weights_metadata)

__all__ = ["load_model", "read_state_dict"]

#: What a user's weights file may be, for error messages.
EXPECTED_WEIGHTS = ("expected a .safetensors file or a PyTorch state dict saved with "
                    "torch.save(model.state_dict(), path) "
                    "(read with torch.load(weights_only=True))")


def load_model(spec: str, weights: str | Path | None = None,
               device: str | torch.device | None = None) -> nn.Module:
    """``spec`` is a bundled name for :func:`load_pretrained` (e.g. ``"mnist"``) or
    ``"package.module:callable"`` whose call returns an ``nn.Module`` taking [0, 1] inputs
    (put any normalisation inside it). ``weights``: for a user model, or for the architecture
    of a named dataset (``"mnist"`` + weights from ``strattack train``): a ``.safetensors`` file
    or a PyTorch state dict, loaded with ``weights_only=True`` (never an arbitrary pickle); for
    an architecture, the network is the one the safetensors metadata names (``arch``, written by
    ``strattack train --arch``; the dataset's CNN without it).
    The model is returned in eval mode with parameters frozen."""
    if ":" not in spec:
        if weights is None:
            return load_pretrained(spec, device=device)
        if spec not in NAMED_DATASETS:
            raise ValueError(f"--weights applies to a user model (module:callable) or to an "
                             f"architecture ({', '.join(NAMED_DATASETS)}); bundled model "
                             f"{spec!r} loads its own weights")
        # the architecture of a named dataset with weights trained by `strattack train`
        return _dataset_model_with_weights(spec, Path(weights)).to(device or "cpu")
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
        load_state(model, read_state_dict(weights), weights, spec)
    model.eval()
    model.requires_grad_(False)
    return model.to(device) if device is not None else model


def _dataset_model_with_weights(dataset: str, weights: Path) -> nn.Module:
    """The ``dataset`` network in the architecture ``weights`` records, holding those weights:
    the file is read (and its metadata checked) before the network is built."""
    state = read_state_dict(weights)
    metadata = weights_metadata(weights) if _file_kind(weights) == "safetensors" else {}
    arch = architecture_of(metadata, dataset, weights)
    return load_state(build_model(dataset, arch), state, weights, f"{dataset} (arch {arch})")


def _file_kind(path: Path) -> str:
    """What the first bytes of ``path`` say it is: ``safetensors`` (8-byte header length, then
    JSON), ``torch`` (zip archive of torch.save), ``pickle`` (legacy torch.save or a bare
    pickle), ``empty``, ``text`` or ``unknown``."""
    with path.open("rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "text" if text.isprintable() or all(c.isprintable() or c.isspace() for c in text) \
        else "unknown"


def read_state_dict(weights: str | Path) -> dict[str, Tensor]:
    """The state dict in ``weights``: a safetensors file or a state dict saved with
    ``torch.save``, told apart by content (not by suffix). Anything else (a whole pickled model,
    arbitrary pickles, text, a truncated file) is a ValueError naming the file, what it seems to
    be and what is expected. Pickles are only ever read with ``weights_only=True``: they can run
    code."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    kind = _file_kind(path)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"weights file {path} looks like a safetensors file but cannot be "
                             f"read ({err}): is it truncated or corrupt? Copy or save it "
                             f"again; {EXPECTED_WEIGHTS}") from err
    if kind in ("torch", "pickle"):
        try:
            # A file object: given a path ending in .safetensors, torch.load would read it as
            # safetensors, whatever it holds.
            with path.open("rb") as f:
                state = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
            what = f" (it refers to {found.group(1)})" if found else ""
            raise ValueError(
                f"weights file {path} is a pickle that holds more than tensors{what}, e.g. a "
                "whole model saved with torch.save(model); it is not loaded because unpickling "
                "it could run arbitrary code. Save the weights instead: "
                "torch.save(model.state_dict(), path) or "
                "safetensors.torch.save_file(model.state_dict(), path)") from err
        except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"weights file {path} looks like a PyTorch checkpoint but cannot be "
                             f"read ({type(err).__name__}: {err}): is it truncated or corrupt? "
                             f"{EXPECTED_WEIGHTS}") from err
        if not (isinstance(state, Mapping)
                and all(isinstance(v, Tensor) for v in state.values())):
            held = type(state).__name__
            if isinstance(state, Mapping):
                held += " with non-tensor entries " + str(
                    [k for k, v in state.items() if not isinstance(v, Tensor)][:5])
            raise ValueError(f"weights file {path} holds a {held}, not a state dict (parameter "
                             f"names -> tensors); {EXPECTED_WEIGHTS}")
        return dict(state)
    if kind == "empty":
        raise ValueError(f"weights file {path} is empty; {EXPECTED_WEIGHTS}")
    if kind == "text":
        raise ValueError(f"weights file {path} is a text file, not weights; {EXPECTED_WEIGHTS}")
    raise ValueError(f"weights file {path} is neither safetensors nor a PyTorch checkpoint "
                     f"(its first bytes are {path.read_bytes()[:8].hex()}); {EXPECTED_WEIGHTS}")
