"""Exact projections onto the box [0, 1] and a per-image budget (l_inf or l2 ball).

"Exact": the constraints hold as computed in the inputs' dtype (and in double precision), not
only up to rounding, so a reported budget is never exceeded by an ulp.
"""
from __future__ import annotations

import torch
from torch import Tensor


def per_image(v: Tensor, like: Tensor) -> Tensor:
    """(n,) -> (n, 1, 1, 1) to broadcast over an image batch."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def budget_in_dtype(epsilon: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` that is <= epsilon, as a Python float, so that a budget
    holds whether a perturbation is compared with it in ``dtype`` or in double precision."""
    e = torch.tensor(epsilon, dtype=torch.float64).to(dtype)
    if e.double().item() > epsilon:
        e = torch.nextafter(e, torch.zeros_like(e))
    return e.item()


def project_exact(inputs: Tensor, adv: Tensor, epsilon: float | None) -> Tensor:
    """Project adv on the box [0,1] and the eps-ball around inputs so that the constraints hold
    exactly in floating point: 0 <= adv <= 1 and |adv - inputs| <= eps as computed in the
    inputs' dtype (x0 + eps may round to a value whose difference to x0 exceeds eps)."""
    adv = adv.clamp(0, 1)
    if epsilon is None:
        return adv
    adv = torch.minimum(torch.maximum(adv, inputs - epsilon), inputs + epsilon).clamp(0, 1)
    for _ in range(4):  # a rounding excess is at most a few ulps
        over = (adv - inputs).abs() > epsilon
        if not over.any():
            break
        adv = torch.where(over, torch.nextafter(adv, inputs), adv)
    return adv


def project_l2_exact(inputs: Tensor, adv: Tensor, epsilon: Tensor) -> Tensor:
    """Project adv on the l2 ball of per-image radius ``epsilon`` (n,) around inputs, then on the
    box, so that ||adv - inputs||_2 <= eps holds exactly as computed in the inputs' dtype (the
    same way AttackResult.norms computes it). Clipping to the box only shrinks |delta_i|."""
    d = adv - inputs
    nrm = d.flatten(1).norm(dim=1)
    scale = torch.where(nrm > epsilon, epsilon / nrm, torch.ones_like(nrm))
    out = (inputs + d * per_image(scale, d)).clamp(0, 1)
    tiny = torch.finfo(inputs.dtype).eps
    for k in range(24):  # rounding excesses are a few ulps; shrink a little more until it holds
        nrm = (out - inputs).flatten(1).norm(dim=1)
        over = nrm > epsilon
        if not over.any():
            return out
        shrink = epsilon / nrm * (1 - tiny * 2.0 ** (k + 2))
        fixed = (inputs + (out - inputs) * per_image(shrink, out)).clamp(0, 1)
        out = torch.where(per_image(over, out), fixed, out)
    nrm = (out - inputs).flatten(1).norm(dim=1)
    return torch.where(per_image(nrm > epsilon, out), inputs, out)  # never reached in practice


def project_budget(inputs: Tensor, adv: Tensor, epsilon: Tensor, norm: str) -> Tensor:
    """Box and per-image budget ``epsilon`` (n,), exactly, for norm 'linf' or 'l2'."""
    if norm == "linf":
        return project_exact(inputs, adv, per_image(epsilon, inputs))
    return project_l2_exact(inputs, adv, epsilon)
