"""str_attack end to end: closed-form linear cases, constraints, batching, and bad input."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from strattack import AttackResult, str_attack
from strattack.solver.groups import GroupSpec

from helpers import CountingModel, TwoClassLinear, count_passes, small_cnn

FAST = dict(binary_search_steps=3, max_iterations=60, refine_iterations=30)


def test_linear_model_supported_on_one_group_is_attacked_inside_that_group_only():
    torch.manual_seed(0)
    w = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    w[0, 0, 2:4, 4:6] = torch.tensor([[1.0, -2.0], [0.5, 1.5]])
    x0 = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 0.4 + 0.3
    b = -(x0.flatten(1) @ w.flatten()) - 0.4           # every image: class 0 with margin 0.4
    for i in range(3):
        model = TwoClassLinear(w, b[i].item())
        res = str_attack(model, x0[i:i + 1], torch.tensor([1]), targeted=True)
        assert res.success.all()
        d = res.perturbation[0, 0]
        outside = torch.ones_like(d, dtype=torch.bool)
        outside[2:4, 4:6] = False
        assert (d[outside] == 0).all()
        optimum = 0.4 / w.norm()
        assert d.norm() <= 1.25 * optimum
        assert d.norm() >= optimum * (1 - 1e-6)        # cannot beat the closed-form minimum


def test_untargeted_mode_flips_the_prediction():
    model = small_cnn(3)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(x).argmax(1)
    res = str_attack(model, x, pred, targeted=False)
    assert res.success.all()
    with torch.no_grad():
        assert (model(res.adv).argmax(1) != pred).all()


@settings(max_examples=12, deadline=None)
@given(c=st.sampled_from([1, 3]), h=st.integers(4, 9), w=st.integers(4, 9),
       r=st.integers(1, 4), s=st.integers(1, 4), eps=st.sampled_from([None, 0.05, 0.3]),
       targeted=st.booleans(), seed=st.integers(0, 1000), overlap=st.sampled_from(["exact", "group"]))
def test_constraints_hold_and_inputs_are_untouched(c, h, w, r, s, eps, targeted, seed, overlap):
    r = min(r, h, w)
    s = min(s, r)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, c, h, w, generator=gen)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0           # pixels on the box boundary
    labels = torch.randint(0, 5, (3,), generator=gen)
    model = small_cnn(c, seed=seed)
    before = x.clone()
    res = str_attack(model, x, labels, targeted=targeted, epsilon=eps, group_size=r, stride=s,
                     overlap=overlap, binary_search_steps=2, max_iterations=15, refine_iterations=10)
    assert isinstance(res, AttackResult)
    assert torch.equal(x, before)
    assert res.adv.shape == x.shape and res.adv.dtype == x.dtype and res.adv.device == x.device
    assert (res.adv >= 0).all() and (res.adv <= 1).all()
    if eps is not None:
        assert (res.perturbation.abs() <= eps).all()
    # pixels outside every group stay unperturbed
    uncovered = GroupSpec(c, h, w, r, s).coverage(x) == 0
    assert (res.perturbation[uncovered.expand_as(x)] == 0).all()
    with torch.no_grad():
        pred = model(res.adv).argmax(1)
    expected = pred == labels if targeted else pred != labels
    assert torch.equal(res.success, expected)


def test_batch_equals_single_runs():
    model = small_cnn(1, dtype=torch.float64, seed=3)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1, 2, 3])
    kw = dict(targeted=True, group_size=2, stride=2, **FAST)
    batch = str_attack(model, x, targets, **kw)
    for i in range(4):
        single = str_attack(model, x[i:i + 1], targets[i:i + 1], **kw)
        torch.testing.assert_close(single.adv[0], batch.adv[i], atol=1e-9, rtol=0)
        assert single.success[0] == batch.success[i]
        assert single.forward_passes[0] == batch.forward_passes[i]
        assert single.backward_passes[0] == batch.backward_passes[i]


def test_already_adversarial_images_cost_nothing():
    model = small_cnn(1)
    x = torch.rand(2, 1, 6, 6)
    with torch.no_grad():
        pred = model(x).argmax(1)
    res = str_attack(model, x, pred, targeted=True, **FAST)
    assert res.success.all() and (res.perturbation == 0).all()
    assert (res.backward_passes == 0).all() and (res.forward_passes == 2).all()


def test_pass_counts_match_model_hooks():
    model = small_cnn(1)
    seen = count_passes(model)
    x = torch.rand(3, 1, 8, 8)
    res = str_attack(model, x, torch.tensor([1, 2, 3]), targeted=True, **FAST)
    assert res.forward_passes.sum().item() == seen["fwd"]
    assert res.backward_passes.sum().item() == seen["bwd"]
    assert sum(v[0] for v in res.stages.values()) == seen["fwd"]


# --- bad input -------------------------------------------------------------------------------

def _ok():
    return small_cnn(1), torch.rand(2, 1, 6, 6), torch.tensor([1, 2])


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda m, x, y: (m, x[0], y), ValueError, "shape"),
    (lambda m, x, y: (m, (x * 255).to(torch.uint8), y), TypeError, "floating"),
    (lambda m, x, y: (m, x * 2, y), ValueError, r"\[0, 1\]"),
    (lambda m, x, y: (m, x - 0.5, y), ValueError, r"\[0, 1\]"),
    (lambda m, x, y: (m, x.masked_fill(x > 0.5, float("nan")), y), ValueError, "NaN"),
    (lambda m, x, y: (m, x, torch.tensor([1, 7])), ValueError, "class indices"),
    (lambda m, x, y: (m, x, torch.tensor([1, -1])), ValueError, "class indices"),
    (lambda m, x, y: (m, x, torch.tensor([1, 2, 3])), ValueError, "shape"),
    (lambda m, x, y: (m, x, torch.tensor([1.0, 2.0])), TypeError, "integer"),
    (lambda m, x, y: (lambda t: m(t)[:, None], x, y), ValueError, "logits"),
    (lambda m, x, y: (lambda t: m(t)[0], x, y), ValueError, "logits"),
    (lambda m, x, y: (lambda t: "cat", x, y), TypeError, "logits"),
    (lambda m, x, y: ("model", x, y), TypeError, "callable"),
])
def test_bad_input_is_rejected_before_any_work(mutate, exc, match):
    model, x, y = mutate(*_ok())
    counting = CountingModel(model)
    with pytest.raises(exc, match=match):
        str_attack(counting if callable(model) else model, x, y, targeted=True)
    assert counting.calls <= 1                          # at most the validation forward pass


def test_target_equal_to_true_label_is_rejected():
    model, x, _ = _ok()
    with pytest.raises(ValueError, match="target equals the true label"):
        str_attack(model, x, torch.tensor([1, 2]), targeted=True, true_labels=torch.tensor([0, 2]))


@pytest.mark.parametrize("kwargs", [dict(group_size=7), dict(group_size=2, stride=7),
                                    dict(group_size=0), dict(epsilon=0.0), dict(epsilon=-1.0),
                                    dict(rho=0.0), dict(tau=-1.0), dict(overlap="bogus"),
                                    dict(refine_quantile=1.0), dict(initial_const=0.0),
                                    dict(group_size=2, stride=3), dict(distortion="l0")])
def test_bad_parameters_are_rejected_before_any_model_call(kwargs):
    model, x, y = _ok()
    counting = CountingModel(model)
    with pytest.raises(ValueError):
        str_attack(counting, x, y, targeted=True, **kwargs)
    assert counting.calls == 0
