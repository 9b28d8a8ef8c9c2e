"""Issue 17's solver levers beyond the paper: a z-step scaled with c, and z's projection as a
fallback candidate. Both are off by default; these tests pin what each one does."""
from __future__ import annotations

import pytest
import torch

from strattack import str_attack
from strattack.attacks import ADMMConfig
from strattack.attacks.admm_search import SearchSettings, const_scale
from strattack.solver.admm import (ADMMParams, RefineADMM, StructuredADMM, balance_rho,
                                   feasible_bounds)
from strattack.solver.groups import GroupSpec

from helpers import linear_case, small_cnn


def _random_structured_state(core: StructuredADMM, gen: torch.Generator, shape):
    st = core.init_state(torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.1)
    for k in ("u", "s", "v"):
        st[k] = torch.randn(st[k].shape, generator=gen, dtype=torch.float64) * 0.1
    return st


def test_eta_scale_is_a_per_image_alpha():
    """eta_k * s_i for image i is the paper's step with alpha * s_i: checked row by row against
    one-image cores built with that alpha (groups overlap, so y, v and the fold are exercised)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    lo, hi = feasible_bounds(x, 0.3)
    groups = GroupSpec(1, 6, 6, 3, 2)
    params = ADMMParams(tau=0.7, alpha=2.0)
    scale = torch.tensor([1.5, 4.0], dtype=torch.float64)
    core = StructuredADMM(params, groups, lo, hi)
    st = _random_structured_state(core, gen, x.shape)
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    out = core.step(st, grad, 3, torch.arange(2), scale.view(2, 1, 1, 1))
    for i in range(2):
        one = StructuredADMM(ADMMParams(tau=0.7, alpha=2.0 * scale[i].item()), groups,
                             lo[i:i + 1], hi[i:i + 1])
        ref = one.step(st.gather(torch.tensor([i])), grad[i:i + 1], 3, torch.tensor([0]))
        for key in ("z", "u", "s", "v", "y"):
            torch.testing.assert_close(out[key][i:i + 1], ref[key], rtol=0, atol=1e-12)


def test_eta_scale_in_the_refinement_is_a_per_image_alpha():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 5, 5, generator=gen, dtype=torch.float64)
    support = torch.rand(x.shape, generator=gen, dtype=torch.float64) > 0.4
    lo, hi = feasible_bounds(x, 0.3, ~support)
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    core = RefineADMM(ADMMParams(gamma=0.3), lo, hi, support.double())
    st = core.init_state(torch.randn(x.shape, generator=gen, dtype=torch.float64) * 0.1 * support)
    out = core.step(st, grad, 2, torch.arange(2), torch.tensor([2.0, 3.0]).double().view(2, 1, 1, 1))
    for i, s in enumerate((2.0, 3.0)):
        one = RefineADMM(ADMMParams(gamma=0.3, alpha=5.0 * s), lo[i:i + 1], hi[i:i + 1],
                         support[i:i + 1].double())
        ref = one.step(st.gather(torch.tensor([i])), grad[i:i + 1], 2, torch.tensor([0]))
        torch.testing.assert_close(out["z"][i:i + 1], ref["z"], rtol=0, atol=1e-12)


def test_const_scale_is_one_up_to_the_first_c_and_c_over_c0_above():
    c = torch.tensor([0.1, 0.5, 5.0, 50.0])
    assert const_scale(c, SearchSettings(initial_const=0.5), 4) is None
    got = const_scale(c, SearchSettings(initial_const=0.5, scale_eta=True), 4)
    assert got.shape == (4, 1, 1, 1)
    assert got.flatten().tolist() == [1.0, 1.0, 10.0, 100.0]


def test_scale_eta_changes_nothing_while_c_never_grows_and_acts_once_it_does():
    model, x0, _ = linear_case()
    target = torch.tensor([1])
    base = dict(targeted=True, binary_search_steps=3, max_iterations=60)
    # From c0 = 5 the first step succeeds, so c only falls below c0: the same run.
    easy = [str_attack(model, x0, target, initial_const=5.0, scale_eta=s, **base) for s in (False, True)]
    assert easy[0].success.all()
    assert torch.equal(easy[0].adv, easy[1].adv)
    # From c0 = 1e-3 the first steps fail and c grows 10x each time: now the steps differ.
    hard = [str_attack(model, x0, target, initial_const=1e-3, scale_eta=s, refine=False, **base)
            for s in (False, True)]
    assert not torch.equal(hard[0].adv, hard[1].adv)


def test_z_candidate_rescues_an_image_whose_group_sparse_candidate_never_fools():
    """With a group penalty so large that every group is thresholded to 0, the y-candidate is
    always 0 (never adversarial); z still follows the gradient, and its projection fools the
    model. The fallback is feasible (box) and counted in the model passes."""
    model, x0, _ = linear_case()
    target = torch.tensor([1])
    kw = dict(targeted=True, tau=1e6, binary_search_steps=3, max_iterations=60, refine=False,
              initial_const=50.0)
    plain = str_attack(model, x0, target, **kw)
    fallback = str_attack(model, x0, target, z_candidate=True, **kw)
    assert not plain.success.any()
    assert fallback.success.all()
    assert ((fallback.adv >= 0) & (fallback.adv <= 1)).all()
    # one forward pass per check (every 5th iteration, 60 per step), two with the fallback
    for result, per_check in ((plain, 1), (fallback, 2)):
        forward, backward = result.stages["admm"]
        assert backward == result.iterations.item()
        assert forward - backward == per_check * result.iterations.item() // 5


def test_z_candidate_never_replaces_a_group_sparse_success():
    model = small_cnn(1, seed=3)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        target = (model(x).argmax(1) + 1) % 5
    kw = dict(targeted=True, binary_search_steps=2, max_iterations=40)
    plain = str_attack(model, x, target, **kw)
    fallback = str_attack(model, x, target, z_candidate=True, **kw)
    assert plain.success.all()
    assert torch.equal(plain.adv, fallback.adv)


def test_balance_rho_doubles_halves_or_keeps():
    rho = torch.tensor([1.0, 1.0, 1.0, 4.0])
    primal = torch.tensor([11.0, 1.0, 5.0, 0.1])
    dual = torch.tensor([1.0, 11.0, 1.0, 2.0])
    assert balance_rho(rho, primal, dual).tolist() == [2.0, 0.5, 1.0, 2.0]


def test_adaptive_rho_steps_each_image_with_its_own_rho_then_balances():
    """Row i of a step with per-image rho R_i is the fixed-rho step with rho = R_i; the new rho
    follows the residuals computed here by hand (primal ||(delta, w, y) - z'||, dual
    R_i ||z' - z|| sqrt(3): blocks delta, w and one y)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    lo, hi = feasible_bounds(x, 0.3)
    groups = GroupSpec(1, 6, 6, 2, 2)
    core = StructuredADMM(ADMMParams(tau=0.7, adaptive_rho=True), groups, lo, hi)
    st = _random_structured_state(core, gen, x.shape)
    # image 0: a tiny rho against the random duals (primal residual >> dual: rho doubles);
    # image 1: a large rho, zero duals and a large gradient (dual >> primal: rho halves)
    st["rho"] = torch.tensor([0.01, 100.0], dtype=torch.float64).view(2, 1, 1, 1)
    for key in ("u", "s", "v"):
        st[key][1] = 0
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64) * 4
    out = core.step(st, grad, 2, torch.arange(2))
    assert out["rho"].flatten().tolist() == [0.02, 50.0]
    for i, r in enumerate((0.01, 100.0)):
        one = StructuredADMM(ADMMParams(tau=0.7, rho=r), groups, lo[i:i + 1], hi[i:i + 1])
        sub = st.gather(torch.tensor([i]))
        del sub["rho"]
        ref = one.step(sub, grad[i:i + 1], 2, torch.tensor([0]))
        for key in ("z", "u", "s", "v", "y"):
            torch.testing.assert_close(out[key][i:i + 1], ref[key], rtol=0, atol=1e-12)
        z, z_new = sub["z"], ref["z"]
        delta = r / (r + 2) * (z - sub["u"] / r)                       # (10), gamma = 1
        w = torch.clamp(z - sub["s"] / r, lo[i:i + 1], hi[i:i + 1])    # (11)
        primal = ((delta - z_new).square().sum() + (w - z_new).square().sum()
                  + (ref["y"] - groups.unfold(z_new)).square().sum()).sqrt()
        dual = r * (z_new - z).norm() * 3 ** 0.5
        want = 2 * r if primal > 10 * dual else r / 2 if dual > 10 * primal else r
        assert out["rho"][i].item() == want


def test_adaptive_rho_cannot_be_combined_with_rho_delta():
    with pytest.raises(ValueError, match="adaptive_rho"):
        ADMMConfig(rho_delta=2.0, adaptive_rho=True)


def test_str_attack_with_adaptive_rho_runs_batched_and_succeeds():
    model = small_cnn(1, seed=3)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        target = (model(x).argmax(1) + 1) % 5
    res = str_attack(model, x, target, targeted=True, adaptive_rho=True, binary_search_steps=2,
                     max_iterations=40)
    assert res.success.all()
    with torch.no_grad():
        assert (model(res.adv).argmax(1) == target).all()
