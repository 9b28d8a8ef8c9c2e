"""The value every attack returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class AttackResult:
    """Outcome of an attack on N images.

    adv:        adversarial examples, same shape/dtype/device as the inputs, in [0, 1]
                (equal to the input where no adversarial example was found).
    success:    (N,) bool, computed by running the model on ``adv``.
    inputs:     the original inputs (not modified by the attack).
    const:      (N,) loss constant c of the returned example (inf where none was found).
    iterations: (N,) solver iterations spent per image.
    forward_passes / backward_passes: (N,) model passes spent per image, the final check included.
    stages:     per stage, total [forward, backward] passes over the batch.
    unrefined:  for attacks with a refinement stage, the examples before it (the result a run
                without refinement returns), to measure what the refinement adds in one run.
    """

    adv: Tensor
    success: Tensor
    inputs: Tensor
    const: Tensor | None = None
    iterations: Tensor | None = None
    forward_passes: Tensor | None = None
    backward_passes: Tensor | None = None
    stages: dict[str, list[int]] = field(default_factory=dict)
    unrefined: Tensor | None = None

    @property
    def perturbation(self) -> Tensor:
        return self.adv - self.inputs

    def norms(self) -> dict[str, Tensor]:
        """Per-image l0 (changed entries), l1, l2 and linf of the perturbation."""
        d = self.perturbation.flatten(1)
        return {"l0": (d != 0).sum(dim=1), "l1": d.abs().sum(dim=1),
                "l2": d.norm(dim=1), "linf": d.abs().amax(dim=1)}
