"""Checks shared by every attack: clear errors before any optimisation work starts.

Inputs, labels and the model's logits (from the one validation pass), and the attacks'
parameters: their types from the annotations (:func:`check_value_type`), their ranges with the
small checks below (each attack configuration applies them, :mod:`strattack.attacks.config`).
"""
from __future__ import annotations

import math
import numbers
import types
import typing
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

#: The positional arguments every attack takes; checked by :func:`validate_attack_call`.
POSITIONAL = ("model", "inputs", "labels")


def check_model(model: object) -> None:
    if not callable(model):
        raise TypeError("model must be callable (an nn.Module or a function) mapping inputs to logits")


def check_inputs(inputs: Tensor, images: bool = False) -> None:
    """A float batch (N, ...) in [0, 1] without NaN; (N, C, H, W) when ``images`` (attacks with
    spatial groups need them; the others take any per-example shape, as adv_lib's do)."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.is_meta:
        raise ValueError("inputs are on the meta device (shapes without data); attack real "
                         "images on the cpu or a GPU")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor in [0, 1], got dtype {inputs.dtype}")
    if images and inputs.ndim != 4:
        raise ValueError(f"inputs must be images of shape (N, C, H, W), got {tuple(inputs.shape)}")
    if inputs.ndim < 2:
        raise ValueError(f"inputs must be a batch of shape (N, ...) with a dimension per example "
                         f"beyond N, got {tuple(inputs.shape)}; add one, e.g. inputs[:, None]")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch (N = 0)")
    if torch.isnan(inputs).any():
        raise ValueError("inputs contain NaN")
    lo, hi = inputs.min().item(), inputs.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(f"inputs must lie in [0, 1] (found values in [{lo:.4g}, {hi:.4g}]); "
                         "put the normalisation inside the model")


_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_labels(labels: Tensor, n: int, name: str = "labels") -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"{name} must be an integer tensor of class indices, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match inputs, got {tuple(labels.shape)}")


def check_logits(model: Callable[[Tensor], Tensor], inputs: Tensor) -> Tensor:
    """One forward pass on the clean inputs; checks the model returns finite (N, K) logits."""
    with torch.no_grad():
        try:
            logits = model(inputs)
        except (RuntimeError, TypeError, ValueError) as err:   # wrong channels, size, dtype...
            raise ValueError(f"the model failed on the inputs (shape {tuple(inputs.shape)}, dtype "
                             f"{inputs.dtype}, device {inputs.device}): {err}. Give images of "
                             "the shape, channels and device the model expects") from err
    if isinstance(logits, (tuple, list)):
        raise TypeError(f"the model returns a {type(logits).__name__} of "
                        f"{len(logits)}, but attacks need the logits tensor alone: wrap it, e.g. "
                        "`lambda x: model(x)[0]` (or an nn.Module whose forward returns the "
                        "logits), where item 0 holds the logits")
    if not isinstance(logits, Tensor):
        raise TypeError(f"the model must return a logits tensor of shape (N, K), "
                        f"got {type(logits).__name__}")
    n = inputs.shape[0]
    if logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] < 2:
        raise ValueError(f"the model must return logits of shape (N, K) = ({n}, K>=2), "
                         f"got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"the model must return floating-point logits, got {logits.dtype}")
    check_finite_logits(logits)
    check_not_probabilities(logits)
    return logits


def check_finite_logits(logits: Tensor) -> None:
    """NaN or Inf logits make every margin NaN: the attack would spend its whole budget and
    report a failure."""
    bad = (~torch.isfinite(logits)).any(dim=1).nonzero().squeeze(1)
    if bad.numel():
        raise ValueError(f"the model returned NaN or Inf logits on the clean inputs for images "
                         f"{_first(bad)}; check the model and its weights")


def check_not_probabilities(logits: Tensor, atol: float = 1e-3) -> None:
    """Rows in [0, 1] that sum to 1 are softmax outputs. The margin loss (3) needs logits: on
    probabilities its gradient vanishes wherever the softmax saturates, and the attacks fail
    without a word (0 of 2 in a test of the library)."""
    sums = logits.double().sum(dim=1)
    if ((logits >= 0).all() and (logits <= 1).all()
            and ((sums - 1).abs() <= atol).all()):
        raise ValueError("the model returns probabilities (every row is in [0, 1] and sums to "
                         "1), but attacks need logits: remove the final softmax from the model")


def _first(idx: Tensor, show: int = 10) -> str:
    return f"{idx.tolist()[:show]}{'...' if idx.numel() > show else ''}"


def validate_attack_call(model: Callable[[Tensor], Tensor], inputs: Tensor, labels: Tensor,
                         targeted: bool, true_labels: Tensor | None = None) -> Tensor:
    """Checks the labels and the clean logits, and returns those logits (N, K). The model and
    the inputs are checked before (:func:`check_model`, :func:`check_inputs`, once per call)."""
    n = inputs.shape[0]
    check_labels(labels, n)
    if labels.device != inputs.device:
        raise ValueError(f"labels are on {labels.device} but inputs on {inputs.device}")
    if true_labels is not None:
        check_labels(true_labels, n, "true_labels")
    logits = check_logits(model, inputs)
    k = logits.shape[1]
    for name, lab in (("labels", labels), ("true_labels", true_labels)):
        if lab is not None and (lab.min().item() < 0 or lab.max().item() >= k):
            raise ValueError(f"{name} must be class indices in [0, {k - 1}] "
                             f"(the model has {k} classes), got values in "
                             f"[{lab.min().item()}, {lab.max().item()}]")
    if targeted and true_labels is not None:
        same = (labels == true_labels.to(labels.device)).nonzero().squeeze(1)
        if same.numel():
            raise ValueError(f"targeted attack: the target equals the true label for images "
                             f"{_first(same)}")
    return logits


# --- parameter ranges ------------------------------------------------------------------------

def check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_seeds(seeds: Tensor | None, n: int) -> None:
    """None, or one seed per example: an integer tensor of shape (n,)."""
    if seeds is None:
        return
    if not isinstance(seeds, Tensor) or seeds.dtype not in _INTEGER_DTYPES:
        kind = seeds.dtype if isinstance(seeds, Tensor) else type(seeds).__name__
        raise ValueError(f"seeds must be an integer tensor (one seed per example), got {kind}")
    if seeds.ndim != 1 or seeds.shape[0] != n:
        raise ValueError(f"seeds must have shape ({n},), one seed per example of inputs, got "
                         f"{tuple(seeds.shape)}")


# --- parameter types, from the attack's annotations -------------------------------------------

def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    return {bool: "True or False", int: "an integer", float: "a finite number",
            Tensor: "a torch.Tensor"}.get(hint, getattr(hint, "__name__", str(hint)))


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits ``hint``; None when the hint is not one we check."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return any(value == c and type(value) is type(c) for c in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        verdicts = [_matches(value, h) for h in typing.get_args(hint)]
        return None if None in verdicts and not any(verdicts) else any(v for v in verdicts)
    if hint is type(None):
        return value is None
    if hint is bool:                         # a string such as "no" must not count as True
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(value))
    if hint is Tensor:
        return isinstance(value, Tensor)
    return None


def check_value_type(name: str, value: Any, hint: Any) -> Any:
    """``value`` as a plain Python value (np.int64(3) -> 3) if it fits the annotation ``hint``,
    else a ValueError naming ``name``, the expected type and the value."""
    if _matches(value, hint) is False:
        raise ValueError(f"{name} must be {_expected(hint)}, got {value!r} "
                         f"({type(value).__name__})")
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _expected(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return f"{_describe(args[0])} or None"
    return _describe(hint)
