"""The general ADMM attack framework of Sec. 3 ("Generality").

One solver, problem (2), with pluggable pieces:
  * D(delta): ||.||_2^2 (eq. 10), ||.||_1 or the elastic net beta*||.||_1 + ||.||_2^2 (only the
    delta-step changes);
  * the group term tau*g(delta): optional; tau = 0 removes the y-block entirely;
  * the w-step: the box [0, 1] and an optional l_inf bound epsilon;
  * the refinement of Prop. 3 on the sigma-sparse support, for any D (optionally with its own
    gamma, e.g. gamma = 0 for the l_inf-bounded attack of Table 2).
C&W-l2-like (D = l2, tau = 0), EAD-like (D = elastic, tau = 0) and StrAttack (D = l2, tau > 0)
are configurations of :func:`admm_attack`.
"""
from __future__ import annotations

import shutil

import torch
from torch import Tensor

from ..result import AttackResult
from ..solver.admm import (ADMMParams, OverlapMode, RefineADMM, StructuredADMM, feasible_bounds,
                           sparse_support)
from ..solver.distortion import Distortion, DistortionName
from ..solver.groups import GroupSpec
from .admm_config import ADMMConfig
from .admm_search import SearchSettings, SuccessRule, constant_search
from .call import attack_function
from .presets import APP_F
from .tracking import AttackCall, BestSoFar, NearestMiss, Model


def admm_core(model: Model, inputs: Tensor, labels: Tensor, config: ADMMConfig, *,
              targeted: bool, true_labels: Tensor | None) -> AttackResult:
    """The work of :func:`admm_attack` for a validated ``config``: the search on c around the
    ADMM of Prop. 1/2, then the refinement of Prop. 3."""
    check_shapes(inputs, config)
    if config.compile_step:
        check_compiler(inputs.device)
    params = ADMMParams(rho=config.rho, gamma=config.gamma, tau=config.tau, alpha=config.alpha,
                        distortion=Distortion(config.distortion, config.beta),
                        rho_delta=config.rho_delta, adaptive_rho=config.adaptive_rho)
    # The refinement solves (20): no rho_delta block, one rho (Prop. 3).
    refine_params = params if config.refine_gamma is None else ADMMParams(
        rho=config.rho, gamma=config.refine_gamma, tau=config.tau, alpha=config.alpha,
        distortion=params.distortion)
    # Images: the groups are also used without a group term: the pixels they leave uncovered
    # stay fixed whatever tau is, so tau = 0 is the same problem. Other shapes (tau = 0): none.
    groups = (GroupSpec.for_inputs(inputs, config.group_size, config.stride)
              if inputs.ndim == 4 else None)
    call = AttackCall.start(model, inputs, labels, targeted, true_labels, config.confidence)
    x0, epsilon = call.x0, config.epsilon
    best = BestSoFar(x0, call.already)     # distance: l2; already adversarial: unchanged
    active = ~call.already

    uncovered = (groups.coverage(x0) == 0 if groups is not None
                 else torch.zeros((1,) * x0.ndim, dtype=torch.bool, device=x0.device))
    lo, hi = feasible_bounds(x0, epsilon, uncovered)
    core = StructuredADMM(params, groups, lo, hi, config.overlap, compiled=config.compile_step)
    nearest = NearestMiss(x0) if config.refine_misses else None
    iterations = constant_search(call, core, main_search(config), "admm", active=active,
                                 best=best, nearest=nearest).iterations
    if not config.refine:
        return best.result(call, epsilon, iterations)

    unrefined = best.adversarial(x0, epsilon)
    iterations = iterations + refine_stage(call, config, refine_params, best, nearest, active,
                                           uncovered)
    return best.result(call, epsilon, iterations, unrefined)


def check_shapes(inputs: Tensor, config: ADMMConfig) -> None:
    """The groups need images (N, C, H, W) no smaller than a group."""
    if inputs.ndim != 4 and config.tau > 0:
        raise ValueError(f"the group penalty (tau = {config.tau} > 0) needs images of shape "
                         f"(N, C, H, W), got inputs of shape {tuple(inputs.shape)}; tau = 0 (no "
                         "groups) takes any (N, ...)")
    if inputs.ndim == 4 and max(config.group_size, config.stride) > min(inputs.shape[2:]):
        raise ValueError(f"group size r={config.group_size} / stride S={config.stride} larger "
                         f"than the image ({inputs.shape[2]}x{inputs.shape[3]})")


def main_search(config: ADMMConfig) -> SearchSettings:
    return SearchSettings(initial_const=config.initial_const,
                          search_steps=config.binary_search_steps,
                          max_iterations=config.max_iterations, check_every=config.check_every,
                          patience=config.patience, tol=config.tol,
                          const_growth=config.const_growth, warm_start=config.warm_start,
                          success_rule=config.success_rule,
                          iteration_growth=config.iteration_growth,
                          rescue_steps=config.rescue_steps, scale_eta=config.scale_eta,
                          z_candidate=config.z_candidate)


