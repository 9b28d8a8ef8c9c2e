"""Baseline attacks (C&W l2 / l_inf, EAD, FGM, IFGSM): closed-form linear cases, budgets,
targeted / untargeted on a small CNN, batching, pass counts, untouched inputs, bad input."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from strattack import AttackResult, cw_l2, cw_linf, ead, fgm, ifgsm

from helpers import CountingModel, TwoClassLinear, count_passes, small_cnn

# Small settings that keep every test fast on a busy 2-core CPU.
CW_L2 = dict(binary_search_steps=5, max_iterations=150, initial_const=1.0)
CW_LINF = dict(max_iterations=100, initial_const=1.0, largest_const=8.0)
EAD = dict(binary_search_steps=5, max_iterations=150, initial_const=1.0)
SEARCH = dict(grid_steps=8, search_steps=10, rtol=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_problem(n: int = 4, seed: int = 0, dtype=torch.float64):
    """n images classified 0 by one linear model, margins in [0.2, ~1], optima off the box."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(1, 1, 4, 4, dtype=torch.float64, generator=gen).clamp(-1.5, 1.5)
    w[0, 0, 1, 2] = 4.0                               # one dominant weight (the l1 optimum)
    x0 = torch.rand(n, 1, 4, 4, dtype=torch.float64, generator=gen) * 0.4 + 0.3
    x0[:, 0, 1, 2] = 0.3                              # room to move the dominant pixel up
    s = x0.flatten(1) @ w.flatten()
    b = -(s.max().item() + 0.2)
    margin = -(s + b)
    model = TwoClassLinear(w, b)
    optima = {"l2": margin / w.norm(), "linf": margin / w.abs().sum(),
              "l1": margin / w.abs().max()}
    return model, x0.to(dtype), torch.ones(n, dtype=torch.long), optima


def assert_near_optimum(res: AttackResult, optimum: torch.Tensor, norm: str, factor: float):
    assert res.success.all()
    got = res.norms()[norm]
    assert (got <= factor * optimum).all(), (got / optimum)
    assert (got >= optimum - 1e-6).all(), (got / optimum)   # cannot beat the closed form


# --- closed-form linear cases ----------------------------------------------------------------

def test_cw_l2_reaches_the_l2_optimum_of_a_linear_model():
    model, x0, y, opt = linear_problem()
    res = cw_l2(model, x0, y, targeted=True, **CW_L2)
    assert_near_optimum(res, opt["l2"], "l2", 1.25)
    assert torch.isfinite(res.const).all() and (res.const > 0).all()


def test_cw_linf_reaches_the_linf_optimum_of_a_linear_model():
    model, x0, y, opt = linear_problem()
    res = cw_linf(model, x0, y, targeted=True, **CW_LINF)
    assert_near_optimum(res, opt["linf"], "linf", 1.25)


def test_ead_with_l1_decision_reaches_the_l1_optimum_of_a_linear_model():
    model, x0, y, opt = linear_problem()
    res = ead(model, x0, y, targeted=True, beta=0.05, decision="l1", **EAD)
    assert_near_optimum(res, opt["l1"], "l1", 1.25)
    # sparse: essentially only the dominant pixel moves
    d = res.perturbation.flatten(1).abs()
    assert (d[:, 6] >= 0.9 * d.sum(dim=1)).all()


def test_ead_decision_rules_select_from_the_same_iterates():
    """The decision rule only changes which adversarial iterate is kept, not the optimisation,
    so each rule's pick is the better one for its own distance."""
    model, x0, y, _ = linear_problem(seed=1)
    kw = dict(targeted=True, beta=0.01, **EAD)
    by_en, by_l1 = ead(model, x0, y, decision="en", **kw), ead(model, x0, y, decision="l1", **kw)
    assert by_en.success.all() and by_l1.success.all()
    torch.testing.assert_close(by_en.forward_passes, by_l1.forward_passes, rtol=0, atol=0)
    n_en, n_l1 = by_en.norms(), by_l1.norms()
    assert (n_l1["l1"] <= n_en["l1"] + 1e-12).all()
    en = lambda n: n["l2"] ** 2 + 0.01 * n["l1"]
    assert (en(n_en) <= en(n_l1) + 1e-12).all()


