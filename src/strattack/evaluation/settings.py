"""Every keyword an attack runs with, defaults and presets expanded: what a store records next
to the attack's key, so that a resume or a merge after the library's defaults changed is
refused instead of mixing two configurations under one key (:meth:`ResultStore.add_attack`)."""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping

from ..attacks.presets import PRESETS

__all__ = ["resolved_settings"]

#: Keywords added to the attacks after stores began to record settings, each with the value that
#: is the behaviour from before it existed. At that value a keyword is left out of the record, so
#: a store written before it existed still resumes and merges (its record is the same); any other
#: value is recorded, and differs.
LATER_KEYWORDS: dict[str, Any] = {"scale_eta": False, "z_candidate": False, "adaptive_rho": False,
                                  "compile_step": False}


def resolved_settings(attack: Callable[..., Any], params: Mapping[str, Any],
                      set_elsewhere: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The attack's keyword defaults, overridden by its preset's values (``preset=NAME``), then
    by ``params``; keywords in ``set_elsewhere`` (supplied per call by the evaluation) and
    required ones without a value are left out. Values are JSON-safe (non-finite floats as
    strings)."""
    values = {name: p.default for name, p in inspect.signature(attack).parameters.items()
              if p.kind is p.KEYWORD_ONLY and p.default is not p.empty
              and name not in set_elsewhere}
    preset = params.get("preset")
    if preset is not None:
        values.update(PRESETS[preset])
    values.update(params)
    return {name: _json_safe(value) for name, value in sorted(values.items())
            if not (name in LATER_KEYWORDS and value == LATER_KEYWORDS[name])}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value
