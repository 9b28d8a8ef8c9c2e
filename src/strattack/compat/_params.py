"""What the adapters share: the attack's keywords checked when the adapter is built, and the
ImportError that names the extra to install."""
from __future__ import annotations

import inspect
from typing import Any

from ..attacks.call import Attack
from ..validation import POSITIONAL

__all__ = ["attack_parameters", "missing_extra"]

#: Keywords the adapters set from the other library's own conventions (its targeted mode or
#: criterion), so a user must not give them to the constructor.
SET_BY_ADAPTER = frozenset({*POSITIONAL, "targeted", "true_labels"})


def attack_parameters(attack: Attack[Any], params: dict[str, Any], owner: str) -> dict[str, Any]:
    """``params`` for ``attack``, checked now by building its configuration (an unknown keyword
    is a TypeError, a value of the wrong type or range a ValueError), so that a mistake shows
    when the adapter is built rather than at its first batch."""
    reserved = sorted(SET_BY_ADAPTER & params.keys())
    if reserved:
        raise TypeError(f"{owner}: {reserved} are set by the adapter from the library's own "
                        "attack mode or criterion; do not pass them")
    try:
        inspect.signature(attack).bind_partial(None, None, None, **params)
    except TypeError as err:
        raise TypeError(f"{owner}: {err}") from None
    config = attack.configure(display=owner, **params)
    return {name: params[name] if name == "preset" else getattr(config, name) for name in params}


def missing_extra(package: str, extra: str, hint: str = "") -> ImportError:
    """The error for an adapter module whose library is not installed."""
    return ImportError(f"strattack.compat.{package} needs the {package} package: "
                       f"pip install \"strattack[{extra}]\"{hint}")