@pytest.mark.parametrize("attack", [fgm, ifgsm])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_minimal_epsilon_search_finds_the_optimum_of_a_linear_model(attack, norm):
    model, x0, y, opt = linear_problem()
    res = attack(model, x0, y, targeted=True, norm=norm, **SEARCH)
    # success is monotone in eps for a linear model: the bracket (lower, upper] holds the optimum
    assert_near_optimum(res, opt[norm], norm, 1 + 2 * SEARCH["rtol"])
    untargeted = attack(model, x0, torch.zeros_like(y), targeted=False, norm=norm, **SEARCH)
    assert_near_optimum(untargeted, opt[norm], norm, 1 + 2 * SEARCH["rtol"])


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_fgm_budget_succeeds_exactly_above_the_linear_optimum(loss):
    model, x0, y, opt = linear_problem()
    for norm in ("l2", "linf"):
        above = fgm(model, x0, y, targeted=True, norm=norm, loss=loss,
                    epsilon=1.001 * opt[norm].max().item())
        assert above.success.all()
        below = fgm(model, x0, y, targeted=True, norm=norm, loss=loss,
                    epsilon=0.999 * opt[norm].min().item())
        assert not below.success.any()
        assert torch.equal(below.adv, x0)            # failures are returned unchanged


def test_cw_linf_budget_mode_succeeds_above_and_fails_below_the_optimum():
    model, x0, y, opt = linear_problem()
    eps_ok = 1.1 * opt["linf"].max().item()
    res = cw_linf(model, x0, y, targeted=True, epsilon=eps_ok, **CW_LINF)
    assert res.success.all()
    assert (res.perturbation.abs() <= eps_ok).all()
    eps_bad = 0.95 * opt["linf"].min().item()
    res = cw_linf(model, x0, y, targeted=True, epsilon=eps_bad, max_iterations=60,
                  initial_const=1.0, largest_const=4.0)
    assert not res.success.any() and torch.equal(res.adv, x0)
    assert torch.isinf(res.const).all()


@pytest.mark.parametrize("attack,kw", [
    (cw_l2, dict(binary_search_steps=2, max_iterations=30)),
    (cw_linf, dict(max_iterations=30, initial_const=1.0, largest_const=4.0)),
    (ead, dict(binary_search_steps=2, max_iterations=30)),
    (fgm, dict(grid_steps=4, search_steps=2)),
    (ifgsm, dict(grid_steps=3, search_steps=1, steps=3)),
])
def test_unreachable_target_is_reported_as_failure(attack, kw):
    w = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    model = TwoClassLinear(w, -50.0)                  # class 1 needs <w, x> > 50 > 9
    x0 = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    res = attack(model, x0, torch.ones(2, dtype=torch.long), targeted=True, **kw)
    assert not res.success.any()
    assert torch.equal(res.adv, x0)
    if res.const is not None:
        assert torch.isinf(res.const).all()


# --- budgets, box, inputs --------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(attack_norm=st.sampled_from([("fgm", "l2"), ("fgm", "linf"), ("ifgsm", "l2"),
                                    ("ifgsm", "linf"), ("cw_linf", "linf")]),
       eps=st.sampled_from([0.01, 0.1, 0.3, 1.0, 2.5]), targeted=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 10_000))
def test_budget_attacks_never_exceed_epsilon_and_stay_in_the_box(attack_norm, eps, targeted,
                                                                 dtype, seed):
    attack, norm = attack_norm
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 2, 5, 5, generator=gen).to(dtype)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5], dtype=dtype)   # pixels on the box boundary
    labels = torch.randint(0, 5, (3,), generator=gen)
    model = small_cnn(2, seed=seed % 7, dtype=dtype)
    before = x.clone()
    if attack == "cw_linf":
        res = cw_linf(model, x, labels, targeted=targeted, epsilon=eps, max_iterations=10,
                      initial_const=1.0, largest_const=2.0)
    else:
        fn = fgm if attack == "fgm" else ifgsm
        res = fn(model, x, labels, targeted=targeted, norm=norm, epsilon=eps)
    assert torch.equal(x, before)
    assert res.adv.shape == x.shape and res.adv.dtype == x.dtype
    assert (res.adv >= 0).all() and (res.adv <= 1).all()
    d = res.perturbation
    if norm == "linf":
        assert (d.abs() <= eps).all()
        assert (d.abs().flatten(1).amax(1).double() <= eps).all()
    else:
        assert (d.flatten(1).norm(dim=1) <= eps).all()
        assert (d.flatten(1).norm(dim=1).double() <= eps).all()
    with torch.no_grad():
        pred = model(res.adv).argmax(1)
    assert torch.equal(res.success, pred == labels if targeted else pred != labels)


