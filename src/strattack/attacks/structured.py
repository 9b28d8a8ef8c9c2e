"""StrAttack: the structured adversarial attack of Xu et al. (ICLR 2019).

Problem (2) with D = ||.||_2^2 and the sliding-mask group penalty g, solved by the linearized
ADMM of Prop. 1 (non-overlapping groups, S = r) or Prop. 2 (overlapping, S < r) inside a
per-image binary search on c, followed by the refinement of Prop. 3 on the sigma-sparse support
of the best perturbation. It is one configuration of :func:`admm_attack`.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from ..result import AttackResult
from .admm_framework import admm_attack
from .lifecycle import public_attack


@public_attack
def str_attack(model: Callable[[Tensor], Tensor], inputs: Tensor, labels: Tensor, *,
               targeted: bool = False, group_size: int = 2, stride: int = 2, tau: float = 2.0,
               **kwargs: Any) -> AttackResult:
    """Structured (group-sparse) adversarial attack; see :func:`admm_attack` for every keyword.

    Defaults follow Appendix F: rho = 1, eta_1 = 5, tau = 2, gamma = 1, D = ||.||_2^2,
    refinement on the 3%-quantile support.
    """
    if not tau > 0:
        raise ValueError(f"StrAttack needs a group penalty tau > 0, got {tau}; "
                         "use admm_attack for tau = 0")
    return admm_attack(model, inputs, labels, targeted=targeted, group_size=group_size,
                       stride=stride, tau=tau, **kwargs)


@public_attack
def str_attack_linf(model: Callable[[Tensor], Tensor], inputs: Tensor, labels: Tensor, *,
                    epsilon: float, targeted: bool = False, **kwargs: Any) -> AttackResult:
    """StrAttack under ||delta||_inf <= epsilon, refined by problem (20) at gamma = 0 (Sec. 5,
    Table 2). Success means fooling the model within the budget."""
    kwargs.setdefault("refine_gamma", 0.0)
    return str_attack(model, inputs, labels, targeted=targeted, epsilon=epsilon, **kwargs)
