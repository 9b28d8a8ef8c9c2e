"""Distortion functions D(delta) of problem (2) and their proximal operators: the delta-step.

Prop. 1 remarks that with another D only the delta-step (10) changes; each D here gives

    delta^{k+1} = argmin_delta  gamma * D(delta) + rho/2 * ||delta - a||^2,   a = z^k - u^k/rho,

in closed form. Every D is separable, so the same step under per-entry bounds lo <= delta <= hi
(the refinement (21)) is the unconstrained minimiser clamped to [lo, hi].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

DistortionName = Literal["l2", "l1", "elastic"]


def soft_threshold(a: Tensor, threshold: float) -> Tensor:
    """prox of threshold*|.|: sign(a) * max(|a| - threshold, 0)."""
    return torch.sign(a) * (a.abs() - threshold).clamp_min(0)


@dataclass(frozen=True)
class Distortion:
    """D(delta) = ||delta||_2^2 ("l2", the paper's choice, eq. 10), ||delta||_1 ("l1") or
    beta*||delta||_1 + ||delta||_2^2 ("elastic", the EAD objective). The name and beta >= 0 are
    rules of the attack configurations that build it."""

    name: DistortionName = "l2"
    beta: float = 1e-3

    def value(self, delta: Tensor) -> Tensor:
        """D(delta) per image, (N,)."""
        d = delta.flatten(1)
        if self.name == "l2":
            return d.pow(2).sum(dim=1)
        if self.name == "l1":
            return d.abs().sum(dim=1)
        return self.beta * d.abs().sum(dim=1) + d.pow(2).sum(dim=1)

    def prox(self, a: Tensor, gamma: float, rho: float) -> Tensor:
        """argmin_delta gamma*D(delta) + rho/2*||delta - a||^2."""
        if self.name == "l2":
            return (rho / (rho + 2 * gamma)) * a                                  # eq. (10)
        if self.name == "l1":
            return soft_threshold(a, gamma / rho)
        return (rho / (rho + 2 * gamma)) * soft_threshold(a, gamma * self.beta / rho)
