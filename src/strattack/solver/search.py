"""Batched driver: per-image binary search on the loss constant c around an ADMM core.

One call runs N images as one batched computation with per-image constants, best-so-far
bookkeeping and early stopping. Each ADMM iteration costs one forward and one backward pass of
the model on the images still active; a finished image costs nothing more. Every
``check_every`` iterations (and at the last one) the feasible candidate of the active images is
run through the model once more (forward only) to see whether it is adversarial.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import Tensor

from .admm import State
from .losses import cw_loss, is_adversarial, logit_margin

Model = Callable[[Tensor], Tensor]


class ADMMCore(Protocol):
    def init_state(self, init: Tensor) -> State: ...
    def point(self, st: State) -> Tensor: ...
    def step(self, st: State, grad: Tensor, k: int, idx: Tensor) -> State: ...
    def candidate(self, st: State, idx: Tensor) -> Tensor: ...
    def regularizer(self, delta: Tensor) -> Tensor: ...


@dataclass
class PassCounter:
    """Model forward/backward passes per image (one image through the model = one pass)."""

    forward: Tensor
    backward: Tensor
    stages: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def zeros(cls, n: int, device: torch.device) -> "PassCounter":
        z = torch.zeros(n, dtype=torch.long, device=device)
        return cls(z, z.clone())

    def add(self, idx: Tensor, stage: str, backward: bool) -> None:
        self.forward[idx] += 1
        totals = self.stages.setdefault(stage, [0, 0])
        totals[0] += int(idx.numel())
        if backward:
            self.backward[idx] += 1
            totals[1] += int(idx.numel())


@dataclass(frozen=True)
class SearchSettings:
    initial_const: float = 0.5
    search_steps: int = 5
    max_iterations: int = 200
    check_every: int = 5        # candidate check (one forward pass) every this many iterations
    patience: int = 40          # early stop: window (iterations) over which progress is measured
    tol: float = 1e-3           # early stop: minimal relative decrease of the objective per window
    const_growth: float = 10.0  # c *= this while no success has bounded c from above

    def __post_init__(self) -> None:
        if not self.initial_const > 0:
            raise ValueError(f"initial_const must be > 0, got {self.initial_const}")
        for name in ("search_steps", "max_iterations", "check_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class Best:
    """Best adversarial perturbation so far per image (smallest l2)."""

    delta: Tensor
    l2: Tensor
    const: Tensor

    @classmethod
    def empty(cls, like: Tensor) -> "Best":
        n = like.shape[0]
        inf = torch.full((n,), float("inf"), dtype=like.dtype, device=like.device)
        return cls(torch.zeros_like(like), inf, inf.clone())

    @property
    def found(self) -> Tensor:
        return torch.isfinite(self.l2)


@dataclass
class SearchOutcome:
    best: Best
    upper: Tensor        # smallest c that gave success (inf if none)
    iterations: Tensor   # ADMM iterations run per image
    state: State


def constant_search(model: Model, inputs: Tensor, labels: Tensor, targeted: bool,
                    confidence: float, core: ADMMCore, settings: SearchSettings,
                    counter: PassCounter, stage: str, *, active: Tensor,
                    init: Tensor | None = None, best: Best | None = None,
                    const: Tensor | None = None) -> SearchOutcome:
    """Binary search on c (per image) with an ADMM inner loop, for the images in ``active``.

    Success in a step -> c becomes an upper bound; failure -> lower bound, or c *= const_growth
    while there is no upper bound. The next c is the midpoint when both bounds exist. The ADMM
    state is warm-started from one step to the next (eta_k restarts at k = 1).
    """
    n = inputs.shape[0]
    device, dtype = inputs.device, inputs.dtype
    if best is None:
        best = Best.empty(inputs)
    if const is None:
        const = torch.full((n,), settings.initial_const, dtype=dtype, device=device)
    else:
        const = const.clone()
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, float("inf"))
    state = core.init_state(torch.zeros_like(inputs) if init is None else init)
    iterations = torch.zeros(n, dtype=torch.long, device=device)
    todo = active.clone()

    for _ in range(settings.search_steps):
        running = todo.clone()
        step_success = torch.zeros(n, dtype=torch.bool, device=device)
        window_best = torch.full((n,), float("inf"), dtype=dtype, device=device)
        previous_best = torch.full((n,), float("inf"), dtype=dtype, device=device)
        for k in range(1, settings.max_iterations + 1):
            idx = running.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            everyone = idx.numel() == n      # common case: no gather/scatter copies needed
            sub = state if everyone else state.gather(idx)
            x0, lab, c = (inputs, labels, const) if everyone else (inputs[idx], labels[idx], const[idx])

            z = core.point(sub)
            x = (x0 + z).requires_grad_(True)
            with torch.enable_grad():
                margin = logit_margin(model(x), lab, targeted)
                loss = cw_loss(margin, c, confidence)
                grad, = torch.autograd.grad(loss.sum(), x)
            counter.add(idx, stage, backward=True)
            iterations[idx] += 1

            sub = core.step(sub, grad, k, idx)
            if everyone:
                state = sub
            else:
                state.scatter_(idx, sub)
            objective = loss.detach() + core.regularizer(z)

            if k % settings.check_every == 0 or k == settings.max_iterations:
                cand = core.candidate(sub, idx)
                with torch.no_grad():
                    cand_margin = logit_margin(model(x0 + cand), lab, targeted)
                counter.add(idx, stage, backward=False)
                adv = is_adversarial(cand_margin, confidence)
                l2 = cand.flatten(1).norm(dim=1)
                step_success[idx] |= adv
                better = adv & (l2 < best.l2[idx])
                b_idx = idx[better]
                best.delta[b_idx] = cand[better]
                best.l2[b_idx] = l2[better]
                best.const[b_idx] = c[better]

            # Early stop per image: the objective at z^k has not decreased by a relative `tol`
            # over the last `patience` iterations (a window minimum, robust to ADMM oscillations).
            window_best[idx] = torch.minimum(window_best[idx], objective)
            if k % settings.patience == 0:
                prev = previous_best[idx]
                stalled = torch.isfinite(prev) & (window_best[idx] > prev - settings.tol * prev.abs())
                previous_best[idx] = window_best[idx]
                window_best[idx] = float("inf")
                running[idx[stalled]] = False

        # Per-image constant update.
        succ = step_success & todo
        fail = ~step_success & todo
        upper = torch.where(succ, torch.minimum(upper, const), upper)
        lower = torch.where(fail, torch.maximum(lower, const), lower)
        bounded = torch.isfinite(upper)
        new_const = torch.where(bounded, (lower + upper) / 2, const * settings.const_growth)
        const = torch.where(todo, new_const, const)

    return SearchOutcome(best=best, upper=upper, iterations=iterations, state=state)
