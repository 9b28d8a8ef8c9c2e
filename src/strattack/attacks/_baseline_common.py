"""Pieces shared by the baseline attacks (C&W l2 / l_inf, EAD, FGM / IFGSM).

Everything here is batched over N images with per-image state; a method acting on a subset of
the images takes the indices ``idx`` of that subset (rows of the per-image tensors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..result import AttackResult, project_exact
from ..solver.losses import is_adversarial, logit_margin
from ..solver.search import PassCounter
from ..validation import validate_attack_call

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


# --- the call: validation, pass counts, final check -------------------------------------------

@dataclass
class AttackCall:
    """A validated attack call. Made after the parameter checks, so that bad parameters cost no
    model pass; the validation pass (the clean logits) is counted for every image."""

    model: Model
    inputs: Tensor
    targeted: bool
    x0: Tensor              # inputs.detach(); distances are measured to it
    labels: Tensor          # as long
    clean_margin: Tensor    # logit_margin at the inputs, from the validation pass
    counter: PassCounter
    confidence: float = 0.0  # kappa: success means the wanted class wins by at least kappa

    @classmethod
    def start(cls, model: Model, inputs: Tensor, labels: Tensor, targeted: bool,
              true_labels: Tensor | None, confidence: float = 0.0) -> "AttackCall":
        clean_logits = validate_attack_call(model, inputs, labels, targeted, true_labels)
        x0 = inputs.detach()
        labels = labels.long()
        n, device = x0.shape[0], x0.device
        counter = PassCounter.zeros(n, device)
        counter.add(torch.arange(n, device=device), "validation", backward=False)
        return cls(model, inputs, targeted, x0, labels,
                   logit_margin(clean_logits, labels, targeted), counter, confidence)

    def finish(self, adv: Tensor, *, const: Tensor | None, iterations: Tensor) -> AttackResult:
        """Final check: success is computed by running the model on the returned tensor, with
        the criterion the search used (margin <= -kappa, :func:`is_adversarial`)."""
        n = self.x0.shape[0]
        with torch.no_grad():
            final_margin = logit_margin(self.model(adv), self.labels, self.targeted)
        self.counter.add(torch.arange(n, device=self.x0.device), "final check", backward=False)
        return AttackResult(adv=adv.detach(), success=is_adversarial(final_margin, self.confidence),
                            inputs=self.inputs,
                            const=const, iterations=iterations,
                            forward_passes=self.counter.forward,
                            backward_passes=self.counter.backward, stages=self.counter.stages)


# --- C&W-style search: best so far, binary search on c -----------------------------------------

class BestSoFar:
    """Per image: the adversarial perturbation with the smallest distance met so far, and the c
    it was found at. Images already classified as wanted (``already``) start at distance 0 and
    c = 0 with delta = 0, so they are returned unchanged; the others at distance and c = inf
    (while none is found the input itself is returned, with c = inf)."""

    def __init__(self, x0: Tensor, already: Tensor) -> None:
        self.delta = torch.zeros_like(x0)
        self.dist = torch.full((x0.shape[0],), float("inf"), dtype=x0.dtype, device=x0.device)
        self.const = self.dist.clone()
        self.dist[already] = 0.0
        self.const[already] = 0.0

    def update(self, idx: Tensor, dist: Tensor, delta: Tensor, const: Tensor,
               candidate: Tensor | None = None) -> None:
        """Offer ``delta`` (rows idx) at distance ``dist``, found with c = ``const``: the rows
        that are candidates (adversarial; all rows when ``candidate`` is None) and strictly
        closer than the best so far replace it."""
        better = dist < self.dist[idx]
        if candidate is not None:
            better = candidate & better
        b_idx = idx[better]
        self.delta[b_idx] = delta[better]
        self.dist[b_idx] = dist[better]
        self.const[b_idx] = const[better]

    def result(self, call: AttackCall, budget: float | None, iterations: Tensor) -> AttackResult:
        """x0 + the best delta, on the box (and the l_inf ``budget``) exactly; ``const`` is the c
        of the returned example."""
        adv = project_exact(call.x0, call.x0 + self.delta, budget)
        return call.finish(adv, const=self.const, iterations=iterations)


class ConstSearch:
    """The C&W per-image binary search on c (used by cw_l2 and EAD), with per-image abort-early
    inside each step.

    c starts at ``initial_const``; after each step, :func:`update_const` with growth 10 (an
    upper bound where the step found an adversarial example, else a lower bound; bisection, or
    x10 while there is no upper bound). As in the original, with 10 or more steps the last one
    uses the upper bound (1e10 if none). Only the images in ``todo`` are searched; the search
    ends early once none is left.

    Abort early (per image, when ``abort_early``): every max(1, max_iterations // 10) iterations
    of a step (counted from 0), an image whose loss is > ``stall_ratio`` x its loss at the
    previous check stops for this step.

    Use::

        for _ in search.steps():                      # this step's c: search.const
            ...restart the optimisation of the images in search.todo...
            for k, idx, everyone in search.iterate():  # idx: the images still running
                ...one iteration on the images idx...
                search.record(k, idx, adversarial, loss)
    """

    GROWTH = 10.0

    @staticmethod
    def check(initial_const: float, binary_search_steps: int, max_iterations: int) -> None:
        """The search's parameter checks (to be made before any model pass)."""
        check_positive("initial_const", initial_const)
        check_count("binary_search_steps", binary_search_steps)
        check_count("max_iterations", max_iterations)

    def __init__(self, todo: Tensor, initial_const: float, binary_search_steps: int,
                 max_iterations: int, abort_early: bool, stall_ratio: float,
                 dtype: torch.dtype) -> None:
        n, device = todo.shape[0], todo.device
        self.todo = todo
        self.const = torch.full((n,), float(initial_const), dtype=dtype, device=device)
        self.lower = torch.zeros_like(self.const)
        self.upper = torch.full_like(self.const, float("inf"))
        self.iterations = torch.zeros(n, dtype=torch.long, device=device)   # per image, all steps
        self.binary_search_steps, self.max_iterations = binary_search_steps, max_iterations
        self.abort_early, self.stall_ratio = abort_early, stall_ratio
        self.check_every = max(1, max_iterations // 10)
        # per step: images still optimising, step found an adversarial example, loss at last check
        self.running = torch.zeros_like(todo)
        self.success = torch.zeros_like(todo)
        self.prev = torch.full_like(self.const, float("inf"))

    def steps(self) -> Iterator[int]:
        """The binary-search steps; c is updated after each."""
        repeat = self.binary_search_steps >= 10
        for search_step in range(self.binary_search_steps):
            if not self.todo.any():
                break
            if repeat and search_step == self.binary_search_steps - 1:
                last = torch.where(torch.isfinite(self.upper), self.upper,
                                   torch.full_like(self.upper, 1e10))
                self.const = torch.where(self.todo, last, self.const)
            self.running = self.todo.clone()
            self.success = torch.zeros_like(self.todo)
            self.prev = torch.full_like(self.const, float("inf"))
            yield search_step
            self.const, self.lower, self.upper = update_const(
                self.const, self.lower, self.upper, self.success, self.todo, self.GROWTH)

    def iterate(self) -> Iterator[tuple[int, Tensor, bool]]:
        """(k, idx, everyone) for the iterations of a step: idx = the images still running,
        everyone = whether that is all images (then ``rows`` makes no copies)."""
        n = self.todo.shape[0]
        for k in range(self.max_iterations):
            idx = self.running.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            yield k, idx, idx.numel() == n

    def record(self, k: int, idx: Tensor, adversarial: Tensor, loss: Tensor) -> None:
        """End of iteration k on the images idx: count it, note which found an adversarial
        example in this step, and apply the abort-early check to ``loss``."""
        self.iterations[idx] += 1
        self.success[idx] |= adversarial
        if self.abort_early and k % self.check_every == 0:
            stalled = loss > self.prev[idx] * self.stall_ratio
            self.prev[idx] = loss
            self.running[idx[stalled]] = False
