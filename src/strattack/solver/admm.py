"""Linearized ADMM for problem (2) and its refinement (20): every step closed-form.

Notation follows the paper (Sec. 3-4). The perturbation problem

    minimize  f(x0 + delta) + gamma * D(delta) + tau * g(delta)
    s.t.      x0 + delta in [0, 1]^n,  ||delta||_inf <= eps                            (2)

is split as (4) (or (16) with one copy y_i per group when groups overlap) with the consensus
variable z, and solved by

    delta-step (10), w-step (11), y-step (12)/(17), linearized z-step (15)/(18), duals (9)/(37).

Duals are kept unscaled, as in the paper (a = z - u/rho, ...).

Memory for overlapping groups (Prop. 2). The paper keeps PQ copies y_i in R^n. Outside its own
group D_i a copy is y_i = c_i = z^k - v_i/rho (eq. 17, second line), hence
c'_i = y_i + v_i/rho = z^k there, whatever v_i is. The outside parts of v_i therefore never
influence z, y or the in-group parts of v_i, and are not stored. Only the in-group parts
(an ``unfold``-sized (N, C*r*r, P*Q) tensor, O(n * r^2/S^2)) are kept, and

    sum_i c'_i = fold(in-group parts of c'_i) + (PQ - coverage) * z^k.

The same identity with one copy (PQ replaced by 1) is Prop. 1 when groups do not overlap.
``overlap="group"`` is a documented alternative (not in the paper): each copy only lives on its
own group (constraints y_i = z_{D_i}), which replaces PQ by the per-pixel coverage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from .distortion import Distortion
from .groups import GroupSpec, block_soft_threshold

OverlapMode = Literal["exact", "group"]


class State(dict):
    """Named per-image tensors (first dimension = image) that can be gathered and scattered."""

    def gather(self, idx: Tensor) -> "State":
        return State({k: v[idx] for k, v in self.items()})

    def scatter_(self, idx: Tensor, sub: "State") -> None:
        for k, v in sub.items():
            self[k][idx] = v


def feasible_bounds(inputs: Tensor, epsilon: float | None, keep_zero: Tensor | None = None
                    ) -> tuple[Tensor, Tensor]:
    """Per-entry bounds lo <= delta <= hi of h(w), eq. (5): box [0,1] and ||delta||_inf <= eps.

    keep_zero: boolean mask (broadcastable to inputs) of entries that must stay unperturbed
    (pixels outside every group, or S_sigma in the refinement (20)). 0 is always feasible since
    inputs are in [0, 1], so these bounds are never empty.
    """
    lo, hi = -inputs, 1 - inputs
    if epsilon is not None:
        lo, hi = lo.clamp_min(-epsilon), hi.clamp_max(epsilon)
    if keep_zero is not None:
        keep_zero = keep_zero.expand_as(inputs)
        lo = lo.masked_fill(keep_zero, 0.0)
        hi = hi.masked_fill(keep_zero, 0.0)
    return lo, hi


def eta(alpha: float, k: int, scale: Tensor | None = None) -> float | Tensor:
    """Bregman weight eta_k = alpha * sqrt(k) of the linearized z-step (14); k starts at 1.

    ``scale`` (per image, broadcastable to the iterate; not in the paper): eta_k * scale, e.g.
    scaled with the loss constant c so that the z-step, whose gradient term grows with c,
    does not grow with it (``scale_eta`` of the search)."""
    base = alpha * math.sqrt(k)
    return base if scale is None else base * scale


def compile_update(update: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """``update`` itself, or captured by ``torch.compile`` (one fused graph per iteration; shapes
    marked dynamic, since the number of active images changes between windows; eta_k, a Python
    float, is then a symbolic input, so a new k does not recompile). Not in the paper: an
    execution option (BENCHMARKS.md section 12)."""
    if not enabled:
        return update
    return torch.compile(update, dynamic=True, fullgraph=True)


def sparse_support(delta: Tensor, quantile: float) -> Tensor:
    """Complement of S_sigma (eq. 19) per image: |delta_j| > sigma, where sigma is the
    ``quantile`` (linear interpolation, as numpy) of |delta| over that image's nonzero entries.
    The paper writes delta*_j <= sigma; the magnitude is what is meant."""
    n = delta.shape[0]
    mag = delta.abs().flatten(1)
    count = (mag > 0).sum(dim=1)
    ordered = mag.masked_fill(mag == 0, float("inf")).sort(dim=1).values
    # The position in double precision whatever delta's dtype: float16 cannot count past 65,504
    # (count - 1 became inf, then an index of -2^63), and float32 only to 2^24.
    pos = quantile * (count - 1).clamp_min(0).double()
    lo_i = pos.floor().long()
    hi_i = pos.ceil().long()
    lo_v = ordered.gather(1, lo_i[:, None]).squeeze(1).double()
    hi_v = ordered.gather(1, hi_i[:, None]).squeeze(1).double()
    sigma = lo_v + (hi_v - lo_v) * (pos - lo_i.double())   # not rounded to delta's dtype
    sigma = torch.where(count > 0, sigma, torch.zeros_like(sigma))
    return (mag.double() > sigma[:, None]).reshape(n, *delta.shape[1:])


def balance_rho(rho: Tensor, primal: Tensor, dual: Tensor, mu: float = 10.0,
                factor: float = 2.0) -> Tensor:
    """Residual balancing (Boyd et al. 2011, eq. 3.13) per image: rho * factor where the primal
    residual exceeds mu times the dual one, rho / factor where the dual exceeds mu times the
    primal, else rho. With unscaled duals (ours) nothing else needs rescaling."""
    shape = rho.shape
    primal, dual = primal.reshape(shape), dual.reshape(shape)
    return torch.where(primal > mu * dual, rho * factor,
                       torch.where(dual > mu * primal, rho / factor, rho))


@dataclass(frozen=True)
class ADMMParams:
    """The constants of one ADMM problem; their ranges are the rules of
    :class:`~strattack.attacks.admm_config.ADMMConfig`, which builds them."""

    rho: float = 1.0      # penalty parameter of the augmented Lagrangian (6)
    gamma: float = 1.0    # weight of D(delta)
    tau: float = 2.0      # weight of the group sparsity g(delta)
    alpha: float = 5.0    # eta_k = alpha * sqrt(k), so eta_1 = 5 as in Appendix F
    distortion: Distortion = Distortion("l2")   # D: only the delta-step depends on it
    # Penalty of the block z = delta in (6) (None: rho, the paper). ADMM allows one penalty per
    # constraint; the authors' code weighs delta + u by 2*rho in the z-step (rho_delta = 2*rho).
    rho_delta: float | None = None
    # Residual balancing (Boyd et al. 2011, sec. 3.4.1; not in the paper): a per-image rho in the
    # state, doubled / halved when one residual exceeds the other 10-fold (main stage only).
    adaptive_rho: bool = False

    def delta_penalty(self, rho: float | Tensor) -> float | Tensor:
        """The penalty of the constraint z = delta: rho_delta, or ``rho`` (the current rho, per
        image with adaptive_rho) when it is None."""
        return rho if self.rho_delta is None else self.rho_delta


class StructuredADMM:
    """ADMM of Prop. 1 (non-overlapping groups) and Prop. 2 (overlapping groups).

    Holds the per-image constants (bounds) for all N images; methods act on a subset ``idx``.
    """

    def __init__(self, params: ADMMParams, groups: GroupSpec | None, lo: Tensor, hi: Tensor,
                 overlap: OverlapMode = "exact", compiled: bool = False) -> None:
        self.params = params
        self._update = compile_update(self._update_eager, compiled)
        # tau = 0 removes the y-block entirely: no copies, no duals v.
        self.groups = groups if params.tau > 0 else None
        self.lo, self.hi = lo, hi
        if self.groups is not None:
            self.coverage = self.groups.coverage(lo)
            if overlap == "group":
                self.copies = self.coverage                      # y_i only on D_i
            elif self.groups.overlapping:
                self.copies = float(self.groups.num_groups)      # Prop. 2: PQ full copies
            else:
                self.copies = 1.0                                # Prop. 1: one y
        if params.adaptive_rho:   # constraint blocks of z (delta, w, copies of y): dual residual
            copies = 0.0 if self.groups is None else self.copies
            self.blocks = 2.0 + (copies.mean().item() if isinstance(copies, Tensor) else copies)

    def init_state(self, init: Tensor) -> State:
        """z^0 = init, all duals 0 (y^0 needs no storage: it is computed before it is used)."""
        state = State(z=init.clone(), u=torch.zeros_like(init), s=torch.zeros_like(init))
        if self.params.adaptive_rho:
            state["rho"] = torch.full((init.shape[0],) + (1,) * (init.ndim - 1), self.params.rho,
                                      dtype=init.dtype, device=init.device)
        if self.groups is None:
            state["delta"] = init.clone()
        else:
            v = torch.zeros_like(self.groups.unfold(init))
            state.update(v=v, y=torch.zeros_like(v))
        return state

    def point(self, st: State) -> Tensor:
        """Where f is linearized: z^k."""
        return st["z"]

    def step(self, st: State, grad: Tensor, k: int, idx: Tensor,
             eta_scale: Tensor | None = None) -> State:
        """One ADMM iteration k -> k+1 given grad = nabla f(z^k + x0) (eta_k times
        ``eta_scale`` per image, see :func:`eta`)."""
        rho = st["rho"] if "rho" in st else self.params.rho   # per image with adaptive_rho
        e = eta(self.params.alpha, k, eta_scale)
        new, delta, w = self._update(st["z"], st["u"], st["s"], st.get("v"), grad, e, rho,
                                     self.lo[idx], self.hi[idx])
        new = State(new)
        if "rho" in st:
            new["rho"] = balance_rho(rho, *self.residuals(new, delta, w, st["z"], rho))
        return new

    def _update_eager(self, z: Tensor, u: Tensor, s: Tensor, v: Tensor | None, grad: Tensor,
                      e: float | Tensor, rho: float | Tensor, lo: Tensor, hi: Tensor
                      ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The arithmetic of one iteration on plain tensors (what ``compiled`` captures):
        the new state, and delta^{k+1}, w^{k+1} for the residuals."""
        p = self.params
        rho_d = p.delta_penalty(rho)                 # rho_d = rho in the paper
        delta = p.distortion.prox(z - u / rho_d, p.gamma, rho_d)             # (10)
        w = torch.clamp(z - s / rho, lo, hi)                                  # (11)
        numer = e * z + rho_d * (delta + u / rho_d) + rho * (w + s / rho) - grad  # (15)/(18)
        denom = e + (rho_d + rho)                    # = e + 2*rho exactly when rho_d = rho
        new: dict[str, Tensor] = {}
        if self.groups is not None:
            g = self.groups
            rho_cols = rho.reshape(-1, 1, 1) if isinstance(rho, Tensor) else rho  # (N, d, L) shapes
            y = block_soft_threshold(g.unfold(z) - v / rho_cols, p.tau / rho)   # (12)/(17)
            sum_c_prime = g.fold(y + v / rho_cols) + (self.copies - self.coverage) * z
            numer = numer + rho * sum_c_prime
            denom = denom + rho * self.copies
            z_new = numer / denom
            new.update(v=v + rho_cols * (y - g.unfold(z_new)), y=y)           # (37)
        else:
            z_new = numer / denom
            new["delta"] = delta
        new.update(z=z_new, u=u + rho_d * (delta - z_new), s=s + rho * (w - z_new))  # (9)
        return new, delta, w

    def residuals(self, new: State, delta: Tensor, w: Tensor, z: Tensor, rho: Tensor
                  ) -> tuple[Tensor, Tensor]:
        """Per image: the primal residual ||(delta, w, y) - z^{k+1}|| of the constraints (4)/(16)
        and the dual residual rho * ||z^{k+1} - z^k|| * sqrt(number of blocks)."""
        z_new = new["z"]
        primal = (delta - z_new).flatten(1).square().sum(1) + (w - z_new).flatten(1).square().sum(1)
        if self.groups is not None:   # the copies' in-group parts (outside, y_i - z is not kept)
            primal = primal + (new["y"] - self.groups.unfold(z_new)).flatten(1).square().sum(1)
        dual = rho.flatten() * (z_new - z).flatten(1).norm(dim=1) * math.sqrt(self.blocks)
        return primal.sqrt(), dual

    def candidate(self, st: State, idx: Tensor) -> Tensor:
        """The feasible group-sparse perturbation read off the iterate.

        No group term (tau = 0): delta^{k+1}, the variable that carries D's structure (sparse
        for an l1 D). Non-overlapping groups: y^{k+1} itself. Overlapping: the mean of the copies covering each
        pixel, set to 0 wherever a covering copy is 0 (at the ADMM fixed point every copy equals z,
        so a zero group forces its pixels to 0: the support of an overlapping group lasso is the
        complement of the union of its zero groups). Then projected on h (box, eps, uncovered = 0);
        the projection keeps zeros since 0 is always feasible.
        """
        if self.groups is None:
            perturbation = st["delta"]
        else:
            g = self.groups
            y = st["y"]
            mean = g.fold(y) / self.coverage.clamp_min(1)
            if g.overlapping:
                zero_group = (y == 0).all(dim=1, keepdim=True).to(y.dtype).expand_as(y)
                mean = mean.masked_fill(g.fold(zero_group) > 0, 0.0)
            perturbation = mean
        return torch.clamp(perturbation, self.lo[idx], self.hi[idx])

    def projected_point(self, st: State, idx: Tensor) -> Tensor:
        """z^k projected on h (box, eps, uncovered = 0): a dense second candidate."""
        return torch.clamp(st["z"], self.lo[idx], self.hi[idx])

    def regularizer(self, delta: Tensor) -> Tensor:
        """gamma * D(delta) + tau * g(delta) per image (the non-loss part of problem (2))."""
        p = self.params
        value = p.gamma * p.distortion.value(delta)
        if self.groups is not None:
            value = value + p.tau * self.groups.penalty(delta)
        return value