@settings(max_examples=30, deadline=None)
@given(attack=st.sampled_from(["fgm", "ifgsm", "cw_linf"]), norm=st.sampled_from(["l2", "linf"]),
       factor=st.floats(1.01, 1.5), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 10_000))
def test_budget_is_exact_when_the_attack_succeeds(attack, norm, factor, dtype, seed):
    """On a linear model every budget above the optimum is reachable, so the attacks return
    perturbations right at the budget, where rounding could push the norm past epsilon."""
    if attack == "cw_linf":
        norm = "linf"
    model, x0, y, opt = linear_problem(n=6, seed=seed, dtype=dtype)
    eps = factor * opt[norm].max().item()
    if attack == "cw_linf":
        res = cw_linf(model, x0, y, targeted=True, epsilon=eps, max_iterations=40,
                      initial_const=1.0, largest_const=2.0)
    else:
        res = (fgm if attack == "fgm" else ifgsm)(model, x0, y, targeted=True, norm=norm,
                                                  epsilon=eps)
        assert res.success.all()
    d = res.perturbation.flatten(1)
    size = d.abs().amax(dim=1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps).all() and (size.double() <= eps).all()
    assert (res.adv >= 0).all() and (res.adv <= 1).all()


ALL_FAST = [
    (cw_l2, dict(binary_search_steps=2, max_iterations=20)),
    (cw_linf, dict(max_iterations=20, initial_const=1.0, largest_const=4.0)),
    (ead, dict(binary_search_steps=2, max_iterations=20)),
    (fgm, dict(norm="l2", grid_steps=6, search_steps=3)),
    (fgm, dict(norm="linf", epsilon=0.1)),
    (ifgsm, dict(norm="linf", grid_steps=4, search_steps=2, steps=4)),
    (ifgsm, dict(norm="l2", epsilon=0.5, steps=4)),
]
IDS = ["cw_l2", "cw_linf", "ead", "fgm-l2-search", "fgm-linf-eps", "ifgsm-linf-search",
       "ifgsm-l2-eps"]


@pytest.mark.parametrize("attack,kw", ALL_FAST, ids=IDS)
def test_inputs_untouched_output_in_box_and_success_is_recomputed(attack, kw):
    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    x[0, :, 0, 0], x[1, :, 0, 0] = 0.0, 1.0
    model = small_cnn(3, seed=2)
    before = x.clone()
    res = attack(model, x, torch.tensor([1, 2, 3]), targeted=True, **kw)
    assert isinstance(res, AttackResult)
    assert torch.equal(x, before) and res.inputs is x
    assert res.adv.shape == x.shape and res.adv.dtype == x.dtype and res.adv.device == x.device
    assert (res.adv >= 0).all() and (res.adv <= 1).all()
    with torch.no_grad():
        assert torch.equal(res.success, model(res.adv).argmax(1) == torch.tensor([1, 2, 3]))
    assert res.forward_passes.shape == (3,) and res.backward_passes.shape == (3,)
    assert res.iterations.shape == (3,)


# --- small CNN, targeted and untargeted ------------------------------------------------------

CNN_SETTINGS = [
    (cw_l2, dict(binary_search_steps=4, max_iterations=100, initial_const=0.1)),
    (cw_linf, dict(max_iterations=60, initial_const=0.1, largest_const=10.0)),
    (ead, dict(binary_search_steps=4, max_iterations=100, initial_const=0.1)),
    (fgm, dict(norm="linf")),
    (fgm, dict(norm="l2", loss="cw")),
    (ifgsm, dict(norm="linf", steps=5)),
    (ifgsm, dict(norm="l2", steps=5, loss="cw")),
]
CNN_IDS = ["cw_l2", "cw_linf", "ead", "fgm-linf", "fgm-l2-cw", "ifgsm-linf", "ifgsm-l2-cw"]


@pytest.mark.parametrize("attack,kw", CNN_SETTINGS, ids=CNN_IDS)
def test_targeted_and_untargeted_attacks_on_a_small_cnn(attack, kw):
    model = small_cnn(3, seed=4)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(x).argmax(1)
    targets = (pred + 1 + torch.arange(4) % 3) % 5
    res = attack(model, x, targets, targeted=True, true_labels=pred, **kw)
    assert res.success.all()
    with torch.no_grad():
        assert torch.equal(model(res.adv).argmax(1), targets)
    res = attack(model, x, pred, targeted=False, **kw)
    assert res.success.all()
    with torch.no_grad():
        assert (model(res.adv).argmax(1) != pred).all()
    assert (res.perturbation.abs().flatten(1).amax(1) > 0).all()


