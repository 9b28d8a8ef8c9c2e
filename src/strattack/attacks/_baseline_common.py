"""Pieces shared by the baseline attacks (C&W l2 / l_inf, EAD, FGM / IFGSM).

Everything here is batched over N images with per-image state; a method acting on a subset of
the images takes the indices ``idx`` of that subset (rows of the per-image tensors).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..result import AttackResult, project_exact
from ..solver.losses import logit_margin
from ..solver.search import PassCounter

Model = Callable[[Tensor], Tensor]


# --- parameter checks ------------------------------------------------------------------------

def check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def budget_in_dtype(epsilon: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` that is <= epsilon, as a Python float, so that a budget
    holds whether a perturbation is compared with it in ``dtype`` or in double precision."""
    e = torch.tensor(epsilon, dtype=torch.float64).to(dtype)
    if e.double().item() > epsilon:
        e = torch.nextafter(e, torch.zeros_like(e))
    return e.item()


# --- small helpers ---------------------------------------------------------------------------

def rows(t: Tensor, idx: Tensor, everyone: bool) -> Tensor:
    """t[idx], without a copy when every image is selected."""
    return t if everyone else t[idx]


def per_image(v: Tensor, like: Tensor) -> Tensor:
    """(n,) -> (n, 1, 1, 1) to broadcast over an image batch."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def hinge(margin: Tensor, confidence: float) -> Tensor:
    """max(margin + kappa, 0): the C&W loss term of the original code (>= 0, zero exactly when
    the wanted class wins by kappa)."""
    return (margin + confidence).clamp_min(0)


def update_const(const: Tensor, lower: Tensor, upper: Tensor, success: Tensor, todo: Tensor,
                 growth: float) -> tuple[Tensor, Tensor, Tensor]:
    """C&W binary-search rule per image: success -> c is an upper bound; failure -> a lower
    bound; next c = midpoint when an upper bound exists, else c * growth."""
    upper = torch.where(success & todo, torch.minimum(upper, const), upper)
    lower = torch.where(~success & todo, torch.maximum(lower, const), lower)
    new = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * growth)
    return torch.where(todo, new, const), lower, upper


class BatchAdam:
    """Adam (Kingma & Ba, Alg. 1) on per-image parameters, with a per-image step count so that
    images can be reset independently."""

    def __init__(self, like: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)
        self.t = torch.zeros(like.shape[0], dtype=torch.float64, device=like.device)

    def reset(self, idx: Tensor) -> None:
        self.m[idx] = 0
        self.v[idx] = 0
        self.t[idx] = 0

    def step(self, param: Tensor, grad: Tensor, idx: Tensor) -> Tensor:
        """Returns the updated rows ``idx`` of the parameter (``param`` holds those rows)."""
        t = self.t[idx] + 1
        m = self.b1 * self.m[idx] + (1 - self.b1) * grad
        v = self.b2 * self.v[idx] + (1 - self.b2) * grad * grad
        self.t[idx], self.m[idx], self.v[idx] = t, m, v
        m_hat = m / per_image((1 - self.b1 ** t).to(m.dtype), m)
        v_hat = v / per_image((1 - self.b2 ** t).to(v.dtype), v)
        return param - self.lr * m_hat / (v_hat.sqrt() + self.eps)


class TanhBox:
    """tanh change of variables onto per-entry bounds lo <= delta <= hi (lo <= 0 <= hi).

    delta(w) = clip(a + h * (tanh(s w) - tanh(s w_a)), lo, hi),   h = (hi - lo)/2,
    w_a = atanh((1 - 1e-6) * (2 (a - lo)/(hi - lo) - 1)) / s,

    i.e. the C&W map x = (tanh(w) + 1)/2 (lo = -x0, hi = 1 - x0, h = 1/2, s = 1) shifted so that
    w = w_a gives the anchor perturbation a *exactly* (the original code starts from
    tanh(atanh(0.999999 (2 x0 - 1))), which moves every pixel by up to 5e-7). The shift is at
    most 1e-6 h, so the gradients are the original ones except in that sliver at the bounds,
    where the clip holds delta inside [lo, hi].

    ``unit_slope``: s = 1/(2h) per entry, so that d delta/dw = 1/2 at the centre of the
    interval whatever its width, as in the original map on [0, 1]; used for narrow intervals
    (an l_inf budget), where s = 1 would make every Adam step h/(1/2) times smaller in pixels.
    """

    SHRINK = 1 - 1e-6

    def __init__(self, lo: Tensor, hi: Tensor, unit_slope: bool = False) -> None:
        self.lo, self.hi = lo, hi
        self.half = (hi - lo) / 2
        self.scale = 0.5 / self.half if unit_slope else torch.ones_like(self.half)

    def anchor(self, a: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(w_a, tanh(s w_a)) for anchors ``a`` (rows idx)."""
        u = (a - self.lo[idx]) / (2 * self.half[idx])
        s = ((2 * u - 1) * self.SHRINK).clamp(-self.SHRINK, self.SHRINK)
        v = torch.atanh(s)
        return v / self.scale[idx], torch.tanh(v)

    def delta(self, w: Tensor, a: Tensor, tanh_a: Tensor, idx: Tensor, everyone: bool) -> Tensor:
        d = a + rows(self.half, idx, everyone) * (torch.tanh(w * rows(self.scale, idx, everyone))
                                                  - tanh_a)
        return torch.minimum(torch.maximum(d, rows(self.lo, idx, everyone)),
                             rows(self.hi, idx, everyone))


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


def finish(model: Model, x0: Tensor, inputs: Tensor, adv: Tensor, labels: Tensor, targeted: bool,
           counter: PassCounter, *, const: Tensor | None, iterations: Tensor) -> AttackResult:
    """Final check: success is computed by running the model on the returned tensor."""
    n = x0.shape[0]
    with torch.no_grad():
        final_margin = logit_margin(model(adv), labels, targeted)
    counter.add(torch.arange(n, device=x0.device), "final check", backward=False)
    return AttackResult(adv=adv.detach(), success=final_margin < 0, inputs=inputs, const=const,
                        iterations=iterations, forward_passes=counter.forward,
                        backward_passes=counter.backward, stages=counter.stages)
