"""The solver core against independent references: brute force, optimality conditions, and a
naive copy-per-group ADMM written literally from eqs. (10)-(12), (15), (17)-(18), (21)-(22)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from strattack.solver.admm import sparse_support
from strattack.solver.admm import ADMMParams, RefineADMM, StructuredADMM, feasible_bounds
from strattack.solver.groups import GroupSpec, block_soft_threshold



@pytest.fixture(autouse=True)
def float64_default():
    """Exact comparisons in float64, without leaking the default dtype into other test files."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def group_index_sets(c: int, h: int, w: int, r: int, s: int) -> list[np.ndarray]:
    """Flat indices of every group G_{p,q}, written with plain loops (reference for unfold)."""
    sets = []
    for p in range((h - r) // s + 1):
        for q in range((w - r) // s + 1):
            idx = [ch * h * w + (p * s + i) * w + (q * s + j)
                   for ch in range(c) for i in range(r) for j in range(r)]
            sets.append(np.array(idx))
    return sets


@pytest.mark.parametrize("c,h,w,r,s", [(1, 6, 6, 2, 2), (3, 7, 5, 3, 2), (2, 5, 5, 3, 1),
                                       (1, 28, 28, 3, 2), (3, 8, 8, 8, 8)])
def test_groups_match_loops(c, h, w, r, s):
    spec = GroupSpec(c, h, w, r, s)
    sets = group_index_sets(c, h, w, r, s)
    assert spec.num_groups == len(sets)
    x = torch.randn(2, c, h, w)
    flat = x.flatten(1).numpy()
    norms = np.stack([np.linalg.norm(flat[:, g], axis=1) for g in sets], axis=1)
    np.testing.assert_allclose(spec.norms(x).numpy(), norms, rtol=1e-12)
    np.testing.assert_allclose(spec.penalty(x).numpy(), norms.sum(1), rtol=1e-12)
    cover = np.zeros(c * h * w)
    for g in sets:
        cover[g] += 1
    np.testing.assert_array_equal(spec.coverage(x).flatten().numpy(), cover)
    assert spec.overlapping == (s < r)
    if s == r:
        assert cover.max() == 1


@pytest.mark.parametrize("c,h,w,r,s", [(1, 8, 8, 2, 2), (3, 7, 9, 3, 2), (2, 6, 6, 3, 1),
                                       (1, 28, 28, 3, 2), (3, 29, 30, 13, 13), (1, 5, 5, 1, 1)])
def test_unfold_fold_match_torch_im2col(c, h, w, r, s):
    spec = GroupSpec(c, h, w, r, s)
    x = torch.randn(2, c, h, w)
    torch.testing.assert_close(spec.unfold(x), F.unfold(x, r, stride=s), rtol=0, atol=0)
    cols = torch.randn(2, c * r * r, spec.num_groups)
    torch.testing.assert_close(spec.fold(cols), F.fold(cols, (h, w), r, stride=s), rtol=1e-12, atol=1e-12)


def test_uncovered_pixels_are_the_last_rows_and_columns():
    spec = GroupSpec(1, 28, 28, 3, 2)       # groups start at 0, 2, ..., 24 and end at 26
    cov = spec.coverage(torch.zeros(1, 1, 28, 28))[0, 0]
    assert spec.rows == spec.cols == 13
    assert (cov[27, :] == 0).all() and (cov[:, 27] == 0).all()
    assert (cov[:27, :27] > 0).all()


@pytest.mark.parametrize("kwargs", [dict(size=5), dict(size=2, stride=3), dict(size=0)])
def test_group_spec_rejects_bad_shapes(kwargs):
    args = dict(channels=1, height=4, width=4, size=2, stride=2) | kwargs
    with pytest.raises(ValueError):
        GroupSpec(**args)


def test_block_soft_threshold_optimality_and_brute_force():
    gen = torch.Generator().manual_seed(0)
    cols = torch.randn(3, 4, 50, generator=gen) * torch.rand(3, 1, 50, generator=gen) * 3
    lam = torch.tensor([0.5, 1.0, 2.0])
    y = block_soft_threshold(cols, lam)
    for b in range(3):
        for i in range(50):
            c, yi, t = cols[b, :, i], y[b, :, i], lam[b]
            if yi.norm() > 0:   # gradient of t||y|| + 1/2||y - c||^2 vanishes
                torch.testing.assert_close(t * yi / yi.norm() + yi - c, torch.zeros(4), atol=1e-12, rtol=0)
            else:               # 0 in the subdifferential: ||c|| <= t
                assert c.norm() <= t + 1e-12
            # brute force: no random nearby point has a lower objective
            obj = lambda v: t * v.norm() + 0.5 * (v - c).pow(2).sum()
            trials = yi + 0.05 * torch.randn(200, 4, generator=gen)
            assert all(obj(v) >= obj(yi) - 1e-12 for v in trials)
    assert (block_soft_threshold(torch.zeros(1, 4, 3), 1.0) == 0).all()


def naive_admm(z0, grad_fn, sets, lo, hi, rho, gamma, tau, alpha, iters, copies):
    """Literal transcription of the paper on flat numpy vectors.

    copies = "one": Prop. 1 (a single y, eq. 12 and 15);
    copies = "full": Prop. 2 (one y_i in R^n per group, eqs. 17-18).
    Returns the list of (z, u, s, v) after each iteration.
    """
    n = z0.size
    z, u, s = z0.copy(), np.zeros(n), np.zeros(n)
    m = 1 if copies == "one" else len(sets)
    v = [np.zeros(n) for _ in range(m)]
    out = []
    for k in range(1, iters + 1):
        g = grad_fn(z)
        delta = rho / (rho + 2 * gamma) * (z - u / rho)
        w = np.clip(z - s / rho, lo, hi)
        ys = []
        for i in range(m):
            c = z - v[i] / rho
            y = c.copy()
            for j, d in enumerate(sets):
                if copies == "full" and j != i:
                    continue
                nrm = np.linalg.norm(c[d])
                y[d] = max(0.0, 1 - tau / (rho * nrm)) * c[d] if nrm > 0 else 0.0
            ys.append(y)
        eta = alpha * math.sqrt(k)
        sum_c = sum(ys[i] + v[i] / rho for i in range(m))
        z_new = (eta * z + rho * (delta + u / rho) + rho * (w + s / rho) + rho * sum_c - g) / (
            eta + 2 * rho + m * rho)
        u = u + rho * (delta - z_new)
        s = s + rho * (w - z_new)
        v = [v[i] + rho * (ys[i] - z_new) for i in range(m)]
        z = z_new
        out.append((z.copy(), u.copy(), s.copy(), [vi.copy() for vi in v]))
    return out


@pytest.mark.parametrize("c,h,w,r,s", [(1, 6, 6, 2, 2), (2, 6, 6, 3, 3), (1, 6, 6, 3, 1),
                                       (2, 7, 7, 3, 2), (1, 7, 6, 2, 1)])
def test_admm_iterates_match_naive_copy_per_group(c, h, w, r, s):
    gen = np.random.default_rng(1)
    n = c * h * w
    x0 = gen.uniform(0, 1, n)
    A = gen.normal(size=(n, n)) / n
    A = A @ A.T
    b = gen.normal(size=n) * 3
    grad_fn = lambda z: A @ z + b          # gradient of a smooth quadratic loss

    spec = GroupSpec(c, h, w, r, s)
    sets = group_index_sets(c, h, w, r, s)
    x = torch.from_numpy(x0).reshape(1, c, h, w)
    uncovered = spec.coverage(x) == 0
    lo, hi = feasible_bounds(x, 0.3, uncovered)
    params = ADMMParams(rho=1.0, gamma=1.0, tau=0.3, alpha=2.0)
    core = StructuredADMM(params, spec, lo, hi, "exact")
    ref = naive_admm(np.zeros(n), grad_fn, sets, lo.flatten().numpy(), hi.flatten().numpy(),
                     1.0, 1.0, 0.3, 2.0, 40, "full" if s < r else "one")

    st = core.init_state(torch.zeros_like(x))
    idx = torch.tensor([0])
    for k in range(1, 41):
        z = st["z"].flatten().numpy()
        grad = torch.from_numpy(grad_fn(z)).reshape(1, c, h, w)
        st = core.step(st, grad, k, idx)
        rz, ru, rs, rv = ref[k - 1]
        np.testing.assert_allclose(st["z"].flatten().numpy(), rz, atol=1e-5, rtol=0)
        np.testing.assert_allclose(st["u"].flatten().numpy(), ru, atol=1e-5, rtol=0)
        np.testing.assert_allclose(st["s"].flatten().numpy(), rs, atol=1e-5, rtol=0)
        v_cols = st["v"][0].numpy()                        # (C*r*r, PQ) in-group duals
        for i, d in enumerate(sets):
            ref_v = rv[i] if s < r else rv[0]
            np.testing.assert_allclose(v_cols[:, i], ref_v[d], atol=1e-5, rtol=0)
    assert np.abs(ref[-1][0]).max() > 1e-2                 # the iterates actually moved


def test_overlapping_exact_state_is_unfold_sized():
    spec = GroupSpec(3, 32, 32, 3, 1)
    x = torch.rand(2, 3, 32, 32)
    lo, hi = feasible_bounds(x, None)
    st = StructuredADMM(ADMMParams(), spec, lo, hi, "exact").init_state(torch.zeros_like(x))
    stored = sum(t.numel() for t in st.values())
    n = x.numel()
    assert stored <= 3 * n + 2 * n * 9 + 1                 # O(n r^2/S^2), not O(n * PQ)
    assert stored < n * spec.num_groups / 10


def test_tau_zero_allocates_no_group_block():
    x = torch.rand(1, 1, 6, 6)
    lo, hi = feasible_bounds(x, None)
    core = StructuredADMM(ADMMParams(tau=0.0), GroupSpec(1, 6, 6, 2, 2), lo, hi)
    st = core.init_state(torch.zeros_like(x))
    assert set(st) == {"z", "u", "s", "delta"}


def test_feasible_bounds_box_eps_and_fixed_zeros():
    x = torch.tensor([[[[0.0, 0.3, 0.95, 1.0]]]])
    keep = torch.tensor([[[[False, False, False, True]]]])
    lo, hi = feasible_bounds(x, 0.1, keep)
    torch.testing.assert_close(lo, torch.tensor([[[[0.0, -0.1, -0.1, 0.0]]]]))
    torch.testing.assert_close(hi, torch.tensor([[[[0.1, 0.1, 0.05, 0.0]]]]))


def test_sparse_support_matches_numpy_quantile():
    gen = torch.Generator().manual_seed(3)
    d = torch.randn(4, 1, 6, 6, generator=gen)
    d[d.abs() < 0.7] = 0
    d[3] = 0                                               # an image with no nonzero entry
    keep = sparse_support(d, 0.03)
    for i in range(3):
        vals = d[i].abs().flatten().numpy()
        sigma = np.quantile(vals[vals > 0], 0.03)
        np.testing.assert_array_equal(keep[i].flatten().numpy(), vals > sigma)
    assert not keep[3].any()


def test_refinement_keeps_the_fixed_support():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 1, 6, 6, generator=gen)
    support = torch.rand(2, 1, 6, 6, generator=gen) > 0.6
    lo, hi = feasible_bounds(x, None, ~support)
    core = RefineADMM(ADMMParams(), lo, hi, support.to(x.dtype))
    st = core.init_state(torch.randn(2, 1, 6, 6, generator=gen) * 0.1 * support)
    idx = torch.arange(2)
    for k in range(1, 30):
        st = core.step(st, torch.randn(2, 1, 6, 6, generator=gen), k, idx)
        assert (st["z"][~support] == 0).all() and (st["delta"][~support] == 0).all()
        assert (st["delta"] >= lo).all() and (st["delta"] <= hi).all()
    assert (st["delta"][support] != 0).any()


def test_refine_step_matches_closed_form():
    """(21)-(22) written out element-wise for one iteration."""
    x = torch.tensor([[[[0.2, 0.9, 0.5]]]])
    support = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    lo, hi = feasible_bounds(x, 0.5, support == 0)
    core = RefineADMM(ADMMParams(rho=2.0, gamma=0.5, alpha=3.0), lo, hi, support)
    st = {"z": torch.tensor([[[[-0.6, 0.4, 0.0]]]]), "u": torch.tensor([[[[0.2, -0.2, 0.0]]]])}
    g = torch.tensor([[[[1.0, -2.0, 5.0]]]])
    out = core.step(st, g, 4, torch.tensor([0]))
    a = st["z"] - st["u"] / 2.0
    scaled = 2.0 / (2.0 + 1.0) * a                          # rho/(2 gamma + rho) a
    delta = torch.tensor([[[[max(scaled[0, 0, 0, 0].item(), -0.2), min(scaled[0, 0, 0, 1].item(), 0.1), 0.0]]]])
    torch.testing.assert_close(out["delta"], delta)
    eta = 3.0 * 2.0
    z = (eta * st["z"] + 2.0 * (delta + st["u"] / 2.0) - g) / (eta + 2.0) * support
    torch.testing.assert_close(out["z"], z)