# --- batching and pass counts ----------------------------------------------------------------

@pytest.mark.parametrize("attack,kw", ALL_FAST, ids=IDS)
def test_batch_equals_single_runs(attack, kw):
    model = small_cnn(1, dtype=torch.float64, seed=3)
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pred = model(x).argmax(1)
    targets = torch.tensor([0, 1, 2, 3])
    targets[0] = pred[0]                               # one image already classified as wanted
    batch = attack(model, x, targets, targeted=True, **kw)
    for i in range(4):
        single = attack(model, x[i:i + 1], targets[i:i + 1], targeted=True, **kw)
        torch.testing.assert_close(single.adv[0], batch.adv[i], atol=1e-9, rtol=0)
        assert single.success[0] == batch.success[i]
        assert single.forward_passes[0] == batch.forward_passes[i]
        assert single.backward_passes[0] == batch.backward_passes[i]
        assert single.iterations[0] == batch.iterations[i]
        if batch.const is not None:
            assert single.const[0] == batch.const[i]
    # the image already classified as wanted costs the validation and the final check only
    assert batch.success[0] and torch.equal(batch.adv[0], x[0])
    assert batch.forward_passes[0] == 2 and batch.backward_passes[0] == 0


@pytest.mark.parametrize("attack,kw", ALL_FAST, ids=IDS)
def test_pass_counts_match_model_hooks(attack, kw):
    model = small_cnn(1)
    seen = count_passes(model)
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(7))
    res = attack(model, x, torch.tensor([1, 2, 3]), targeted=True, **kw)
    assert res.forward_passes.sum().item() == seen["fwd"]
    assert res.backward_passes.sum().item() == seen["bwd"]
    assert sum(v[0] for v in res.stages.values()) == seen["fwd"]


def test_cw_l2_abort_early_is_per_image_and_stopped_images_cost_nothing():
    """Images stop at different iterations; the model runs only on those still optimising."""
    model, x0, y, _ = linear_problem()
    kw = dict(targeted=True, binary_search_steps=1, max_iterations=400, initial_const=100.0)
    early = cw_l2(model, x0, y, abort_early=True, **kw)
    full = cw_l2(model, x0, y, abort_early=False, **kw)
    assert (full.iterations == 400).all()
    assert (early.iterations < 400).any()
    assert early.iterations.unique().numel() > 1       # per image, not on the batch loss
    assert early.success.all()
    assert early.forward_passes.tolist() == (early.iterations + 2).tolist()
    assert early.backward_passes.tolist() == early.iterations.tolist()


def test_ifgsm_and_fgm_spend_the_documented_passes():
    model = small_cnn(1)
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pred = model(x).argmax(1)
    res = ifgsm(model, x, (pred + 1) % 5, targeted=True, epsilon=0.05, steps=7)
    assert res.backward_passes.tolist() == [7, 7] and res.forward_passes.tolist() == [10, 10]
    res = fgm(model, x, (pred + 1) % 5, targeted=True, epsilon=0.05)
    assert res.backward_passes.tolist() == [1, 1] and res.forward_passes.tolist() == [4, 4]


# --- bad input -------------------------------------------------------------------------------

ATTACKS = [cw_l2, cw_linf, ead, fgm, ifgsm]


def _ok():
    return small_cnn(1), torch.rand(2, 1, 6, 6), torch.tensor([1, 2])


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("mutate,exc,match,calls", [
    (lambda m, x, y: (m, x[0], y), ValueError, "shape", 0),
    (lambda m, x, y: (m, (x * 255).to(torch.uint8), y), TypeError, "floating", 0),
    (lambda m, x, y: (m, x * 2, y), ValueError, r"\[0, 1\]", 0),
    (lambda m, x, y: (m, x - 0.5, y), ValueError, r"\[0, 1\]", 0),
    (lambda m, x, y: (m, x.masked_fill(x > 0.5, float("nan")), y), ValueError, "NaN", 0),
    (lambda m, x, y: (m, x, torch.tensor([1, 2, 3])), ValueError, "shape", 0),
    (lambda m, x, y: (m, x, torch.tensor([1.0, 2.0])), TypeError, "integer", 0),
    (lambda m, x, y: (m, x, torch.tensor([1, 7])), ValueError, "class indices", 1),
    (lambda m, x, y: (lambda t: m(t)[:, None], x, y), ValueError, "logits", 1),
    (lambda m, x, y: (lambda t: "cat", x, y), TypeError, "logits", 1),
])
def test_bad_input_is_rejected_before_any_work(attack, mutate, exc, match, calls):
    model, x, y = mutate(*_ok())
    counting = CountingModel(model)
    with pytest.raises(exc, match=match):
        attack(counting, x, y, targeted=True)
    assert counting.calls == calls              # input errors: no model call at all


