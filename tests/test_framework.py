"""The general ADMM framework: pluggable D, optional group term, refinement for any D."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strattack import admm_attack, str_attack, str_attack_linf
from strattack.solver.admm import ADMMParams, RefineADMM, StructuredADMM, feasible_bounds
from strattack.solver.distortion import Distortion
from strattack.solver.groups import GroupSpec

from helpers import linear_case, small_cnn


@pytest.mark.parametrize("name", ["l2", "l1", "elastic"])
def test_delta_step_is_the_prox_by_grid_search(name):
    dist = Distortion(name, beta=0.7)
    grid = torch.linspace(-3, 3, 60001, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = float(torch.randn(1, generator=gen) * 1.5)
        gamma, rho = float(torch.rand(1, generator=gen) * 2), float(torch.rand(1, generator=gen) * 2 + 0.1)
        obj = gamma * dist.value(grid[:, None]) + rho / 2 * (grid - a) ** 2
        best = grid[obj.argmin()].item()
        got = dist.prox(torch.tensor([a], dtype=torch.float64), gamma, rho).item()
        assert abs(got - best) <= 1e-4


def test_tau_zero_matches_a_hand_written_ridge_admm():
    """tau = 0, D = l2: (10), (11) and (15) without the y-block (denominator eta + 2 rho)."""
    gen = np.random.default_rng(0)
    x0 = gen.uniform(0, 1, 16)
    A = gen.normal(size=(16, 16)) / 16
    A = A @ A.T
    b = gen.normal(size=16) * 2
    rho, gamma, alpha = 1.0, 0.5, 3.0
    lo, hi = np.maximum(-x0, -0.2), np.minimum(1 - x0, 0.2)
    z, u, s = np.zeros(16), np.zeros(16), np.zeros(16)
    x = torch.from_numpy(x0).reshape(1, 1, 4, 4)
    tlo, thi = feasible_bounds(x, 0.2)
    core = StructuredADMM(ADMMParams(rho=rho, gamma=gamma, tau=0.0, alpha=alpha),
                          GroupSpec(1, 4, 4, 2, 2), tlo, thi)
    st = core.init_state(torch.zeros_like(x))
    assert "v" not in st and "y" not in st
    for k in range(1, 31):
        g = A @ z + b
        delta = rho / (rho + 2 * gamma) * (z - u / rho)
        w = np.clip(z - s / rho, lo, hi)
        eta = alpha * math.sqrt(k)
        z_new = (eta * z + rho * (delta + u / rho) + rho * (w + s / rho) - g) / (eta + 2 * rho)
        u, s, z = u + rho * (delta - z_new), s + rho * (w - z_new), z_new
        grad = torch.from_numpy(A @ st["z"].flatten().numpy() + b).reshape(1, 1, 4, 4)
        st = core.step(st, grad, k, torch.tensor([0]))
        np.testing.assert_allclose(st["z"].flatten().numpy(), z, atol=1e-10)
        np.testing.assert_allclose(st["delta"].flatten().numpy(), delta, atol=1e-10)


def test_refinement_with_l1_distortion_keeps_support_and_bounds():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 5, 5, generator=gen, dtype=torch.float64)
    support = torch.rand(2, 1, 5, 5, generator=gen, dtype=torch.float64) > 0.5
    lo, hi = feasible_bounds(x, 0.3, ~support)
    core = RefineADMM(ADMMParams(gamma=0.2, distortion=Distortion("l1")), lo, hi, support.double())
    st = core.init_state(torch.zeros_like(x))
    for k in range(1, 20):
        st = core.step(st, torch.randn(2, 1, 5, 5, generator=gen, dtype=torch.float64) * 3, k, torch.arange(2))
        assert (st["delta"][~support] == 0).all() and (st["z"][~support] == 0).all()
        assert (st["delta"] >= lo).all() and (st["delta"] <= hi).all()


def test_l1_admm_finds_the_l1_minimal_perturbation_of_a_linear_model():
    model, x0, w = linear_case()
    res = admm_attack(model, x0, torch.tensor([1]), targeted=True, tau=0.0, distortion="l1",
                      gamma=0.05, refine=False, binary_search_steps=8)
    assert res.success.all()
    l1 = res.perturbation.abs().sum().item()
    optimum = 0.3 / w.abs().max().item()                     # all on the largest |w_i|
    assert optimum * (1 - 1e-6) <= l1 <= 1.25 * optimum
    assert (res.perturbation != 0).sum() <= 2


def test_l2_admm_without_groups_finds_the_l2_minimal_perturbation_of_a_linear_model():
    model, x0, w = linear_case()
    res = admm_attack(model, x0, torch.tensor([1]), targeted=True, tau=0.0, refine=False,
                      binary_search_steps=8)
    assert res.success.all()
    optimum = 0.3 / w.norm().item()
    assert optimum * (1 - 1e-6) <= res.perturbation.norm().item() <= 1.25 * optimum


def test_str_attack_linf_respects_the_budget_and_is_untargeted():
    model = small_cnn(1, seed=5)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        y = model(x).argmax(1)
    res = str_attack_linf(model, x, y, epsilon=0.3, binary_search_steps=3, max_iterations=60)
    assert (res.perturbation.abs() <= 0.3).all()
    with torch.no_grad():
        assert torch.equal(res.success, model(res.adv).argmax(1) != y)
    assert res.success.any()


def test_str_attack_requires_a_group_penalty():
    model, x0, _ = linear_case()
    with pytest.raises(ValueError, match="tau > 0"):
        str_attack(model, x0, torch.tensor([1]), targeted=True, tau=0.0)


def test_unknown_distortion_is_rejected():
    model, x0, _ = linear_case()
    with pytest.raises(ValueError, match="distortion"):
        admm_attack(model, x0, torch.tensor([1]), targeted=True, distortion="l0")
