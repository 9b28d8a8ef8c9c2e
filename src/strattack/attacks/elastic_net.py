"""EAD: elastic-net attack (Chen, Sharma, Zhang, Yi & Hsieh, AAAI 2018), batched.

Follows the authors' reference code (EAD_Attack, en_attack.py; also cleverhans'
ElasticNetMethod), with every image carrying its own constant c, iterates and bookkeeping.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..result import AttackResult
from ..solver.distortion import soft_threshold
from ..solver.losses import hinge, is_adversarial
from ..validation import check_nonnegative
from .call import attack_function
from .carlini_wagner import CWL2Config
from .const_search import ConstSearch
from .tracking import AttackCall, BestSoFar, Model, rows

Decision = Literal["en", "l1"]


@dataclass(frozen=True)
class EADConfig(CWL2Config):
    """The configuration of :func:`ead`: C&W-l2's search and Adam-free FISTA keywords (the
    same defaults and rules) plus the l1 weight and the decision rule."""

    beta: float = 1e-3
    decision: Decision = "en"

    def check(self) -> None:
        super().check()
        check_nonnegative("beta", self.beta)


def shrink(v: Tensor, beta: float, lo: Tensor, hi: Tensor) -> Tensor:
    """ISTA shrinkage of EAD: soft-threshold the perturbation v by beta, then project on the box
    (lo = -x0, hi = 1 - x0): min(v - beta, hi) if v > beta, max(v + beta, lo) if v < -beta,
    else 0."""
    return torch.minimum(torch.maximum(soft_threshold(v, beta), lo), hi)


def ead_core(model: Model, inputs: Tensor, labels: Tensor, config: EADConfig, *,
             targeted: bool, true_labels: Tensor | None) -> AttackResult:
    """The work of :func:`ead` for a validated ``config``."""
    confidence, beta, decision = config.confidence, config.beta, config.decision
    learning_rate, max_iterations = config.learning_rate, config.max_iterations
    call = AttackCall.start(model, inputs, labels, targeted, true_labels, confidence)
    x0 = call.x0

    already = call.already
    best = BestSoFar(x0, already)                          # distance: by ``decision``
    search = ConstSearch(~already, config.initial_const, config.binary_search_steps,
                         max_iterations, config.abort_early, stall_ratio=0.999999,
                         dtype=x0.dtype)

    lo, hi = -x0, 1 - x0
    x_delta = torch.zeros_like(x0)     # x^k - x0
    y_delta = torch.zeros_like(x0)     # y^k - x0

    for _ in search.steps():
        x_delta.zero_()
        y_delta.zero_()

        for k, idx, everyone in search.iterate():
            x0_i = rows(x0, idx, everyone)
            c = rows(search.const, idx, everyone)
            lo_i, hi_i = rows(lo, idx, everyone), rows(hi, idx, everyone)
            x_old = rows(x_delta, idx, everyone)
            y = rows(y_delta, idx, everyone).detach().requires_grad_(True)
            with torch.enable_grad():
                margin_y = call.margin(x0_i + y, idx, "fista")
                loss_y = c * hinge(margin_y, confidence) + y.flatten(1).pow(2).sum(dim=1)
                grad, = torch.autograd.grad(loss_y.sum(), y)

            lr_k = learning_rate * (1 - k / max_iterations) ** 0.5
            x_new = shrink(y.detach() - lr_k * grad, beta, lo_i, hi_i)
            y_new = x_new + (k + 1) / (k + 4) * (x_new - x_old)
            if everyone:
                x_delta, y_delta = x_new, y_new
            else:
                x_delta[idx], y_delta[idx] = x_new, y_new

            with torch.no_grad():
                margin_x = call.margin(x0_i + x_new, idx, "fista")
            flat = x_new.flatten(1)
            l1 = flat.abs().sum(dim=1)
            l2sq = flat.pow(2).sum(dim=1)
            loss = c * hinge(margin_x, confidence) + l2sq + beta * l1
            dist = l2sq + beta * l1 if decision == "en" else l1
            adv = is_adversarial(margin_x, confidence)
            best.update(idx, dist, x_new, c, candidate=adv)
            search.record(k, idx, adv, loss)

    return best.result(call, None, search.iterations)


@attack_function(EADConfig(), ead_core)
def ead(model: Model, inputs: Tensor, labels: Tensor, *,
        targeted: bool = False,
        confidence: float = 0.0,
        beta: float = 1e-3,
        decision: Decision = "en",
        learning_rate: float = 1e-2,
        initial_const: float = 1e-3,
        binary_search_steps: int = 9,
        max_iterations: int = 1000,
        abort_early: bool = True,
        true_labels: Tensor | None = None) -> AttackResult:
    """EAD attack: minimize c * max(margin + kappa, 0) + ||delta||_2^2 + beta * ||delta||_1 over
    the box, by FISTA with the ISTA shrinkage, inside a per-image binary search on c.

    Iteration k = 0, 1, ... of a search step (x^0 = y^0 = x0 at the start of every step):
      lr_k    = learning_rate * sqrt(1 - k / max_iterations)     (square-root decay to 0)
      y'      = y^k - lr_k * grad_y [c * max(margin(y^k) + kappa, 0) + ||y^k - x0||^2]
      x^{k+1} = x0 + shrink(y' - x0, beta)       (soft-threshold by beta, projected on [0, 1])
      y^{k+1} = x^{k+1} + (k + 1)/(k + 4) * (x^{k+1} - x^k)

    exactly as in the reference code (whose threshold is beta itself, not lr_k * beta, and whose
    slack y may leave [0, 1]: the model is evaluated there). Every x^{k+1} is run through the
    model (one forward pass): if adversarial (margin <= -kappa, < 0) it is a candidate, and the
    best candidate is the one with the smallest elastic-net distance beta*l1 + l2^2
    (``decision="en"``) or l1 distance (``decision="l1"``). Abort early (per image): every
    max(1, max_iterations // 10) iterations, an image whose loss at x^{k+1} (the full EN
    objective) is > 0.999999 x its loss at the previous check stops for this step (the candidate
    of that iteration is recorded first). The binary search on c is the C&W one (see
    :func:`cw_l2`): c starts at ``initial_const``, x10 while no upper bound, else bisection; with
    10 or more steps the last one uses the upper bound.

    Cost per iteration and image: two forward passes (at y^k with its backward, and at x^{k+1}).
    Returns an :class:`AttackResult` (``const``: the c of the returned example, 0 for images
    already adversarial, inf where none was found; ``iterations``: FISTA iterations per image).
    """
