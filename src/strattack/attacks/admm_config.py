"""The configuration of the ADMM attacks (:func:`~strattack.attacks.admm_attack`,
:func:`~strattack.attacks.str_attack`, :func:`~strattack.attacks.str_attack_linf`): every
keyword, its default (Appendix F's settings) and its one rule."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..solver.admm import OverlapMode
from ..solver.distortion import DistortionName
from ..validation import check_count, check_nonnegative, check_positive
from .admm_search import SuccessRule
from .config import AttackConfig


@dataclass(frozen=True)
class ADMMConfig(AttackConfig):
    """Problem (2) solved by linearized ADMM inside a per-image search on c, then refined by
    Prop. 3; the meaning of each field is documented on :func:`~strattack.attacks.admm_attack`.
    The defaults are Appendix F's (tau = 2, 5 x 200 iterations, refinement 2 x 100)."""

    epsilon: float | None = None
    confidence: float = 0.0
    group_size: int = 2
    stride: int = 2
    rho: float = 1.0
    gamma: float = 1.0
    tau: float = 2.0
    alpha: float = 5.0
    distortion: DistortionName = "l2"
    beta: float = 1e-3
    overlap: OverlapMode = "exact"
    initial_const: float = 0.5
    binary_search_steps: int = 5
    max_iterations: int = 200
    check_every: int = 5
    patience: int | None = 40
    tol: float = 1e-3
    refine: bool = True
    refine_quantile: float = 0.03
    refine_search_steps: int = 2
    refine_iterations: int = 100
    refine_gamma: float | None = None
    rho_delta: float | None = None
    const_growth: float = 10.0
    success_rule: SuccessRule = "found"
    warm_start: bool = True
    iteration_growth: int = 0
    refine_initial_const: float | None = None
    rescue_steps: int = 0
    refine_misses: bool = False
    scale_eta: bool = False
    z_candidate: bool = False
    adaptive_rho: bool = False
    compile_step: bool = False

    UNRECORDED_DEFAULTS: ClassVar[dict[str, object]] = {
        "scale_eta": False, "z_candidate": False, "adaptive_rho": False, "compile_step": False}
    #: StrAttack is the configuration with a group term: tau > 0 (tau = 0 is C&W-l2-like).
    NEEDS_GROUP_TERM: ClassVar[bool] = False

    def check(self) -> None:
        self._check_problem()
        self._check_search()
        self._check_refinement()

    def _check_problem(self) -> None:
        check_count("group_size", self.group_size)
        check_count("stride", self.stride)
        if self.epsilon is not None:
            check_positive("epsilon", self.epsilon)
        check_nonnegative("confidence", self.confidence)
        check_positive("rho", self.rho)
        check_nonnegative("gamma", self.gamma)
        self._check_tau()
        check_positive("alpha", self.alpha)
        check_nonnegative("beta", self.beta)
        if self.rho_delta is not None:
            check_positive("rho_delta", self.rho_delta)
        if self.adaptive_rho and self.rho_delta is not None:
            raise ValueError("adaptive_rho balances one rho; it cannot be combined with rho_delta")

    def _check_tau(self) -> None:
        if self.NEEDS_GROUP_TERM and not self.tau > 0:
            raise ValueError(f"StrAttack needs a group penalty tau > 0, got {self.tau}; "
                             "use admm_attack for tau = 0")
        check_nonnegative("tau", self.tau)

    def _check_search(self) -> None:
        check_positive("initial_const", self.initial_const)
        check_count("binary_search_steps", self.binary_search_steps)
        check_count("max_iterations", self.max_iterations)
        check_count("check_every", self.check_every)
        if self.patience is not None:
            check_count("patience", self.patience)
        check_nonnegative("tol", self.tol)
        if not self.const_growth > 1:
            raise ValueError(f"const_growth must be > 1, got {self.const_growth}")
        check_count("iteration_growth", self.iteration_growth, minimum=0)
        check_count("rescue_steps", self.rescue_steps, minimum=0)

    def _check_refinement(self) -> None:
        if not 0 <= self.refine_quantile < 1:
            raise ValueError(f"refine_quantile must be in [0, 1), got {self.refine_quantile}")
        if self.refine:
            check_count("refine_search_steps", self.refine_search_steps)
            check_count("refine_iterations", self.refine_iterations)
        if self.refine_gamma is not None:
            check_nonnegative("refine_gamma", self.refine_gamma)
        if self.refine_initial_const is not None:
            check_positive("refine_initial_const", self.refine_initial_const)


@dataclass(frozen=True)
class StrAttackConfig(ADMMConfig):
    """:class:`ADMMConfig` with a group term (tau > 0): StrAttack."""

    NEEDS_GROUP_TERM: ClassVar[bool] = True
