"""GSE: its operators against independent references (a brute-force scalar minimisation, a
hand-computed lambda update and patch count), and the attack's contract (inputs unmodified, box,
success = the model's verdict with kappa, batch = singles, counted passes)."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import CountingModel, count_passes, small_cnn

from strattack import gse
from strattack.attacks import GSE_IMAGENET, GSEConfig
from strattack.attacks.group_sparse import (gaussian_kernel, half_threshold,
                                            largest_active_lambda,
                                            lower_lambda_near_perturbation)
from strattack.solver.groups import nonzero_windows as nonzero_patches
from strattack.solver.losses import logit_margin

SMALL = dict(iterations=12, k_hat=5, search_steps=2, step_size=0.05, mu=0.1)


def brute_force_half(z: float, lam: float) -> float:
    """argmin_x (x - z)^2 + lam |x|^(1/2) on a grid fine enough for 1e-4."""
    span = abs(z) + 1.0
    x = torch.linspace(-span, span, 400_001, dtype=torch.float64)
    return x[((x - z) ** 2 + lam * x.abs().sqrt()).argmin()].item()


@pytest.mark.parametrize("z,lam", [(1.3, 0.5), (-0.7, 0.2), (0.2, 0.5), (-2.0, 1.5),
                                   (0.05, 0.01), (3.0, 0.0), (0.0, 1.0), (-0.4, 0.9)])
def test_half_thresholding_is_the_scalar_minimiser(z, lam):
    threshold = 54 ** (1 / 3) / 4 * lam ** (2 / 3)
    assert abs(abs(z) - threshold) > 1e-3                 # two minimisers exactly there
    got = half_threshold(torch.tensor([z], dtype=torch.float64), lam).item()
    assert got == pytest.approx(brute_force_half(z, lam), abs=1e-4)


def test_half_thresholding_keeps_exactly_the_entries_above_the_threshold():
    z = torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.3, 2.0], dtype=torch.float64)
    lam = torch.tensor(0.4, dtype=torch.float64)
    threshold = 54 ** (1 / 3) / 4 * 0.4 ** (2 / 3)        # 0.4127
    out = half_threshold(z, lam)
    assert torch.equal(out != 0, z.abs() > threshold)
    assert torch.all(out.abs() <= z.abs()) and torch.all(out * z >= 0)   # shrinks, keeps sign


def test_the_largest_active_lambda_separates_zero_and_non_zero_first_steps():
    grad = torch.tensor([[[[0.3, -2.0], [0.5, 0.0]]]], dtype=torch.float64)
    sigma = 0.1
    lam = largest_active_lambda(grad, sigma)
    for factor, nonzero in ((0.999, True), (1.001, False)):
        first = half_threshold(sigma * grad, sigma * lam * factor)
        assert bool(first.abs().sum() > 0) is nonzero


def test_lambda_update_by_hand():
    """One perturbed pixel in a 7x7 image: its 5x5 neighbourhood's lambda is divided by
    1 + (Gaussian weight at that offset), every other pixel's by q."""
    delta = torch.zeros(1, 2, 7, 7, dtype=torch.float64)
    delta[0, 1, 3, 3] = 0.2                               # one channel is enough
    lam = torch.full((1, 1, 7, 7), 2.0, dtype=torch.float64)
    kernel = gaussian_kernel(5, 1.5, torch.float64, torch.device("cpu"))
    g = [math.exp(-0.5 * (d / 1.5) ** 2) for d in (-2, -1, 0, 1, 2)]
    w = [v / sum(g) for v in g]
    out = lower_lambda_near_perturbation(lam, delta, 0.25, kernel)
    for i in range(7):
        for j in range(7):
            if abs(i - 3) <= 2 and abs(j - 3) <= 2:
                expected = 2.0 / (1 + w[i - 1] * w[j - 1])
            else:
                expected = 2.0 / 0.25
            assert out[0, 0, i, j].item() == pytest.approx(expected, rel=1e-12), (i, j)


def test_patch_count_by_hand():
    """A 6x6 perturbation with pixels (0, 0) and (4, 5): of the 25 valid 2x2 windows, 1 and 2
    contain them (rows 3-4, column 4 for the second); of the 16 valid 3x3 windows, 1 and 2
    (rows 2-3, column 3)."""
    delta = torch.zeros(1, 3, 6, 6)
    delta[0, 0, 0, 0] = 0.1
    delta[0, 2, 4, 5] = -0.3
    assert nonzero_patches(delta, 2).item() == 1 + 2
    assert nonzero_patches(delta, 3).item() == 1 + 2
    assert nonzero_patches(torch.zeros(2, 1, 6, 6), 3).tolist() == [0, 0]


def _case(n: int = 3):
    """Targets: the runner-up class (reachable in this model) for all but the last image, whose
    target is its least likely class (out of reach: a failure)."""
    torch.manual_seed(0)
    model = small_cnn(1, 5, seed=0)
    x = torch.rand(n, 1, 8, 8)
    ranked = model(x).argsort(dim=1, descending=True)
    t = ranked[:, 1].clone()
    t[-1] = ranked[-1, -1]
    return model, x, t, ranked[:, 0]


def test_gse_keeps_its_contract():
    model, x, t, y = _case()
    before = x.clone()
    for kappa in (0.0, 0.5):
        r = gse(model, x, t, targeted=True, true_labels=y, confidence=kappa, **SMALL)
        assert torch.equal(x, before)
        assert r.adv.min() >= 0 and r.adv.max() <= 1 and r.adv.dtype == x.dtype
        with torch.no_grad():
            margin = logit_margin(model(r.adv), t, True)
        assert torch.equal(r.success, margin <= -kappa) and r.success[:-1].all()
        assert torch.equal(r.adv[~r.success], x[~r.success])


def test_a_batch_gives_what_the_images_give_one_by_one():
    model, x, t, _ = _case(3)
    batch = gse(model.double(), x.double(), t, targeted=True, **SMALL)
    for i in range(3):
        one = gse(model.double(), x[i:i + 1].double(), t[i:i + 1], targeted=True, **SMALL)
        assert torch.equal(one.adv[0], batch.adv[i]) and one.success[0] == batch.success[i]


def test_passes_are_counted_as_the_model_sees_them():
    model, x, t, _ = _case(2)
    seen = count_passes(model)
    r = gse(model, x, t, targeted=True, **SMALL)
    assert r.forward_passes.sum().item() == seen["fwd"]
    assert r.backward_passes.sum().item() == seen["bwd"]


def test_bad_settings_are_refused_before_any_model_pass():
    model, x, t, _ = _case(2)
    counting = CountingModel(model)
    with pytest.raises(ValueError, match=r"gse: q must be in \(0, 1\)"):
        gse(counting, x, t, targeted=True, q=1.5)
    with pytest.raises(ValueError, match="gse: blur_size must be an odd integer"):
        gse(counting, x, t, targeted=True, blur_size=4)
    assert counting.calls == 0


def test_the_imagenet_preset_is_the_authors_imagenet_settings_in_unit_range():
    assert gse.configure(preset="imagenet") == GSE_IMAGENET
    # [-1, 1] -> [0, 1]: mu x 4, sigma / 4 (delta' = 2 delta, the gradient halves)
    assert (GSE_IMAGENET.mu, GSE_IMAGENET.step_size, GSE_IMAGENET.q) == (0.1 * 4, 0.05 / 4, 0.9)
    assert (GSEConfig().mu, GSEConfig().step_size, GSEConfig().q) == (1.0 * 4, 0.005 / 4, 0.25)
