"""strattack: structured adversarial attacks (Xu et al., ICLR 2019) in plain PyTorch.

Every attack shares one calling convention::

    result = attack(model, inputs, labels, *, targeted=False, ...)

``model`` maps (N, C, H, W) inputs in [0, 1] to logits (N, K); ``labels`` are the targets when
``targeted`` else the true classes; the result is an :class:`AttackResult`.

The names below are imported on first use (PEP 562), so that importing the package itself
does not import torch: the ``strattack`` command catches an interrupt during its start-up
(:mod:`strattack.__main__`) only if the package's own import is quick and safe.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attacks import (admm_attack, cw_l2, cw_linf, ead, fgm, gse, ifgsm, str_attack,
                          str_attack_linf)
    from .result import AttackResult

__all__ = ["AttackResult", "admm_attack", "str_attack", "str_attack_linf",
           "cw_l2", "cw_linf", "ead", "fgm", "ifgsm", "gse"]
#: The release (semantic versioning); pyproject.toml reads it from here.
__version__ = "1.0.0"


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module; else a submodule (``strattack.attacks``)."""
    if name in __all__:
        module = importlib.import_module(".result" if name == "AttackResult" else ".attacks",
                                         __name__)
        value = getattr(module, name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