@pytest.mark.parametrize("attack,kwargs", [
    (cw_l2, dict(initial_const=0.0)), (cw_l2, dict(max_iterations=0)),
    (cw_l2, dict(confidence=-1.0)), (cw_l2, dict(learning_rate=0.0)),
    (cw_linf, dict(epsilon=0.0)), (cw_linf, dict(decrease_factor=1.0)),
    (cw_linf, dict(const_factor=1.0)),
    (ead, dict(decision="l2")), (ead, dict(beta=-1.0)), (ead, dict(binary_search_steps=0)),
    (fgm, dict(norm="l1")), (fgm, dict(epsilon=-0.1)), (fgm, dict(loss="mse")),
    (fgm, dict(grid_steps=0)), (ifgsm, dict(steps=0)), (ifgsm, dict(step_fraction=0.0)),
    (ifgsm, dict(rtol=-1.0)),
])
def test_bad_parameters_are_rejected_before_any_model_call(attack, kwargs):
    model, x, y = _ok()
    counting = CountingModel(model)
    with pytest.raises(ValueError):
        attack(counting, x, y, targeted=True, **kwargs)
    assert counting.calls == 0


def test_target_equal_to_true_label_is_rejected():
    model, x, _ = _ok()
    for attack in ATTACKS:
        with pytest.raises(ValueError, match="target equals the true label"):
            attack(model, x, torch.tensor([1, 2]), targeted=True, true_labels=torch.tensor([0, 2]))


class FlatAtInput(torch.nn.Module):
    """Two classes on one-pixel images: logit 1 = 10 relu(x - 0.55), logit 0 = 0.1. At x0 = 0.5
    every gradient is exactly zero, so a start at x0 never moves; from a uniform start in
    [0.4, 0.6] a quarter of the draws land where the gradient points to x = 0.6 (logit 1 = 0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return torch.cat([torch.full_like(x, 0.1), 10 * torch.relu(x - 0.55)], dim=1)


def test_ifgsm_random_start_escapes_a_flat_input_and_x0_start_does_not():
    x0, y = torch.full((400, 1, 1, 1), 0.5), torch.zeros(400, dtype=torch.long)
    plain = ifgsm(FlatAtInput(), x0, y, norm="linf", epsilon=0.1, steps=10)
    assert not plain.success.any()
    torch.manual_seed(0)
    pgd = ifgsm(FlatAtInput(), x0, y, norm="linf", epsilon=0.1, steps=10, random_start=True)
    assert 0.18 < pgd.success.float().mean().item() < 0.32     # P(U(0.4, 0.6) > 0.55) = 0.25
    assert (pgd.adv[pgd.success] > 0.55).all()
    assert ((pgd.adv - x0).abs() <= 0.1).all()


@pytest.mark.parametrize("seeded", [False, True], ids=["global", "per-example"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_uniform_in_the_ball_and_within_budget(norm, seeded):
    from strattack.attacks.fast_gradient import _uniform_in_ball
    torch.manual_seed(1)
    x0 = torch.full((2000, 1, 2, 2), 0.5)
    eps = torch.full((2000,), 0.2)
    generators = [torch.Generator().manual_seed(s) for s in range(2000)] if seeded else None
    delta = (_uniform_in_ball(x0, eps, norm, generators) - x0).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= 0.2
        assert abs(delta.mean().item()) < 0.01 and abs(delta.abs().mean().item() - 0.1) < 0.005
    else:
        r = delta.norm(dim=1) / 0.2
        assert r.max() <= 1 + 1e-6
        assert abs((r ** 4).mean().item() - 0.5) < 0.03        # uniform in volume: r^d ~ U(0, 1)


def _random_start_problem():
    model = small_cnn(1, dtype=torch.float64, seed=3)
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return model, x, torch.tensor([0, 1, 2, 4]), torch.tensor([11, -22, 2**62, 0])


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.6), ("linf", None), ("l2", 2.5),
                                          ("l2", None)])
def test_ifgsm_seeded_random_start_follows_the_example_not_its_batch(norm, epsilon):
    """With seeds, an example's random start (one per epsilon tried) comes from its own seed:
    attacked alone or at another position of a batch, it gives the same adversarial example."""
    model, x, targets, seeds = _random_start_problem()
    kw = dict(targeted=True, norm=norm, epsilon=epsilon, steps=3, random_start=True,
              grid_steps=4, search_steps=3)
    batch = ifgsm(model, x, targets, seeds=seeds, **kw)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = ifgsm(model, x[order], targets[order], seeds=seeds[order], **kw)
    torch.testing.assert_close(shuffled.adv, batch.adv[order], atol=1e-9, rtol=0)
    for i in range(4):
        alone = ifgsm(model, x[i:i + 1], targets[i:i + 1], seeds=seeds[i:i + 1], **kw)
        torch.testing.assert_close(alone.adv[0], batch.adv[i], atol=1e-9, rtol=0)
        assert alone.success[0] == batch.success[i]
        assert alone.iterations[0] == batch.iterations[i]
    other = ifgsm(model, x, targets, seeds=seeds + 1, **kw)
    differs = (other.adv - batch.adv).flatten(1).abs().amax(1) > 1e-6
    found = batch.success & other.success          # (a failure returns the input)
    assert found.any() and differs[found].all()    # other seeds, other starts


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_seeded_random_starts_differ_by_seed_and_leave_the_global_generator_alone(norm):
    from strattack.attacks.fast_gradient import _generators, _uniform_in_ball
    x0, eps = torch.full((3, 1, 4, 4), 0.5), torch.full((3,), 0.2)
    state = torch.get_rng_state()
    first = _uniform_in_ball(x0, eps, norm, _generators(torch.tensor([5, 6, 5])))
    again = _uniform_in_ball(x0, eps, norm, _generators(torch.tensor([5, 6, 5])))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and torch.equal(first[0], first[2])
    assert not torch.equal(first[0], first[1])


def test_ifgsm_random_start_without_seeds_draws_from_the_global_generator():
    """No seeds: as before, the start comes from torch's global generator (seed it)."""
    model, x, targets, _ = _random_start_problem()
    kw = dict(targeted=True, norm="linf", epsilon=0.3, steps=3, random_start=True)
    torch.manual_seed(4)
    first = ifgsm(model, x, targets, **kw)
    torch.manual_seed(4)
    again = ifgsm(model, x, targets, seeds=None, **kw)
    assert torch.equal(first.adv, again.adv)
    torch.manual_seed(5)
    assert not torch.equal(ifgsm(model, x, targets, **kw).adv, first.adv)


