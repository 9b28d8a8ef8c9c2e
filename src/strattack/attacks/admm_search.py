"""The ADMM attacks' own loop: a per-image search on the loss constant c around an ADMM core.

One call runs N images as one batched computation with per-image constants, best-so-far
bookkeeping and early stopping (the lifecycle pieces of :mod:`.lifecycle`). Each ADMM iteration
costs one forward and one backward pass of the model on the images still active; a finished
image costs nothing more. Every ``check_every`` iterations (and at the last one) the feasible
candidate of the active images is run through the model once more (forward only) to see
whether it is adversarial.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import torch
from torch import Tensor

from ..solver.admm import State
from ..solver.losses import hinge, is_adversarial
from .const_search import update_const
from .tracking import AttackCall, BestSoFar, NearestMiss


class ADMMCore(Protocol):
    def init_state(self, init: Tensor) -> State: ...
    def point(self, st: State) -> Tensor: ...
    def step(self, st: State, grad: Tensor, k: int, idx: Tensor,
             eta_scale: Tensor | None = None) -> State: ...
    def candidate(self, st: State, idx: Tensor) -> Tensor: ...
    def projected_point(self, st: State, idx: Tensor) -> Tensor: ...
    def regularizer(self, delta: Tensor) -> Tensor: ...


SuccessRule = Literal["found", "improved"]


@dataclass(frozen=True)
class SearchSettings:
    """The schedule of one search on c, built from a validated
    :class:`~strattack.attacks.admm_config.ADMMConfig` (whose rules cover these fields)."""

    initial_const: float = 0.5
    search_steps: int = 5
    max_iterations: int = 200
    check_every: int = 5        # candidate check (one forward pass) every this many iterations
    patience: int | None = 40   # early stop: window (iterations) over which progress is measured
    tol: float = 1e-3           # early stop: minimal relative decrease of the objective per window
    const_growth: float = 10.0  # c *= this while no success has bounded c from above
    warm_start: bool = True     # False: the ADMM state (and k) restarts at every step
    success_rule: SuccessRule = "found"   # "improved": a step succeeds only if best l2 dropped
    iteration_growth: int = 0   # step j (from 0) runs max_iterations + j * iteration_growth
    rescue_steps: int = 0       # extra steps (c still growing) only for images with no success
    scale_eta: bool = False     # eta_k * max(1, c / initial_const): the z-step stays c-invariant
    z_candidate: bool = False   # also check z^k's projection while an image has no success

    def iterations_at(self, step: int) -> int:
        """ADMM iterations of search step ``step`` (0-based)."""
        return self.max_iterations + step * self.iteration_growth


# A fresh start for a search step when warm_start is False: the core and z^0 to restart from.
Restart = Callable[[], tuple[ADMMCore, Tensor]]


@dataclass
class SearchOutcome:
    upper: Tensor        # smallest c that gave success (inf if none)
    iterations: Tensor   # ADMM iterations run per image
    state: State


def window_end(k: int, last: int, patience: int | None) -> int:
    """Last iteration of the window that starts at k: the next early-stop point (a multiple of
    ``patience``) or ``last``."""
    if patience is None:
        return last
    return min(last, -(-k // patience) * patience)


def const_scale(const: Tensor, settings: SearchSettings, ndim: int) -> Tensor | None:
    """With ``scale_eta``: max(1, c / initial_const) per image, shaped to scale eta_k.

    The gradient term of the z-step (15) is c times the hinge's gradient while its denominator
    does not depend on c, so at the large c of a failing image the iterates swing (REPRODUCTION.md,
    Table 1's one MNIST failure). Scaling eta_k with c keeps the step's size at c's first value; below it, eta_k is
    the paper's."""
    if not settings.scale_eta:
        return None
    return (const / settings.initial_const).clamp_min(1.0).view(-1, *([1] * (ndim - 1)))


def offer_projected_point(call: AttackCall, core: ADMMCore, st: State, x0: Tensor, idx: Tensor,
                          stage: str, const: Tensor, best: BestSoFar) -> Tensor:
    """Check z^k's projection (one more forward pass) and keep it where it is adversarial and the
    image has no adversarial example yet (call it after this check's candidate was offered): a
    dense fallback, never preferred to a group-sparse success. Returns where it was kept."""
    missing = ~best.found[idx]
    point = core.projected_point(st, idx)
    with torch.no_grad():
        margin = call.margin(x0 + point, idx, stage)
    kept = is_adversarial(margin, call.confidence) & missing
    best.update(idx, point.flatten(1).norm(dim=1), point, const, candidate=kept)
    return kept


def stop_stalled(running: Tensor, idx: Tensor, window_best: Tensor, previous_best: Tensor,
                 tol: float) -> None:
    """Early stop per image: the objective at z^k has not decreased by a relative ``tol`` over
    the last window (a window minimum, robust to ADMM oscillations). Updates in place."""
    prev = previous_best[idx]
    stalled = torch.isfinite(prev) & (window_best[idx] > prev - tol * prev.abs())
    previous_best[idx] = window_best[idx]
    window_best[idx] = float("inf")
    running[idx[stalled]] = False


def constant_search(call: AttackCall, core: ADMMCore, settings: SearchSettings, stage: str, *,
                    active: Tensor, best: BestSoFar, init: Tensor | None = None,
                    const: Tensor | None = None, restart: Restart | None = None,
                    nearest: NearestMiss | None = None) -> SearchOutcome:
    """Binary search on c (per image) with an ADMM inner loop, for the images in ``active``;
    the adversarial candidates with the smallest l2 go to ``best``.

    Success in a step -> c becomes an upper bound; failure -> lower bound, or c *= const_growth
    while there is no upper bound (:func:`update_const`). The next c is the midpoint when both
    bounds exist. Success means an adversarial candidate was found in the step
    (``success_rule="found"``) or that the step lowered the image's best l2
    (``"improved"``, the authors' code). With ``warm_start`` the ADMM state is carried from one
    step to the next (eta_k restarts at k = 1); without, every step restarts from ``init`` (or
    from what ``restart()`` returns: a new core and z^0) with zero duals, as the authors' code.
    After ``search_steps``, up to ``rescue_steps`` more steps run for the images that have no
    adversarial example yet (an image is a failure only if all of them fail too), without early
    stop. ``nearest``, if given, keeps each image's closest non-adversarial candidate.
    """
    x0, confidence = call.x0, call.confidence
    n, device, dtype = x0.shape[0], x0.device, x0.dtype
    const = (torch.full((n,), settings.initial_const, dtype=dtype, device=device)
             if const is None else const.clone())
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, float("inf"))
    init_z = torch.zeros_like(x0) if init is None else init
    state = core.init_state(init_z)
    iterations = torch.zeros(n, dtype=torch.long, device=device)
    todo = active.clone()

    for step in range(settings.search_steps + settings.rescue_steps):
        if step >= settings.search_steps:
            # Rescue: the images without any adversarial example go on (c keeps growing, the
            # state warm); the others cost nothing more. One host sync per step.
            todo = todo & ~best.found
            if not todo.any():
                break
        if step > 0 and not settings.warm_start:
            core, fresh = restart() if restart is not None else (core, init_z)
            state = core.init_state(fresh)
        best_before = best.dist.clone()
        last = settings.iterations_at(step)
        # No early stop in a rescue step: at its large c the objective swings, and a stalled
        # window would end the step of exactly the images it is there for.
        patience = settings.patience if step < settings.search_steps else None
        running = todo.clone()
        step_success = torch.zeros(n, dtype=torch.bool, device=device)
        window_best = torch.full((n,), float("inf"), dtype=dtype, device=device)
        previous_best = torch.full((n,), float("inf"), dtype=dtype, device=device)
        k = 1
        while k <= last:
            # The active set only changes at the early-stop points (multiples of `patience`), so
            # a window between two of them runs on one fixed-shape gathered state: one gather and
            # one scatter per window instead of one per iteration (the same arithmetic).
            idx = running.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            start, end = k, window_end(k, last, patience)
            everyone = idx.numel() == n      # common case: no gather/scatter copies needed
            sub = state if everyone else state.gather(idx)
            x0_i, c = (x0, const) if everyone else (x0[idx], const[idx])
            lowest, found = window_best[idx], step_success[idx]
            eta_scale = const_scale(c, settings, x0.ndim)
            for k in range(k, end + 1):       # noqa: B020 (k continues after the window)
                z = core.point(sub)
                x = (x0_i + z).requires_grad_(True)
                with torch.enable_grad():
                    loss = c * hinge(call.margin(x, idx, stage), confidence)        # eq. (3)
                    grad, = torch.autograd.grad(loss.sum(), x)
                sub = core.step(sub, grad, k, idx, eta_scale)
                lowest = torch.minimum(lowest, loss.detach() + core.regularizer(z))
                if k % settings.check_every == 0 or k == last:
                    cand = core.candidate(sub, idx)
                    with torch.no_grad():
                        margin = call.margin(x0_i + cand, idx, stage)
                    adv = is_adversarial(margin, confidence)
                    best.update(idx, cand.flatten(1).norm(dim=1), cand, c, candidate=adv)
                    if nearest is not None:
                        nearest.update(idx, margin, cand, c, adv)
                    if settings.z_candidate:
                        adv = adv | offer_projected_point(call, core, sub, x0_i, idx, stage, c,
                                                          best)
                    found = found | adv
            iterations[idx] += end - start + 1
            window_best[idx], step_success[idx] = lowest, found
            if everyone:
                state = sub
            else:
                state.scatter_(idx, sub)
            if patience is not None and end % patience == 0:
                stop_stalled(running, idx, window_best, previous_best, settings.tol)
            k = end + 1
        if settings.success_rule == "improved":
            step_success &= best.dist < best_before
        const, lower, upper = update_const(const, lower, upper, step_success, todo,
                                           settings.const_growth)

    return SearchOutcome(upper=upper, iterations=iterations, state=state)
