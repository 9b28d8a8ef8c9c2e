"""Named keyword sets for :func:`~strattack.attacks.str_attack` (``preset=NAME``).

``"authors_code"``: the ImageNet settings of the authors' TensorFlow code (KaidiXu/StrAttack,
``l2_LADMMST_attack_v3.py`` run by ``test_attack_iclr.py``), written in our parameter names.
Their iteration keeps scaled duals (u <- u + delta - z) and

    delta = rho/(rho + 2 gamma) (z - u),      z = (eta z + 2 rho (delta + u) + rho (w + s)
                                                   + rho (y + v) - grad) / (eta + 4 rho)

with rho = 15, gamma = 2, tau = 3, eta_k = 5 sqrt(k). That is exactly ADMM on (6) with its own
penalty rho_delta = 2 rho = 30 on the block z = delta and gamma = 4 (30/(30 + 2*4) = 15/19, the
same delta-step), tau = 3, rho = 15 on the y- and w-blocks: the problem they solve weighs
D by 4 and g by 3 (tau : gamma = 0.75, not App. F's 2). The deviations that remain are listed in
README.md ("The authors'-code preset").
"""
from __future__ import annotations

import functools
import typing
from typing import Any, Callable, Literal, Mapping, TypeVar

PresetName = Literal["authors_code"]

AUTHORS_CODE: Mapping[str, Any] = {
    # ADMM (Prop. 1): their rho = 15, tau = 3, gamma = 2 with the 2*rho weight on delta + u.
    "rho": 15.0,
    "rho_delta": 30.0,
    "gamma": 4.0,
    "tau": 3.0,
    "alpha": 5.0,               # eta_k = 5 sqrt(k), k restarting at 1 every c-step
    "group_size": 13,           # their ImageNet mask (image_size > 32): 13x13, stride 13
    "stride": 13,
    "epsilon": 0.5,             # their w-step clips to [-ep, ep] with ep = 0.5 (eq. 11)
    # The search on c: 1, x5 while failing, then bisection; success = the best l2 improved.
    "initial_const": 1.0,
    "const_growth": 5.0,
    "success_rule": "improved",
    "warm_start": False,        # z, u, v, s (and k) reset at every c-step
    "binary_search_steps": 6,   # 2,000 + 1,000 * step iterations: 27,000 in all
    "max_iterations": 2000,
    "iteration_growth": 1000,
    "check_every": 1,           # the candidate y checked every iteration
    "patience": None,           # no early stop
    # Refinement (Prop. 3): 8 rounds of 400 iterations, c restarted at 5, each round from the
    # current best on sigma (3% quantile) recomputed from it; their delta-step factor
    # rho/(rho + gamma/100) is (21) with gamma = 2/200 = 0.01.
    "refine": True,
    "refine_search_steps": 8,
    "refine_iterations": 400,
    "refine_initial_const": 5.0,
    "refine_quantile": 0.03,
    "refine_gamma": 0.01,
    "rescue_steps": 0,          # they have none
}

PRESETS: Mapping[str, Mapping[str, Any]] = {"authors_code": AUTHORS_CODE}

F = TypeVar("F", bound=Callable[..., Any])


def preset_keywords(name: object) -> Mapping[str, Any]:
    """The keywords of preset ``name``; ValueError naming the known presets otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)} "
                         "(or None for no preset)")
    return PRESETS[name]


def with_presets(fn: F) -> F:
    """``fn(..., preset=NAME, **kw)`` runs with the preset's keywords under the explicit ones:
    a keyword given in the call overrides the preset's value. ``preset=None``: unchanged."""

    @functools.wraps(fn)
    def attack(*args: Any, **kwargs: Any) -> Any:
        name = kwargs.get("preset")
        if name is None:
            return fn(*args, **kwargs)
        return fn(*args, **{**preset_keywords(name), **kwargs})

    return typing.cast(F, attack)
