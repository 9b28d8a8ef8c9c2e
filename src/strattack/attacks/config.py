"""Attack configurations: one frozen, validated value per attack family.

An attack's configuration (every keyword but the model, the images, the labels and the
per-call ``targeted`` / ``true_labels`` / ``seeds``) is a frozen dataclass. Building one checks
every field once: its type from the field's annotation (:func:`check_field_types`), then the
family's range rules (:meth:`AttackConfig.check`). Presets are values derived with
:meth:`AttackConfig.replace`; a store records :meth:`AttackConfig.record`.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..validation import check_value_type

C = TypeVar("C", bound="AttackConfig")


@dataclass(frozen=True)
class AttackConfig:
    """Base of the attack configurations: validated on construction, immutable after."""

    #: Fields added after stores began to record configurations, each with the value that is
    #: the behaviour from before it existed: at that value the field is left out of the record,
    #: so a store written without it still resumes and merges.
    UNRECORDED_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        check_field_types(self)
        self.check()

    def check(self) -> None:
        """The family's range rules (a ValueError naming the field); types are already checked."""

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied, validated again (a TypeError for an unknown name)."""
        unknown = sorted(set(changes) - field_names(type(self)))
        if unknown:
            raise TypeError(f"unknown parameters {unknown}; known: {sorted(field_names(type(self)))}")
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """Every field as a store records it (sorted; JSON-safe, as every float is finite),
        without the later fields at their neutral value."""
        skip = self.UNRECORDED_DEFAULTS
        return {name: value for name, value in sorted(dataclasses.asdict(self).items())
                if not (name in skip and value == skip[name])}


def field_names(config: type[AttackConfig]) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


def check_field_types(config: AttackConfig) -> None:
    """Each field against its annotation (ValueError naming it); numpy scalars become plain
    Python numbers, so that a configuration compares and records the same whatever built it."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = check_value_type(f.name, getattr(config, f.name), hints[f.name])
        object.__setattr__(config, f.name, value)