@pytest.mark.parametrize("seeds,match", [
    (torch.tensor([1.0, 2.0, 3.0, 4.0]), "integer tensor"),
    (torch.tensor([True, False, True, False]), "integer tensor"),
    (torch.tensor([1, 2, 3]), r"shape \(4,\)"),
    (torch.tensor([[1, 2, 3, 4]]), r"shape \(4,\)"),
    ([1, 2, 3, 4], "torch.Tensor"),
])
def test_ifgsm_rejects_bad_seeds_before_any_model_call(seeds, match):
    model, x, targets, _ = _random_start_problem()
    counting = CountingModel(model)
    with pytest.raises(ValueError, match=match):
        ifgsm(counting, x, targets, targeted=True, random_start=True, seeds=seeds)
    assert counting.calls == 0


def test_return_last_gives_every_image_its_last_iterate_fooled_or_not():
    """ifgsm(return_last=True) is PGD's training step: the last iterate for every image, the
    already-misclassified ones too, while success stays the model's verdict on it."""
    from helpers import small_cnn
    torch.manual_seed(0)
    model = small_cnn(1, 5)
    x = torch.rand(6, 1, 6, 6)
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 5                                 # image 0 is already misclassified
    plain = ifgsm(model, x, y, epsilon=1e-3, steps=2)     # too small to fool most
    last = ifgsm(model, x, y, epsilon=1e-3, steps=2, return_last=True)
    assert torch.equal(plain.adv[~plain.success], x[~plain.success])
    moved = (last.adv - x).flatten(1).abs().amax(dim=1)
    assert (moved > 0).all() and (moved <= 1e-3).all()
    with torch.no_grad():
        assert torch.equal(last.success, model(last.adv).argmax(1) != y)
    step = fgm(model, x, y, epsilon=1e-3, return_last=True)
    assert ((step.adv - x).flatten(1).abs().amax(dim=1) > 0).all()
    with pytest.raises(ValueError, match="return_last needs a fixed budget"):
        ifgsm(model, x, y, return_last=True)