def refine_search(config: ADMMConfig) -> SearchSettings:
    """The refinement's search: its own steps and iterations, success = found, no rescue."""
    return SearchSettings(initial_const=config.initial_const,
                          search_steps=config.refine_search_steps,
                          max_iterations=config.refine_iterations,
                          check_every=config.check_every, patience=config.patience,
                          tol=config.tol, const_growth=config.const_growth,
                          warm_start=config.warm_start, scale_eta=config.scale_eta,
                          z_candidate=config.z_candidate)


def refine_stage(call: AttackCall, config: ADMMConfig, params: ADMMParams, best: BestSoFar,
                 nearest: NearestMiss | None, active: Tensor, uncovered: Tensor) -> Tensor:
    """Prop. 3 for the images with an adversarial example (from the best one), then, with
    ``refine_misses``, for those without (from their closest miss). Returns the iterations."""
    x0, epsilon, compiled = call.x0, config.epsilon, config.compile_step
    settings = refine_search(config)
    to_refine = active & best.found
    misses = (active & ~best.found & torch.isfinite(nearest.margin)
              if nearest is not None else None)
    iterations = torch.zeros_like(best.found, dtype=torch.long)
    if to_refine.any():
        def refine_from_best() -> tuple[RefineADMM, Tensor]:
            """Prop. 3 on the support {|delta*| > sigma} (19) of the current best delta*,
            started at delta* restricted to it."""
            return refine_core_at(params, best.delta, x0, epsilon, uncovered,
                                  config.refine_quantile, compiled)

        refine_core, start = refine_from_best()
        first_const = (best.const if config.refine_initial_const is None
                       else torch.full_like(best.const, config.refine_initial_const))
        refined = constant_search(call, refine_core, settings, "refine", active=to_refine,
                                  best=best, init=start, restart=refine_from_best,
                                  const=torch.where(to_refine, first_const,
                                                    torch.ones_like(best.const)))
        iterations = iterations + refined.iterations
    if misses is not None and misses.any():
        iterations = iterations + refine_the_misses(call, params, settings, best, nearest,
                                                    misses, epsilon, uncovered,
                                                    config.refine_quantile, compiled)
    return iterations


