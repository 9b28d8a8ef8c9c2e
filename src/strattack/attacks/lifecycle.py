"""What every public attack does around its own loop, once: parameter checks, the model's mode,
and the precision the work is done in.

:func:`public_attack` wraps each attack function so that

* every keyword parameter is checked against the function's annotations before any model pass
  (``targeted="no"``, ``max_iterations=20.5`` or ``confidence=nan`` are clear errors, not a
  traceback inside the search or a silently wrong run);
* a model in training mode is run in eval mode for the attack and handed back exactly as it came
  (dropout would make the final check disagree with eval mode, and BatchNorm would update the
  user's running statistics), with a warning;
* half-precision inputs (float16, bfloat16) are attacked in float32 and the result is returned in
  the inputs' dtype, re-checked there (see :func:`_back_to_input_dtype`); a model whose
  parameters have another dtype than the inputs is called in its own dtype.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import types
import typing
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ..result import AttackResult, project_exact
from ..solver.losses import is_adversarial, logit_margin
from ..validation import check_inputs

F = TypeVar("F", bound=Callable[..., AttackResult])

HALF_DTYPES = (torch.float16, torch.bfloat16)
POSITIONAL = ("model", "inputs", "labels")


# --- parameter checks from the annotations ---------------------------------------------------

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


def check_parameters(fn: Callable[..., Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """ValueError naming the first keyword argument that does not fit ``fn``'s annotation;
    returns the arguments with numpy scalars made plain Python numbers (np.int64(3) -> 3)."""
    hints = typing.get_type_hints(fn)
    plain = dict(arguments)
    for name, value in arguments.items():
        if name in POSITIONAL or name not in hints:
            continue
        if _matches(value, hints[name]) is False:
            raise ValueError(f"{fn.__name__}: {name} must be {_expected(hints[name])}, "
                             f"got {value!r} ({type(value).__name__})")
        plain[name] = _plain(value)
    return plain


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


def _keyword_arguments(fn: Callable[..., Any], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a call (a TypeError for an unknown name or a missing one, as
    Python gives), without the forwarded ``**kwargs``: the attack they go to checks those."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    return {k: v for k, v in bound.arguments.items()
            if inspect.signature(fn).parameters[k].kind != inspect.Parameter.VAR_KEYWORD}


# --- the model's mode ----------------------------------------------------------------------

# Layers whose output depends on the mode; a custom module may read ``self.training`` too, so
# every module is switched, but only these make the switch worth a warning.
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Run ``model`` in eval mode and restore every submodule's own training flag afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    if any(training and isinstance(m, MODE_DEPENDENT) for m, training in flags):
        warnings.warn("the model is in training mode: the attack runs it in eval mode (dropout "
                      "off, normalisation statistics frozen) and gives it back in training "
                      "mode; call model.eval() before attacking to silence this warning",
                      UserWarning, stacklevel=4)
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


# --- precision -----------------------------------------------------------------------------

def _parameter_dtype(model: Any) -> torch.dtype | None:
    """The floating dtype of a module's first floating parameter or buffer (None: unknown)."""
    if isinstance(model, nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                return t.dtype
    return None


class _InDtype:
    """Calls a model on inputs cast to its own dtype and returns logits in the working dtype."""

    def __init__(self, model: Callable[[Tensor], Tensor], model_dtype: torch.dtype,
                 work_dtype: torch.dtype) -> None:
        self.model, self.model_dtype, self.work_dtype = model, model_dtype, work_dtype

    def __call__(self, x: Tensor) -> Tensor:
        out = self.model(x.to(self.model_dtype))
        if isinstance(out, Tensor) and out.is_floating_point():
            return out.to(self.work_dtype)
        return out


def working_dtype(inputs: Tensor) -> torch.dtype:
    """Half precision has too few digits for the solver (an ADMM step, a quantile position over
    65,520 entries): work in float32, return the inputs' dtype."""
    return torch.float32 if inputs.dtype in HALF_DTYPES else inputs.dtype


def _adapted(model: Any, work_dtype: torch.dtype) -> Any:
    model_dtype = _parameter_dtype(model)
    if model_dtype is None or model_dtype == work_dtype:
        return model
    return _InDtype(model, model_dtype, work_dtype)


def _back_to_input_dtype(result: AttackResult, inputs: Tensor, model: Any, labels: Tensor,
                         arguments: dict[str, Any]) -> AttackResult:
    """The float32 result in the inputs' half dtype: rounded, put back on the box and the budget
    exactly in that dtype, and re-checked by one more forward pass on what is returned (rounding
    can move an example across the decision boundary; ``success`` describes the returned
    tensor)."""
    adv = result.adv.to(inputs.dtype)
    epsilon = arguments.get("epsilon")
    if arguments.get("norm", "linf") == "l2" and epsilon is not None:
        from ._baseline_common import project_l2_exact
        eps = torch.full((adv.shape[0],), float(epsilon), dtype=adv.dtype, device=adv.device)
        adv = project_l2_exact(inputs, adv, eps)
    else:
        adv = project_exact(inputs, adv, None if epsilon is None else _in_dtype(epsilon, adv))
    with torch.no_grad():
        margin = logit_margin(model(adv.to(result.adv.dtype)), labels.long(),
                              bool(arguments.get("targeted", False)))
    result.success = is_adversarial(margin, float(arguments.get("confidence", 0.0)))
    result.adv, result.inputs = adv, inputs
    if result.unrefined is not None:
        result.unrefined = project_exact(inputs, result.unrefined.to(inputs.dtype), None)
    if result.forward_passes is not None:
        result.forward_passes = result.forward_passes + 1
        result.stages.setdefault("final check (input dtype)", [0, 0])[0] += adv.shape[0]
    return result


def _in_dtype(epsilon: float, like: Tensor) -> float:
    """The largest number of like's dtype that is <= epsilon."""
    e = torch.tensor(epsilon, dtype=torch.float64).to(like.dtype)
    if e.double().item() > epsilon:
        e = torch.nextafter(e, torch.zeros_like(e))
    return e.item()


# --- the decorator -------------------------------------------------------------------------

def public_attack(fn: F) -> F:
    """Checks, model mode and precision around an attack ``fn(model, inputs, labels, **kw)``."""

    @functools.wraps(fn)
    def attack(*args: Any, **kwargs: Any) -> AttackResult:
        arguments = check_parameters(fn, _keyword_arguments(fn, args, kwargs))
        model, inputs, labels = (arguments.get(k) for k in POSITIONAL)
        check_inputs(inputs)
        work = working_dtype(inputs)
        with eval_mode(model):
            adapted = _adapted(model, work)
            rest = {k: v for k, v in arguments.items() if k not in POSITIONAL}
            extra = {k: v for k, v in kwargs.items() if k not in arguments}
            result = fn(adapted, inputs.to(work), labels, **rest, **extra)
            if work != inputs.dtype:
                result = _back_to_input_dtype(result, inputs, adapted, labels,
                                              {**rest, **extra})
        return result

    return typing.cast(F, attack)
