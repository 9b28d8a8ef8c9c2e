"""Carlini & Wagner attacks (S&P 2017): l2 (``cw_l2``) and l_inf (``cw_linf``), batched.

Both follow the authors' reference code (nn_robust_attacks, l2_attack.py / li_attack.py) and its
defaults, except max_iterations = 1000 for l2 (Appendix F: 1000 iterations, 9 binary-search
steps; the reference l2 code has 10000). Every image has its own constant c, optimizer state
and bookkeeping; the model runs only on the images that are still being optimised (finished
images cost no model pass).

Differences with the reference code, all deliberate:
  * per-image abort-early (the reference compares the loss summed over the batch), and the
    iterate of the aborting iteration is still considered for the best-so-far;
  * the confidence kappa is also available for l_inf (the reference has none there);
  * cw_linf accepts an iterate once its own forward pass says it is adversarial (no extra pass);
  * the start point is exactly x0 (below) and distances are measured to x0.

Common to both:
  * tanh change of variables x = (tanh(w) + 1)/2, shifted so that the start is exactly the
    anchor image (see :class:`TanhBox`; the original starts from tanh(atanh(0.999999 (2 x0 - 1))),
    a point up to 5e-7 away from x0 on every pixel); distances are measured to x0 itself;
  * the loss term c * max(margin + kappa, 0) (eq. 3 of the StrAttack paper; kappa = confidence);
  * Adam with bias correction (Kingma & Ba, Alg. 1);
  * images already classified as wanted (with confidence kappa) are returned unchanged and cost
    no pass beyond the validation and the final check.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..result import AttackResult
from ..solver.losses import hinge, is_adversarial
from ..validation import check_count, check_nonnegative, check_positive
from .call import attack_function
from .config import AttackConfig
from .const_search import ConstSearch
from .projections import budget_in_dtype, per_image
from .tracking import AttackCall, BestSoFar, Model, rows


@dataclass(frozen=True)
class CWL2Config(AttackConfig):
    """The configuration of :func:`cw_l2` (its keywords, documented there)."""

    confidence: float = 0.0
    learning_rate: float = 1e-2
    initial_const: float = 1e-3
    binary_search_steps: int = 9
    max_iterations: int = 1000
    abort_early: bool = True

    def check(self) -> None:
        check_nonnegative("confidence", self.confidence)
        check_positive("learning_rate", self.learning_rate)
        check_positive("initial_const", self.initial_const)
        check_count("binary_search_steps", self.binary_search_steps)
        check_count("max_iterations", self.max_iterations)


@dataclass(frozen=True)
class CWLinfConfig(AttackConfig):
    """The configuration of :func:`cw_linf` (its keywords, documented there)."""

    epsilon: float | None = None
    confidence: float = 0.0
    learning_rate: float = 5e-3
    initial_const: float = 1e-5
    largest_const: float = 20.0
    const_factor: float = 2.0
    reduce_const: bool = False
    decrease_factor: float = 0.9
    initial_tau: float = 1.0
    min_tau: float = 1.0 / 256
    max_iterations: int = 1000

    def check(self) -> None:
        if self.epsilon is not None:
            check_positive("epsilon", self.epsilon)
        check_nonnegative("confidence", self.confidence)
        check_positive("learning_rate", self.learning_rate)
        check_positive("initial_const", self.initial_const)
        check_positive("largest_const", self.largest_const)
        if not self.const_factor > 1:
            raise ValueError(f"const_factor must be > 1, got {self.const_factor}")
        if not 0 < self.decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {self.decrease_factor}")
        check_positive("initial_tau", self.initial_tau)
        check_nonnegative("min_tau", self.min_tau)
        check_count("max_iterations", self.max_iterations)


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


def cw_l2_core(model: Model, inputs: Tensor, labels: Tensor, config: CWL2Config, *,
               targeted: bool, true_labels: Tensor | None) -> AttackResult:
    """The work of :func:`cw_l2` for a validated ``config``."""
    confidence = config.confidence
    call = AttackCall.start(model, inputs, labels, targeted, true_labels, confidence)
    x0 = call.x0

    already = call.already
    best = BestSoFar(x0, already)                          # distance: l2
    search = ConstSearch(~already, config.initial_const, config.binary_search_steps,
                         config.max_iterations, config.abort_early, stall_ratio=0.9999,
                         dtype=x0.dtype)

    box = TanhBox(-x0, 1 - x0)
    zero = torch.zeros_like(x0)
    # w_start: the w at which delta = 0 exactly
    w_start, tanh_start = box.anchor(zero, torch.arange(x0.shape[0], device=x0.device))
    w = w_start.clone()
    adam = BatchAdam(w, config.learning_rate)

    for _ in search.steps():
        w = torch.where(per_image(search.todo, w), w_start, w)
        adam.reset(search.todo.nonzero().squeeze(1))

        for it, idx, everyone in search.iterate():
            x0_i = rows(x0, idx, everyone)
            c = rows(search.const, idx, everyone)
            w_i = rows(w, idx, everyone).detach().requires_grad_(True)
            with torch.enable_grad():
                delta = box.delta(w_i, rows(zero, idx, everyone), rows(tanh_start, idx, everyone),
                                  idx, everyone)
                margin = call.margin(x0_i + delta, idx, "adam")
                dist = delta.flatten(1).pow(2).sum(dim=1)
                loss = dist + c * hinge(margin, confidence)
                grad, = torch.autograd.grad(loss.sum(), w_i)

            # Bookkeeping at the evaluated iterate (the same forward pass).
            delta, margin, loss = delta.detach(), margin.detach(), loss.detach()
            adv = is_adversarial(margin, confidence)
            best.update(idx, dist.detach().sqrt(), delta, c, candidate=adv)

            new_w = adam.step(w_i.detach(), grad, idx)
            if everyone:
                w = new_w
            else:
                w[idx] = new_w
            search.record(it, idx, adv, loss)

    return best.result(call, None, search.iterations)


@attack_function(CWL2Config(), cw_l2_core)
def cw_l2(model: Model, inputs: Tensor, labels: Tensor, *,
          targeted: bool = False,
          confidence: float = 0.0,
          learning_rate: float = 1e-2,
          initial_const: float = 1e-3,
          binary_search_steps: int = 9,
          max_iterations: int = 1000,
          abort_early: bool = True,
          true_labels: Tensor | None = None) -> AttackResult:
    """Carlini & Wagner l2 attack.

    minimize ||delta||_2^2 + c * max(margin(x0 + delta) + kappa, 0) over the tanh variable w,
    with Adam (``learning_rate``) for ``max_iterations`` iterations per value of c, and a
    per-image binary search on c over ``binary_search_steps`` steps: c starts at
    ``initial_const``; a step that found an adversarial example makes c an upper bound, else a
    lower bound; next c = midpoint of the bounds, or c * 10 while there is no upper bound. As in
    the original, with 10 or more steps the last one uses the upper bound (1e10 if none). The
    optimisation restarts from x0 (w and Adam state reset) at every step.

    Abort early (per image): every max(1, max_iterations // 10) iterations (counted from 0), an
    image whose loss is > 0.9999 x its loss at the previous check stops for this step.

    Best so far: every iterate is checked with the forward pass that gives its gradient (no extra
    pass, as in the original); the adversarial one (margin <= -kappa, strictly < 0) with the
    smallest l2 distance to x0 is returned, the input itself where none was found.

    Returns an :class:`AttackResult`: ``const`` is the c of the returned example (0 for images
    already adversarial, inf where none was found), ``iterations`` the Adam iterations per image;
    each iteration costs one forward and one backward pass of the image.
    """


def cw_linf_core(model: Model, inputs: Tensor, labels: Tensor, config: CWLinfConfig, *,
                 targeted: bool, true_labels: Tensor | None) -> AttackResult:
    """The work of :func:`cw_linf` for a validated ``config``."""
    epsilon, confidence, min_tau = config.epsilon, config.confidence, config.min_tau
    largest_const, max_iterations = config.largest_const, config.max_iterations
    call = AttackCall.start(model, inputs, labels, targeted, true_labels, confidence)
    x0 = call.x0
    n, device, dtype = x0.shape[0], x0.device, x0.dtype
    budget = None if epsilon is None else budget_in_dtype(epsilon, dtype)

    already = call.already
    best = BestSoFar(x0, already)                          # distance: l_inf

    lo, hi = -x0, 1 - x0
    if budget is not None:
        lo, hi = lo.clamp_min(-budget), hi.clamp_max(budget)
    box = TanhBox(lo, hi, unit_slope=budget is not None)
    anchor = torch.zeros_like(x0)                      # current answer (warm start)
    w, tanh_anchor = box.anchor(anchor, torch.arange(n, device=device))
    adam = BatchAdam(w, config.learning_rate)
    const = torch.full((n,), float(config.initial_const), dtype=dtype, device=device)
    tau0 = config.initial_tau if budget is None else min(config.initial_tau, budget)
    tau = torch.full((n,), float(tau0), dtype=dtype, device=device)
    steps_at_const = torch.zeros(n, dtype=torch.long, device=device)
    iterations = torch.zeros(n, dtype=torch.long, device=device)
    running = ~already & (const < largest_const)
    if budget is None:
        running &= tau > min_tau

    while True:
        idx = running.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        everyone = idx.numel() == n
        x0_i = rows(x0, idx, everyone)
        c, tau_i = rows(const, idx, everyone), rows(tau, idx, everyone)
        w_i = rows(w, idx, everyone).detach().requires_grad_(True)
        with torch.enable_grad():
            delta = box.delta(w_i, rows(anchor, idx, everyone), rows(tanh_anchor, idx, everyone),
                              idx, everyone)
            margin = call.margin(x0_i + delta, idx, "adam")
            penalty = (delta.abs() - per_image(tau_i, delta)).clamp_min(0).flatten(1).sum(dim=1)
            loss = c * hinge(margin, confidence) + penalty
            grad, = torch.autograd.grad(loss.sum(), w_i)
        iterations[idx] += 1
        delta, margin, loss, grad = delta.detach(), margin.detach(), loss.detach(), grad.detach()

        ok = (loss < 1e-4 * c) & is_adversarial(margin, confidence)
        if ok.any():
            o_idx, d_ok = idx[ok], delta[ok]
            linf = d_ok.abs().flatten(1).amax(dim=1)
            best.update(o_idx, linf, d_ok, c[ok])
            tau[o_idx] = torch.minimum(tau_i[ok], linf) * config.decrease_factor
            if config.reduce_const:
                const[o_idx] = const[o_idx] / 2
            # restart from the new answer: w re-anchored on it, Adam reset, c kept
            anchor[o_idx] = d_ok
            w_a, t_a = box.anchor(d_ok, o_idx)
            w[o_idx] = w_a
            tanh_anchor[o_idx] = t_a
            adam.reset(o_idx)
            steps_at_const[o_idx] = 0
            running[o_idx[tau[o_idx] <= min_tau]] = False

        nok = ~ok
        if nok.any():
            f_idx = idx[nok]
            w[f_idx] = adam.step(w_i.detach()[nok], grad[nok], f_idx)
            steps_at_const[f_idx] += 1
            spent = f_idx[steps_at_const[f_idx] >= max_iterations]
            const[spent] = const[spent] * config.const_factor
            steps_at_const[spent] = 0
            running[spent[const[spent] >= largest_const]] = False

    return best.result(call, budget, iterations)


@attack_function(CWLinfConfig(), cw_linf_core)
def cw_linf(model: Model, inputs: Tensor, labels: Tensor, *,
            targeted: bool = False,
            epsilon: float | None = None,
            confidence: float = 0.0,
            learning_rate: float = 5e-3,
            initial_const: float = 1e-5,
            largest_const: float = 20.0,
            const_factor: float = 2.0,
            reduce_const: bool = False,
            decrease_factor: float = 0.9,
            initial_tau: float = 1.0,
            min_tau: float = 1.0 / 256,
            max_iterations: int = 1000,
            true_labels: Tensor | None = None) -> AttackResult:
    """Carlini & Wagner l_inf attack (li_attack.py), optionally within a fixed budget.

    For a threshold tau, minimize c * max(margin + kappa, 0) + sum_i max(|delta_i| - tau, 0)
    over the tanh variable w with Adam (``learning_rate``). Per image:

      * a (tau, c) solve runs until an iterate has loss < 1e-4 * c (the original's test; the
        hinge and the penalty are then ~0) *and* is adversarial (margin <= -kappa, < 0). Both
        are read off the forward pass that gives the iterate's gradient, and that iterate is
        the one kept (the original runs the model once more on the iterate after the Adam
        step, and keeps that one if its prediction is the wanted one). It becomes the
        current answer; tau <- min(tau, ||delta||_inf) * ``decrease_factor``, the optimisation
        restarts from it (w re-anchored on it, Adam reset) and c is kept (halved if
        ``reduce_const``); the attack ends when tau <= ``min_tau`` (1/256);
      * after ``max_iterations`` iterations without success, c *= ``const_factor`` (w and the
        Adam state are kept, as in the original); when c reaches ``largest_const`` the attack
        ends and returns its last answer (the input itself if tau never succeeded).

    Fixed-budget mode (``epsilon`` given, the Table 2 setting): the tanh variable is mapped onto
    [max(-x0, -eps), min(1 - x0, eps)] instead of [-x0, 1 - x0], so every iterate satisfies
    ||delta||_inf <= eps and the box; w is scaled per entry so that d delta/dw = 1/2 at the
    centre of that interval, as in the unconstrained map (otherwise Adam's steps, of about
    ``learning_rate`` in w, would move pixels 1/(2 eps) times less); tau starts at min(``initial_tau``, eps) and the first
    level is always run (its penalty is 0, so it is a search for any adversarial example within
    the budget, run for up to max_iterations * (number of c doublings) Adam steps). Success then
    means "fooled within the budget"; later levels only shrink the perturbation further.
    The returned tensor satisfies the box and the budget exactly (``project_exact``).

    Returns an :class:`AttackResult`: ``const`` is the c at which the returned example was found
    (0 for images already adversarial, inf where none was found), ``iterations`` the Adam
    iterations per image (one forward and one backward pass each).
    """
