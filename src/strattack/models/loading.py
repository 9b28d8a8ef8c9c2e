"""Resolve the model an evaluation attacks: a bundled name or the user's own code + weights."""
from __future__ import annotations

import importlib
import pickle
import re
import sysconfig
import traceback
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.registry import NAMED_DATASETS
from ..errors import ConfigError, ModelError
from .pretrained import (architecture_of, build_model, load_pretrained, load_state,
                         weights_metadata)

__all__ = ["check_model_spec", "is_user_model", "load_model", "read_state_dict"]

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
    if not is_user_model(spec):
        if weights is None:
            return load_pretrained(spec, device=device)
        if spec not in NAMED_DATASETS:
            raise ValueError(f"--weights applies to a user model (module:callable) or to an "
                             f"architecture ({', '.join(NAMED_DATASETS)}); bundled model "
                             f"{spec!r} loads its own weights")
        # the architecture of a named dataset with weights trained by `strattack train`
        return _dataset_model_with_weights(spec, Path(weights)).to(device or "cpu")
    module_name, attr = check_model_spec(spec)
    module = _import_user_module(module_name, spec)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as err:        # the user's code: say where it failed, not a traceback
        raise ModelError(f"model {spec}: {attr}() failed{_user_frame(err)}: "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_state(model, read_state_dict(weights), weights, spec)
    model.eval()
    model.requires_grad_(False)
    return model.to(device) if device is not None else model


#: A user model: a dotted module name, a colon, a callable in it.
SPEC_EXAMPLE = "e.g. mypkg.net:build with the folder holding mypkg on PYTHONPATH"


def is_user_model(spec: str) -> bool:
    """Whether ``spec`` names a user model (``package.module:callable``) rather than a bundled
    one: only a user model takes ``--weights`` or ``--no-weights`` as eval and transfer mean
    them."""
    return ":" in spec


def check_model_spec(spec: str) -> tuple[str, str]:
    """The module and callable of a user model ``spec`` (``"package.module:callable"``); a
    ConfigError for a file path or anything else that is not a dotted, importable module name
    (importlib would fail with a TypeError or "No module named 'net.py'")."""
    module_name, _, attr = spec.partition(":")
    path = Path(module_name)
    if "/" in module_name or "\\" in module_name or path.suffix == ".py":
        folder = path.parent if str(path.parent) else Path(".")
        raise ConfigError(f"model {spec!r}: {module_name!r} is a file path, but a model is a "
                          f"dotted, importable module and a callable ({SPEC_EXAMPLE}); to use "
                          f"this file, put its folder on PYTHONPATH and name the module: "
                          f"PYTHONPATH={folder} strattack ... --model {path.stem}:{attr}")
    if not all(part.isidentifier() for part in module_name.split(".")) or not attr:
        raise ConfigError(f"model {spec!r} is not a dotted module name and a callable "
                          f"({SPEC_EXAMPLE})")
    return module_name, attr


def _import_user_module(module_name: str, spec: str) -> object:
    """The module of a user model; a module that is not there is a ConfigError saying how to
    make it importable, one that fails while it is imported (a syntax error, an exception at
    its top level) a ModelError naming the file and line."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not _is_prefix(err.name, module_name):
            raise ModelError(f"model {spec}: importing {module_name} failed{_user_frame(err)}: "
                             f"{err}") from err       # a module the user's code imports
        raise ConfigError(f"model {spec!r}: {err}; a model is a dotted, importable "
                          f"module ({SPEC_EXAMPLE}, or the package installed)") from err
    except SyntaxError as err:
        raise ModelError(f"model {spec}: {err.filename}, line {err.lineno}: SyntaxError: "
                         f"{err.msg}") from err
    except Exception as err:        # the user's code: say where it failed, not a traceback
        raise ModelError(f"model {spec}: importing {module_name} failed{_user_frame(err)}: "
                         f"{type(err).__name__}: {err}") from err


def _is_prefix(name: str, dotted: str) -> bool:
    return dotted == name or dotted.startswith(name + ".")


#: Where code that is not the user's lives: the standard library, installed packages, strattack.
_LIBRARY_FOLDERS = ({Path(sysconfig.get_paths()[key]).resolve()
                     for key in ("stdlib", "platstdlib", "purelib", "platlib")}
                    | {Path(__file__).resolve().parents[1]})


def _user_frame(err: BaseException) -> str:
    """" at FILE, line N (in FUNCTION)" for the innermost frame of ``err``'s traceback in the
    user's own code (not the standard library, an installed package or strattack); "" if none."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename.startswith("<"):         # <frozen importlib._bootstrap>, <string>
            continue
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(folder) for folder in _LIBRARY_FOLDERS):
            return f" at {frame.filename}, line {frame.lineno} (in {frame.name})"
    return ""


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
