"""The C&W per-image search on the loss constant c (used by cw_l2 and EAD).

The ADMM attacks have their own (:mod:`.admm_search`): it carries the ADMM state from one value
of c to the next and stops per window of iterations, where C&W restarts its optimiser at every
c and aborts on a stalled loss; both share the update rule :func:`update_const`.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

def update_const(const: Tensor, lower: Tensor, upper: Tensor, success: Tensor, todo: Tensor,
                 growth: float) -> tuple[Tensor, Tensor, Tensor]:
    """C&W binary-search rule per image: success -> c is an upper bound; failure -> a lower
    bound; next c = midpoint when an upper bound exists, else c * growth."""
    upper = torch.where(success & todo, torch.minimum(upper, const), upper)
    lower = torch.where(~success & todo, torch.maximum(lower, const), lower)
    new = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * growth)
    return torch.where(todo, new, const), lower, upper


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
