"""What an evaluation has left to do: per attack, the examples no store of the run has finished.

A local run (:func:`~.runner.run_evaluation`) and a Ray driver (:mod:`.distributed`) both plan
with :func:`work_left`, so they agree on what is done, what is skipped and in which order the
attacks are registered in the store.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .examples import Example
from .store import ResultStore

if TYPE_CHECKING:
    from .runner import AttackSpec

__all__ = ["AttackWork", "finished_examples", "work_left"]


@dataclass(frozen=True)
class AttackWork:
    """One attack's share of a run: its key in the store, the examples still to attack (in the
    run's order) and how many of the run's examples are finished already."""

    spec: AttackSpec
    key: str
    left: list[Example]
    finished: int


def work_left(store: ResultStore, specs: Sequence[AttackSpec], examples: Sequence[Example],
              finished_elsewhere: Sequence[ResultStore] = ()) -> list[AttackWork]:
    """Register each attack in ``store`` (in the order given) and list, per attack, the
    ``examples`` that neither ``store`` nor ``finished_elsewhere`` (read only) has finished."""
    work = []
    for spec in specs:
        key = store.add_attack(spec.name, dict(spec.params), spec.label, spec.settings)
        done = finished_examples(key, [store, *finished_elsewhere])
        left = [example for example in examples if example not in done]
        work.append(AttackWork(spec, key, left, len(examples) - len(left)))
    return work


def finished_examples(key: str, stores: Iterable[ResultStore]) -> set[Example]:
    """The examples of the attack ``key`` that any of ``stores`` has finished."""
    return set().union(*(store.done(key) for store in stores))
