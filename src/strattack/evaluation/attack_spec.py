"""The attacks an evaluation can run, by name, and :class:`AttackSpec`: one configured attack.

A spec's configuration is built (and validated, once) when the spec is made, before any model
or data loads; the runner calls ``spec.attack.run(model, x, y, spec.config, ...)`` and the store
records ``spec.settings``, the configuration's fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from .. import attacks
from ..attacks.call import Attack
from ..attacks.config import AttackConfig
from .examples import example_seed

__all__ = ["ATTACKS", "AttackSpec"]

#: Attacks an evaluation can run, by name. Each has the library's calling convention.
ATTACKS: dict[str, Attack[Any]] = {
    "str_attack": attacks.str_attack,
    "str_attack_linf": attacks.str_attack_linf,
    "admm": attacks.admm_attack,
    "cw_l2": attacks.cw_l2,
    "cw_linf": attacks.cw_linf,
    "ead": attacks.ead,
    "fgm": attacks.fgm,
    "ifgsm": attacks.ifgsm,
    "gse": attacks.gse,
}

#: Arguments the runner passes to the attacks itself, per batch.
SET_BY_EVALUATION = frozenset({"targeted", "true_labels", "seeds"})


@dataclass(frozen=True)
class AttackSpec:
    """An attack by registry name plus its keyword parameters; ``label`` names it in reports
    (default: the name). Two specs with equal name and params are the same attack in a store."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None
    config: AttackConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise ValueError(f"unknown attack {self.name!r}; choose from {sorted(ATTACKS)}")
        object.__setattr__(self, "config", configure(self.attack, self.params, self.display))

    @property
    def attack(self) -> Attack[Any]:
        return ATTACKS[self.name]

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def settings(self) -> dict[str, Any]:
        """The configuration as the store records it (with the preset's name, for the attacks
        that have presets): a resume after the library's defaults changed is then refused."""
        preset = {"preset": self.params.get("preset")} if self.attack.presets else {}
        return dict(sorted({**self.config.record(), **preset}.items()))

    def seeds(self, batch: Sequence[tuple[int, int]], seed: int) -> dict[str, Tensor]:
        """``{"seeds": one seed per example}`` for an attack that takes them (its random draws
        then follow the example, not the batch), else nothing."""
        if not self.attack.takes_seeds:
            return {}
        return {"seeds": torch.tensor([example_seed(seed, i, t) for i, t in batch],
                                      dtype=torch.int64)}


def configure(attack: Attack[Any], params: Mapping[str, Any], display: str) -> AttackConfig:
    """``attack``'s configuration with ``params`` (and its ``preset``), or a ValueError naming
    ``display`` for a reserved, unknown, missing or invalid parameter."""
    changes = dict(params)
    reserved = sorted(SET_BY_EVALUATION & changes.keys())
    if reserved:
        raise ValueError(f"{reserved} are set by the evaluation, not as parameters")
    accepted = set(attack.signature.parameters) - {"model", "inputs", "labels"}
    unknown = sorted(changes.keys() - accepted)
    if unknown:
        raise ValueError(f"{display}: unknown parameters {unknown} for {attack.name}; it accepts "
                         f"{sorted(accepted - SET_BY_EVALUATION)}")
    missing = sorted(attack.required - changes.keys())
    if missing:
        raise ValueError(f"{display}: {', '.join(missing)} must be given, e.g. --set "
                         f"{display}.{missing[0]}=VALUE or {missing[0]} = ... in its [[attack]] "
                         "table")
    return attack.configure(display=display, **changes)
