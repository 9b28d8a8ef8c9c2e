"""Fast gradient attacks: FGM (Goodfellow et al. 2015) and IFGSM (Kurakin et al. 2017), batched.

Both take ``norm="linf"`` (signed gradient) or ``norm="l2"`` (gradient / its l2 norm) and run in
one of two modes:

* fixed budget, ``epsilon=float``: the perturbation never exceeds epsilon in that norm (exactly,
  as computed in the inputs' dtype) and stays in the box [0, 1];
* minimal epsilon, ``epsilon=None`` (the paper's "fine-grained grid search" of Appendix F, made
  per image and batched): the smallest epsilon at which the attack succeeds, found coarse to
  fine. Grid: eps_j = max_epsilon * 2^(j - grid_steps + 1), j = 0 .. grid_steps - 1, tried in
  increasing order; an image stops at the first success, which brackets its epsilon in
  (eps_{j-1}, eps_j] (eps_{-1} = 0). Then up to ``search_steps`` bisection steps per image on
  that bracket (success -> upper end, failure -> lower end), stopping early once
  upper - lower <= rtol * upper. The returned example is the one found at the upper end (the
  smallest epsilon that succeeded); images that fail even at max_epsilon are returned unchanged.
  Success need not be monotone in epsilon for a non-linear model; the search still returns a
  successful example at the epsilon it reports, and for a (locally) linear model it is within
  a factor (1 + rtol) of the smallest epsilon.

Direction: the gradient of the objective J to *decrease*: with ``loss="ce"`` (default, as in
CleverHans) J = cross-entropy of the target (targeted) or minus the cross-entropy of the true
class (untargeted); with ``loss="cw"`` J = the C&W margin (eq. 3 without kappa). Success means
the model classifies the returned example as the target (targeted) or not as the true class
(untargeted), strictly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..result import AttackResult
from ..solver.losses import logit_margin
from ..validation import check_count, check_nonnegative, check_positive, check_seeds
from .call import attack_function
from .config import AttackConfig
from .projections import budget_in_dtype, per_image, project_budget
from .tracking import AttackCall, Model

Norm = Literal["linf", "l2"]
LossName = Literal["ce", "cw"]


@dataclass(frozen=True)
class FGMConfig(AttackConfig):
    """The configuration of :func:`fgm` (its keywords, documented there)."""

    norm: Norm = "linf"
    epsilon: float | None = None
    loss: LossName = "ce"
    max_epsilon: float | None = None
    grid_steps: int = 10
    search_steps: int = 10
    rtol: float = 1e-3
    return_last: bool = False

    UNRECORDED_DEFAULTS: ClassVar[dict[str, object]] = {"return_last": False}

    def check(self) -> None:
        if self.epsilon is not None:
            check_positive("epsilon", self.epsilon)
        if self.return_last and self.epsilon is None:
            raise ValueError("return_last needs a fixed budget: give epsilon (the minimal-"
                             "epsilon search returns its smallest success)")
        if self.max_epsilon is not None:
            check_positive("max_epsilon", self.max_epsilon)
        check_count("grid_steps", self.grid_steps)
        check_count("search_steps", self.search_steps, minimum=0)
        check_nonnegative("rtol", self.rtol)


@dataclass(frozen=True)
class IFGSMConfig(FGMConfig):
    """The configuration of :func:`ifgsm`: :class:`FGMConfig` plus the iterations."""

    steps: int = 10
    step_fraction: float | None = None
    random_start: bool = False

    def check(self) -> None:
        super().check()
        check_count("steps", self.steps)
        if self.step_fraction is not None:
            check_positive("step_fraction", self.step_fraction)

# trial(idx, eps) -> (adv rows, success rows, gradient steps spent per row)
Trial = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, int]]


def _gradient(call: AttackCall, x: Tensor, idx: Tensor, loss: str, stage: str
              ) -> tuple[Tensor, Tensor]:
    """(gradient of J at x, margin at x) for the images idx, with one forward and one backward
    pass."""
    x = x.detach().requires_grad_(True)
    labels, targeted = call.labels[idx], call.targeted
    with torch.enable_grad():
        logits = call.logits(x, idx, stage)
        if loss == "ce":
            ce = F.cross_entropy(logits, labels, reduction="none")
            objective = ce if targeted else -ce
        else:
            objective = logit_margin(logits, labels, targeted)
        grad, = torch.autograd.grad(objective.sum(), x)
    return grad, logit_margin(logits.detach(), labels, targeted)


def _descent_direction(grad: Tensor, norm: str) -> Tensor:
    """Unit step (in the attack norm) along -grad: -sign(grad) or -grad / ||grad||_2
    (0 where the gradient vanishes)."""
    if norm == "linf":
        return -grad.sign()
    nrm = grad.flatten(1).norm(dim=1)
    scale = torch.where(nrm > 0, 1 / nrm, torch.zeros_like(nrm))
    return -grad * per_image(scale, grad)


def _uniform_in_ball(x0: Tensor, eps: Tensor, norm: str,
                     generators: Sequence[torch.Generator] | None = None) -> Tensor:
    """A point drawn uniformly from the norm ball of radius eps (n,) around each image, projected
    on the box. l2: a Gaussian direction times eps * U^(1/d) (uniform in volume). The draw uses
    torch's global generator, or with ``generators`` image i's own (:func:`_seeded_unit_draw`)."""
    if generators is not None:
        direction, scale = _seeded_unit_draw(x0, norm, generators)
        radius = eps if scale is None else eps * scale
        return project_budget(x0, x0 + direction * per_image(radius, x0), eps, norm)
    if norm == "linf":
        noise = (2 * torch.rand_like(x0) - 1) * per_image(eps, x0)
    else:
        direction = torch.randn_like(x0)
        direction = direction / per_image(direction.flatten(1).norm(dim=1).clamp_min(1e-12), x0)
        radius = eps * torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype) ** (1 / x0[0].numel())
        noise = direction * per_image(radius, x0)
    return project_budget(x0, x0 + noise, eps, norm)


def _seeded_unit_draw(x0: Tensor, norm: str, generators: Sequence[torch.Generator]
                      ) -> tuple[Tensor, Tensor | None]:
    """The unit-ball draw of each image from its own CPU generator, then moved to the inputs'
    device, so that an image's start depends on its generator alone (not on its batch, nor on
    CPU vs GPU): linf, (2U - 1) per pixel (scale None); l2, a unit Gaussian direction and its
    scale U^(1/d) (n,)."""
    shape, dtype = x0.shape[1:], x0.dtype
    if norm == "linf":
        u = torch.stack([torch.rand(shape, generator=g, dtype=dtype) for g in generators])
        return (2 * u - 1).to(x0.device), None
    direction = torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in generators])
    direction = direction / per_image(direction.flatten(1).norm(dim=1).clamp_min(1e-12), direction)
    u = torch.cat([torch.rand(1, generator=g, dtype=dtype) for g in generators])
    return direction.to(x0.device), (u ** (1 / x0[0].numel())).to(x0.device)


def _generators(seeds: Tensor | None) -> list[torch.Generator] | None:
    """One CPU generator per image, seeded with its seed (None: use the global generator)."""
    if seeds is None:
        return None
    return [torch.Generator().manual_seed(s) for s in seeds.tolist()]


def _default_max_epsilon(x0: Tensor, norm: str) -> float:
    """The largest perturbation the box allows: 1 (linf) or sqrt(pixels x channels) (l2)."""
    return 1.0 if norm == "linf" else math.sqrt(x0[0].numel())


def _run(model: Model, inputs: Tensor, labels: Tensor, targeted: bool, true_labels: Tensor | None,
         config: FGMConfig, make_trial: Callable[[AttackCall], Trial]) -> AttackResult:
    """Shared driver of both modes; ``make_trial(call)`` builds the attack run at per-image
    epsilons for a subset of images."""
    norm, epsilon, max_epsilon = config.norm, config.epsilon, config.max_epsilon
    grid_steps, search_steps, rtol = config.grid_steps, config.search_steps, config.rtol
    call = AttackCall.start(model, inputs, labels, targeted, true_labels)
    x0 = call.x0
    n, device, dtype = x0.shape[0], x0.device, x0.dtype
    trial = make_trial(call)

    already = call.clean_margin < 0                   # nothing to do for these
    # return_last: every image gets its perturbation (PGD's training examples), fooled or not.
    active = torch.ones_like(already) if config.return_last else ~already
    adv = x0.clone()
    iterations = torch.zeros(n, dtype=torch.long, device=device)

    if epsilon is not None:
        budget = budget_in_dtype(epsilon, dtype)
        idx = active.nonzero().squeeze(1)
        if idx.numel():
            eps = torch.full((idx.numel(),), budget, dtype=dtype, device=device)
            out, ok, steps = trial(idx, eps)
            kept = torch.ones_like(ok) if config.return_last else ok
            adv[idx[kept]] = out[kept]
            iterations[idx] += steps
        return call.finish(adv, const=None, iterations=iterations)

    top = _default_max_epsilon(x0, norm) if max_epsilon is None else max_epsilon
    lower = torch.zeros(n, dtype=dtype, device=device)
    upper = torch.full((n,), float("inf"), dtype=dtype, device=device)
    searching = active.clone()
    for j in range(grid_steps):                      # coarse: increasing geometric grid
        idx = searching.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        g = top * 2.0 ** (j - grid_steps + 1)
        eps = torch.full((idx.numel(),), g, dtype=dtype, device=device)
        out, ok, steps = trial(idx, eps)
        iterations[idx] += steps
        adv[idx[ok]] = out[ok]
        upper[idx[ok]] = eps[ok]
        lower[idx[~ok]] = eps[~ok]
        searching[idx[ok]] = False

    bisecting = active & torch.isfinite(upper)
    for _ in range(search_steps):                    # fine: per-image bisection
        bisecting &= (upper - lower) > rtol * upper
        idx = bisecting.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        mid = (lower[idx] + upper[idx]) / 2
        out, ok, steps = trial(idx, mid)
        iterations[idx] += steps
        adv[idx[ok]] = out[ok]
        upper[idx[ok]] = mid[ok]
        lower[idx[~ok]] = mid[~ok]
    return call.finish(adv, const=None, iterations=iterations)


def fgm_core(model: Model, inputs: Tensor, labels: Tensor, config: FGMConfig, *,
             targeted: bool, true_labels: Tensor | None) -> AttackResult:
    """The work of :func:`fgm` for a validated ``config``."""
    norm, loss = config.norm, config.loss

    def make_trial(call: AttackCall) -> Trial:
        x0 = call.x0
        direction: dict[str, Tensor] = {}

        def trial(idx: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, int]:
            steps = 0
            if "d" not in direction:                 # first call: every active image
                grad, _ = _gradient(call, x0[idx], idx, loss, "gradient")
                d = torch.zeros_like(x0)
                d[idx] = _descent_direction(grad, norm)
                direction["d"] = d
                steps = 1
            x0_i = x0[idx]
            out = project_budget(x0_i, x0_i + per_image(eps, x0_i) * direction["d"][idx], eps, norm)
            with torch.no_grad():
                ok = call.margin(out, idx, "epsilon trials") < 0
            return out, ok, steps

        return trial

    return _run(model, inputs, labels, targeted, true_labels, config, make_trial)


@attack_function(FGMConfig(), fgm_core)
def fgm(model: Model, inputs: Tensor, labels: Tensor, *,
        targeted: bool = False,
        norm: Norm = "linf",
        epsilon: float | None = None,
        loss: LossName = "ce",
        max_epsilon: float | None = None,
        grid_steps: int = 10,
        search_steps: int = 10,
        rtol: float = 1e-3,
        return_last: bool = False,
        true_labels: Tensor | None = None) -> AttackResult:
    """Fast gradient method: one step x0 + eps * d, d = -sign(grad J) (linf) or
    -grad J / ||grad J||_2 (l2), clipped to the box (and to the budget, exactly).

    ``epsilon``: fixed budget, or None for the minimal-epsilon search (module docstring;
    ``max_epsilon`` defaults to 1 for linf and sqrt(n) for l2, the largest the box allows;
    ``grid_steps``, ``search_steps`` and ``rtol`` set the grid, the bisection steps and its
    relative tolerance). The gradient is taken once at x0 (one forward + one backward pass per
    image); every epsilon tried then costs one forward pass. Images the model already classifies
    as wanted are returned unchanged. ``iterations`` counts gradient steps (1, 0 for those).
    ``return_last`` (with ``epsilon``): return the step for every image, adversarial or not,
    instead of the input where it does not fool the model.
    """


def ifgsm_core(model: Model, inputs: Tensor, labels: Tensor, config: IFGSMConfig, *,
               targeted: bool, true_labels: Tensor | None,
               seeds: Tensor | None = None) -> AttackResult:
    """The work of :func:`ifgsm` for a validated ``config`` (``seeds``: see :func:`ifgsm`)."""
    check_seeds(seeds, inputs.shape[0])
    norm, loss, steps, random_start = config.norm, config.loss, config.steps, config.random_start
    fraction = 1.0 / steps if config.step_fraction is None else config.step_fraction

    def make_trial(call: AttackCall) -> Trial:
        x0 = call.x0
        generators = _generators(seeds) if random_start else None

        def start(idx: Tensor, x0_i: Tensor, eps: Tensor) -> Tensor:
            if not random_start:
                return x0_i
            mine = None if generators is None else [generators[i] for i in idx.tolist()]
            return _uniform_in_ball(x0_i, eps, norm, mine)

        def trial(idx: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, int]:
            x0_i = x0[idx]
            alpha = per_image(eps * fraction, x0_i)
            x = start(idx, x0_i, eps)
            found = torch.zeros(idx.numel(), dtype=torch.bool, device=x0.device)
            found_adv = x0_i.clone()
            for k in range(steps):
                grad, margin = _gradient(call, x, idx, loss, "iterations")
                if k > 0 or random_start:            # every iterate but x0 is a candidate
                    hit = margin < 0
                    found_adv[hit] = x[hit]
                    found |= hit
                x = project_budget(x0_i, x + alpha * _descent_direction(grad, norm), eps, norm)
            with torch.no_grad():
                last_ok = call.margin(x, idx, "iterations") < 0
            out = x if config.return_last else torch.where(per_image(last_ok, x), x, found_adv)
            return out, last_ok | found, steps

        return trial

    return _run(model, inputs, labels, targeted, true_labels, config, make_trial)


@attack_function(IFGSMConfig(), ifgsm_core)
def ifgsm(model: Model, inputs: Tensor, labels: Tensor, *,
          targeted: bool = False,
          norm: Norm = "linf",
          epsilon: float | None = None,
          steps: int = 10,
          step_fraction: float | None = None,
          loss: LossName = "ce",
          max_epsilon: float | None = None,
          grid_steps: int = 10,
          search_steps: int = 10,
          rtol: float = 1e-3,
          random_start: bool = False,
          return_last: bool = False,
          seeds: Tensor | None = None,
          true_labels: Tensor | None = None) -> AttackResult:
    """Iterative FGM (IFGSM / BIM): ``steps`` steps x <- P(x + a * d(x)), with d as in
    :func:`fgm` taken at the current iterate, step a = ``step_fraction`` x eps (default 1/steps, so
    10 steps of eps/10 as in Appendix F), and P the projection on the eps-ball of the norm
    (clip for linf, rescaling for l2) and on the box after every step, starting from x0, or with
    ``random_start`` from a point drawn uniformly in the eps-ball around x0 (then projected on
    the box): that is PGD (Madry et al., 2018; their MNIST attack: 40 steps of 0.01 at eps = 0.3,
    ``steps=40, step_fraction=1/30``). The draw uses torch's global generator (seed it), or with
    ``seeds`` (an integer tensor (N,)) image i's own CPU generator seeded with seeds[i], one
    draw per epsilon tried: then an image's result does not depend on the other images of the
    batch, on its position there, or on the device (the evaluation passes a seed per example).

    The result of a run is the last iterate if it is adversarial, else the last adversarial
    iterate met on the way (the forward pass that gives each gradient also tells whether that
    iterate is adversarial, at no extra cost), else the input (failure). A run at one epsilon
    costs ``steps`` forward + backward passes and one forward pass (the last iterate) per image;
    the minimal-epsilon search (``epsilon=None``, see the module docstring) makes one run per
    epsilon tried. ``iterations`` counts gradient steps per image. ``return_last`` (with
    ``epsilon``): every image, the already misclassified too, is returned at its last iterate,
    adversarial or not: PGD's adversarial-training examples (Madry et al., 2018), the points of
    highest loss found in the ball rather than the inputs where the attack fails.
    """