def check_compiler(device: torch.device) -> None:
    """``compile_step`` on the CPU needs a C++ compiler (torch.compile generates C++ there):
    without one, say so before any work instead of failing inside the first iteration."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise ValueError("compile_step=True on the CPU needs a C++ compiler on PATH (c++, g++ "
                         "or clang++) for torch.compile; install one or leave compile_step off")


def refine_the_misses(call: AttackCall, params: ADMMParams, settings: SearchSettings,
                      best: BestSoFar, nearest: NearestMiss, misses: Tensor,
                      epsilon: float | None, uncovered: Tensor, quantile: float,
                      compiled: bool = False) -> Tensor:
    """Prop. 3 for the images the search never made adversarial: on the sigma-sparse support of
    their closest miss, started there, at the c it was met at. Returns the iterations run."""
    core, start = refine_core_at(params, nearest.delta, call.x0, epsilon, uncovered, quantile,
                                 compiled)
    outcome = constant_search(call, core, settings, "refine misses", active=misses, best=best,
                              init=start, restart=lambda: (core, start),
                              const=torch.where(misses, nearest.const,
                                                torch.ones_like(nearest.const)))
    return outcome.iterations


def refine_core_at(params: ADMMParams, delta: Tensor, x0: Tensor, epsilon: float | None,
                   uncovered: Tensor, quantile: float, compiled: bool = False
                   ) -> tuple[RefineADMM, Tensor]:
    """The Prop. 3 core on the support {|delta| > sigma} (19) of ``delta`` (minus the pixels no
    group covers), and its start: delta restricted to that support."""
    support = sparse_support(delta, quantile) & ~uncovered
    lo, hi = feasible_bounds(x0, epsilon, ~support)
    return RefineADMM(params, lo, hi, support.to(x0.dtype), compiled), delta * support


@attack_function(APP_F, admm_core)
def admm_attack(model: Model, inputs: Tensor, labels: Tensor, *,
               targeted: bool = False,
               confidence: float = 0.0,
               epsilon: float | None = None,
               group_size: int = 2,
               stride: int = 2,
               rho: float = 1.0,
               gamma: float = 1.0,
               tau: float = 2.0,
               alpha: float = 5.0,
               distortion: DistortionName = "l2",
               beta: float = 1e-3,
               overlap: OverlapMode = "exact",
               initial_const: float = 0.5,
               binary_search_steps: int = 5,
               max_iterations: int = 200,
               check_every: int = 5,
               patience: int | None = 40,
               tol: float = 1e-3,
               refine: bool = True,
               refine_quantile: float = 0.03,
               refine_search_steps: int = 2,
               refine_iterations: int = 100,
               refine_gamma: float | None = None,
               true_labels: Tensor | None = None,
               rho_delta: float | None = None,
               const_growth: float = 10.0,
               success_rule: SuccessRule = "found",
               warm_start: bool = True,
               iteration_growth: int = 0,
               refine_initial_const: float | None = None,
               rescue_steps: int = 0,
               refine_misses: bool = False,
               scale_eta: bool = False,
               z_candidate: bool = False,
               adaptive_rho: bool = False,
               compile_step: bool = False) -> AttackResult:
    """Adversarial attack by linearized ADMM on problem (2) (see the module docstring).

    Args:
        model: maps (N, C, H, W) inputs in [0, 1] to logits (N, K).
        inputs: images in [0, 1]; never modified.
        labels: target classes if ``targeted`` else true classes, (N,) integers.
        confidence: kappa of eq. (3).
        epsilon: optional l_inf bound on the perturbation (problem (2)); None = only the box.
        group_size, stride: r and S of the sliding mask; S < r gives overlapping groups.
        rho, gamma, tau, alpha: ADMM penalty, weight of D, weight of g (0: no group term), and
            eta_k = alpha*sqrt(k). Defaults are the paper's (Appendix F).
        distortion, beta: D = "l2" (||.||^2), "l1" or "elastic" (beta*||.||_1 + ||.||^2).
        overlap: "exact" = Prop. 2 with PQ copies of y; "group" = copies restricted to their group.
        initial_const, binary_search_steps, max_iterations: the per-image search on c.
        check_every: iterations between two checks of the feasible candidate (one forward pass).
        patience, tol: early stop when the objective decreased by less than ``tol`` (relative)
            over ``patience`` iterations; ``patience=None``: no early stop.
        refine, refine_quantile, refine_search_steps, refine_iterations: Prop. 3 refinement on
            the support {|delta*| > sigma}, sigma = the ``refine_quantile`` quantile of the nonzero
            |delta*| of each image (3% in the paper). refine_gamma: gamma used in the refinement
            (None: the same gamma; 0 gives problem (20) at gamma = 0, as in Table 2).
        true_labels: optional true classes, used in targeted mode to reject target == truth.

    Options beyond the paper (defaults: the behaviour without them), used by the authors'-code
    preset of :func:`str_attack`:
        rho_delta: penalty of the block z = delta in (6) (None: rho); the delta-step (10) and
            the z-step (15)/(18) use it for that block (main stage only).
        const_growth: c *= this after a failure while no success bounds c (C&W: 10).
        success_rule: "found" (a step succeeds if it found an adversarial candidate) or
            "improved" (only if it lowered the image's best l2; main stage only).
        warm_start: True carries the ADMM state across the steps of the search on c; False
            restarts every step from z = 0 with zero duals (and the refinement from the current
            best, on a support sigma recomputed from it: sigma is recomputed every round).
        iteration_growth: step j (from 0) of the main search runs
            max_iterations + j * iteration_growth iterations.
        refine_initial_const: c of the refinement's first step (None: each image's best c).
        rescue_steps: after the main search, up to this many more steps (c still growing) for
            the images with no adversarial example yet; the others cost nothing more.
        refine_misses: also run the refinement for the images the search never made
            adversarial, from their closest miss (the checked candidate of smallest margin), on
            its sigma-sparse support (for the l_inf-bounded attack: problem (20) at gamma = 0 on
            a support that already nearly fools the model).
        scale_eta: eta_k * max(1, c / initial_const) per image (a z-step whose size scales
            with c): the gradient term of (15) grows with c, its denominator does not, so at
            large c the iterates swing; False (default) is the paper's eta_k.
        z_candidate: at every check also run z^k projected on the constraints through the model
            (one more forward pass) and keep it while the image has no adversarial example
            (the projection of z as a second candidate): a dense fallback only.
        adaptive_rho: residual balancing (Boyd et al. 2011, sec. 3.4.1) in the main search: a
            per-image rho, doubled when the primal residual exceeds 10x the dual one, halved in
            the opposite case (the refinement keeps rho); not with ``rho_delta``.
        compile_step: run the arithmetic of each ADMM iteration (every step but the model's
            forward and backward pass) as one graph captured by ``torch.compile`` (fewer
            kernel launches per iteration on a GPU). The same formulas; the first call
            per shape pays the compilation (tens of seconds); needs a C++ compiler on the CPU.

    Pixels that no group covers (when (H - r) or (W - r) is not a multiple of S) are never
    perturbed, so every perturbed pixel belongs to a group.
    """
    ...
