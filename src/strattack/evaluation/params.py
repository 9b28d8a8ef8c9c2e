"""Type checks of attack parameters against the attack function's annotations.

A wrong value (``"abc"`` or ``20.5`` for an int, ``true`` for a float, NaN) is refused when the
attack is configured, before any model or data loads and before a store records the
configuration, rather than as a traceback in the middle of a run.
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

__all__ = ["check_parameters", "parameter_types"]


def parameter_types(fn: Callable[..., Any], forward_to: Callable[..., Any] | None = None
                    ) -> dict[str, Any]:
    """Keyword parameter name -> annotation. A ``**kwargs`` is taken to be passed on to
    ``forward_to`` (StrAttack's go to :func:`~strattack.attacks.admm_attack`), whose keywords
    are included; ``fn``'s own annotations win."""
    params = inspect.signature(fn).parameters
    hints = typing.get_type_hints(fn)
    types_: dict[str, Any] = {}
    if forward_to is not None and any(p.kind == p.VAR_KEYWORD for p in params.values()):
        types_.update(parameter_types(forward_to))
    types_.update({n: hints.get(n, Any) for n, p in params.items() if p.kind == p.KEYWORD_ONLY})
    return types_


def required_parameters(fn: Callable[..., Any]) -> set[str]:
    """Keyword-only parameters without a default (e.g. ``epsilon`` of ``str_attack_linf``)."""
    return {n for n, p in inspect.signature(fn).parameters.items()
            if p.kind == p.KEYWORD_ONLY and p.default is p.empty}


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(annotation))
    if origin is Literal:
        # type too: True == 1 must not pass for a Literal[1], nor 1 for a Literal[True]
        return any(value == c and type(value) is type(c) for c in typing.get_args(annotation))
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        # NaN / inf: no attack setting means them, and NaN breaks store keys (NaN != NaN).
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True             # an annotation this check does not understand: let the attack judge


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(annotation))
    if annotation is type(None) or annotation is None:
        return "None"
    names = {bool: "true or false", int: "an integer",
             float: "a finite number"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_parameters(display: str, fn: Callable[..., Any], params: Mapping[str, Any],
                     forward_to: Callable[..., Any] | None = None,
                     set_elsewhere: frozenset[str] = frozenset()) -> None:
    """ValueError naming the first parameter of ``params`` whose value does not fit ``fn``'s
    annotation, or a required keyword of ``fn`` that is missing (``set_elsewhere``: keywords
    the caller passes itself)."""
    expected = parameter_types(fn, forward_to)
    for name, value in params.items():
        if name in expected and not _matches(value, expected[name]):
            raise ValueError(f"{display}: parameter {name} must be {_describe(expected[name])}, "
                             f"got {value!r} ({type(value).__name__})")
    missing = sorted(required_parameters(fn) - set(params) - set_elsewhere)
    if missing:
        raise ValueError(f"{display}: {', '.join(missing)} must be given, e.g. "
                         f"--set {display}.{missing[0]}=VALUE or {missing[0]} = ... in its "
                         "[[attack]] table")