class RefineADMM:
    """ADMM of Prop. 3 for the refined problem (20) under a fixed support (S_sigma kept at 0).
    With D = ||.||^2, (21) is the clamp of rho/(2 gamma + rho) * a; another D uses its prox.

    lo/hi must already be 0 on S_sigma (see :func:`feasible_bounds`); ``support`` is the
    complement of S_sigma.
    """

    def __init__(self, params: ADMMParams, lo: Tensor, hi: Tensor, support: Tensor,
                 compiled: bool = False) -> None:
        self.params = params
        self.lo, self.hi = lo, hi
        self.support = support
        self._update = compile_update(self._update_eager, compiled)

    def init_state(self, init: Tensor) -> State:
        """Initialised at delta* (end of Prop. 3): z^0 = delta^0 = delta*, u^0 = 0."""
        return State(z=init.clone(), u=torch.zeros_like(init), delta=init.clone())

    def point(self, st: State) -> Tensor:
        return st["z"]

    def step(self, st: State, grad: Tensor, k: int, idx: Tensor,
             eta_scale: Tensor | None = None) -> State:
        e = eta(self.params.alpha, k, eta_scale)
        return State(self._update(st["z"], st["u"], grad, e, self.lo[idx], self.hi[idx],
                                  self.support[idx]))

    def _update_eager(self, z: Tensor, u: Tensor, grad: Tensor, e: float | Tensor, lo: Tensor,
                      hi: Tensor, support: Tensor) -> dict[str, Tensor]:
        p = self.params
        rho = p.rho
        delta = torch.clamp(p.distortion.prox(z - u / rho, p.gamma, rho), lo, hi)   # (21)
        z_new = ((e * z + rho * (delta + u / rho) - grad) / (e + rho)) * support     # (22)
        return {"z": z_new, "u": u + rho * (delta - z_new), "delta": delta}

    def candidate(self, st: State, idx: Tensor) -> Tensor:
        return st["delta"]

    def projected_point(self, st: State, idx: Tensor) -> Tensor:
        """z^k (0 on S_sigma) projected on the bounds."""
        return torch.clamp(st["z"], self.lo[idx], self.hi[idx])

    def regularizer(self, delta: Tensor) -> Tensor:
        return self.params.gamma * self.params.distortion.value(delta)
