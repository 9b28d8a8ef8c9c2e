"""Bad input through the Python API (issue 12): every case is a clear error, a warning, or the
right result; nothing is silently wrong. Each test here failed before its fix."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import CountingModel, TwoClassLinear, small_cnn
from strattack import admm_attack, cw_l2, cw_linf, ead, fgm, gse, ifgsm, str_attack, str_attack_linf
from strattack.solver.admm import sparse_support
from strattack.solver.losses import is_adversarial, logit_margin

# Every public attack with a tiny budget (the checks, not the optimisation, are under test).
EVERY_ATTACK = [
    (str_attack, dict(binary_search_steps=1, max_iterations=10, refine_iterations=5)),
    (str_attack_linf, dict(epsilon=0.2, binary_search_steps=1, max_iterations=10,
                           refine_iterations=5)),
    (admm_attack, dict(tau=0.0, binary_search_steps=1, max_iterations=10, refine=False)),
    (cw_l2, dict(binary_search_steps=1, max_iterations=10)),
    (cw_linf, dict(max_iterations=10, initial_const=1.0, largest_const=2.0)),
    (ead, dict(binary_search_steps=1, max_iterations=10)),
    (fgm, dict(norm="l2", grid_steps=4, search_steps=2)),
    (ifgsm, dict(norm="linf", epsilon=0.1, steps=3)),
    (gse, dict(iterations=6, k_hat=3, search_steps=1)),
]
IDS = ["str_attack", "str_attack_linf", "admm", "cw_l2", "cw_linf", "ead", "fgm", "ifgsm", "gse"]
WITH_CONFIDENCE = EVERY_ATTACK[:6]


pytestmark = pytest.mark.usefixtures("one_thread")


def _cnn_case(n: int = 2):
    x = torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    return small_cnn(1), x, torch.tensor([1, 2, 3, 4][:n])


# --- 1. silently wrong -> errors -----------------------------------------------------------

@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_a_model_returning_probabilities_is_an_error(attack, kw):
    model, x, y = _cnn_case()
    softmax = CountingModel(nn.Sequential(model, nn.Softmax(dim=1)))
    with pytest.raises(ValueError, match="probabilities.*softmax"):
        attack(softmax, x, y, targeted=True, **kw)
    assert softmax.calls == 1                   # the validation pass only


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_nan_or_inf_logits_are_an_error(attack, kw, bad):
    model, x, y = _cnn_case()

    def broken(t):
        out = model(t).clone()
        out[1, 0] = bad
        return out

    counting = CountingModel(broken)
    with pytest.raises(ValueError, match=r"NaN or Inf logits .*images \[1\]"):
        attack(counting, x, y, targeted=True, **kw)
    assert counting.calls == 1


def test_log_probabilities_are_accepted_as_logits():
    """log_softmax differs from the logits by a per-image constant: same margins."""
    model, x, y = _cnn_case()
    log_probs = nn.Sequential(model, nn.LogSoftmax(dim=1))
    res = cw_l2(log_probs, x, y, targeted=True, binary_search_steps=1, max_iterations=5)
    assert res.adv.shape == x.shape


class ModeDependentNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 36, 5)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1)) * 10


@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_a_model_in_training_mode_is_attacked_in_eval_mode_and_given_back_unchanged(attack, kw):
    model, (_, x, y) = ModeDependentNet(), _cnn_case(4)
    model.train()
    model.drop.eval()                           # a mixed state must come back exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    with pytest.warns(UserWarning, match="training mode"):
        res = attack(model, x, y, targeted=True, **kw)
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():     # running statistics and batch counter untouched
        assert torch.equal(v, before[k]), k
    model.eval()
    with torch.no_grad():
        margin = logit_margin(model(res.adv), y, True)
    assert torch.equal(res.success, margin < 0)  # success is the eval-mode verdict


def test_a_model_in_training_mode_without_mode_dependent_layers_gives_no_warning(recwarn):
    model, x, y = _cnn_case()
    model.train()
    cw_l2(model, x, y, targeted=True, binary_search_steps=1, max_iterations=3)
    assert not [w for w in recwarn if "training mode" in str(w.message)]
    assert model.training


@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
@pytest.mark.parametrize("name,value", [("targeted", "no"), ("targeted", 1),
                                        ("true_labels", [1, 2])])
def test_wrong_typed_common_parameters_are_rejected_before_any_model_call(attack, kw, name,
                                                                          value):
    model, x, y = _cnn_case()
    counting = CountingModel(model)
    with pytest.raises(ValueError, match=name):
        attack(counting, x, y, **{**kw, name: value})
    assert counting.calls == 0


@pytest.mark.parametrize("attack,kwargs", [
    (str_attack, dict(confidence=float("nan"))), (cw_l2, dict(confidence=float("nan"))),
    (ead, dict(confidence=float("inf"))), (cw_linf, dict(confidence=float("nan"))),
    (admm_attack, dict(max_iterations=20.5)), (str_attack, dict(max_iterations=20.5)),
    (cw_l2, dict(max_iterations=20.5)), (ead, dict(binary_search_steps=True)),
    (str_attack, dict(refine="yes")), (cw_l2, dict(abort_early="no")),
    (str_attack, dict(rho="1")), (str_attack, dict(distortion="l3")),
    (str_attack, dict(group_size=2.0)), (str_attack_linf, dict(epsilon=float("nan"))),
    (fgm, dict(epsilon="0.1")), (ifgsm, dict(steps=3.0)), (fgm, dict(norm="L2")),
    (admm_attack, dict(overlap=None)), (str_attack, dict(epsilon=torch.tensor(0.1))),
])
def test_wrong_typed_or_non_finite_parameters_are_rejected_before_any_model_call(attack, kwargs):
    model, x, y = _cnn_case()
    counting = CountingModel(model)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name} must be"):
        attack(counting, x, y, targeted=True, **kwargs)
    assert counting.calls == 0


def test_an_unknown_parameter_is_a_type_error_naming_it():
    model, x, y = _cnn_case()
    with pytest.raises(TypeError, match="max_iteration"):
        cw_l2(model, x, y, max_iteration=3)


def test_numpy_and_integer_values_are_accepted_where_numbers_are_expected():
    import numpy as np
    model, x, y = _cnn_case()
    res = cw_l2(model, x, y, targeted=np.bool_(True), confidence=0, initial_const=np.float64(0.1),
                binary_search_steps=np.int64(1), max_iterations=3)
    assert res.adv.shape == x.shape


# --- success honours the confidence --------------------------------------------------------

@pytest.mark.parametrize("attack,kw", WITH_CONFIDENCE, ids=IDS[:6])
def test_success_means_the_wanted_class_wins_by_the_confidence(attack, kw):
    """Images already classified as the target by 0.1 (the confidence asks for 1) and a budget
    too small to reach 1: success must be False, as the search's own criterion says."""
    w = torch.zeros(1, 4, 4)
    w[0, 0, 0] = 1.0
    model = TwoClassLinear(w, b=0.0)
    x = torch.full((2, 1, 4, 4), 0.1)           # Z_1 - Z_0 = 0.1 > 0: class 1 already
    target = torch.tensor([1, 1])
    kw = {**kw, "max_iterations": 1}
    kw.pop("largest_const", None)
    if attack is cw_linf:
        kw["largest_const"] = 1.0
    res = attack(model, x, target, targeted=True, confidence=1.0, **kw)
    margin = logit_margin(model(res.adv), target, True)
    assert torch.equal(res.success, is_adversarial(margin, 1.0))
    assert not res.success.any()                 # reaching margin -1 needs ||delta|| >= 0.9


@pytest.mark.parametrize("attack,kw", WITH_CONFIDENCE, ids=IDS[:6])
def test_success_with_confidence_is_true_when_the_margin_is_reached(attack, kw):
    w = torch.zeros(1, 4, 4)
    w[0, 0, 0] = 1.0
    model = TwoClassLinear(w, b=0.0)
    x = torch.full((1, 1, 4, 4), 0.5)            # margin 0.5 toward class 1, confidence 0.2
    res = attack(model, x, torch.tensor([1]), targeted=True, confidence=0.2, **kw)
    assert res.success.all() and torch.equal(res.adv, x)   # unchanged: already wins by 0.5


# --- 2. precision and shapes ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_half_precision_inputs_work_and_come_back_in_their_dtype(attack, kw, dtype):
    model, x, y = _cnn_case(3)
    xh = x.to(dtype)
    res = attack(model, xh, y[:3], targeted=True, **kw)
    assert res.adv.dtype == dtype and res.inputs is xh
    assert (res.adv >= 0).all() and (res.adv <= 1).all()
    eps = kw.get("epsilon")
    if eps is not None:                                   # the budget holds in the half dtype
        assert (res.adv - xh).abs().max() <= eps
    with torch.no_grad():                                 # success describes the returned tensor
        margin = logit_margin(model(res.adv.float()), y[:3], True)
    assert torch.equal(res.success, margin < 0)
    assert res.forward_passes is not None and (res.forward_passes >= 3).all()


def test_half_precision_result_matches_float32_up_to_rounding():
    model, x, y = _cnn_case(2)
    kw = dict(binary_search_steps=1, max_iterations=20)
    full = str_attack(model, x.half().float(), y, targeted=True, **kw)
    half = str_attack(model, x.half(), y, targeted=True, **kw)
    assert (half.adv.float() - full.adv).abs().max() <= 2 ** -10   # float16 ulp at 1


def test_sparse_support_in_float16_with_more_than_65504_nonzero_entries():
    """The refinement quantile's position used to be computed in float16: count - 1 was inf from
    65,520 nonzero entries on, and gather failed with index -2^63."""
    g = torch.Generator().manual_seed(0)
    delta = (torch.rand(1, 3, 160, 160, generator=g) * 0.5 + 0.01)   # 76,800 nonzero entries
    delta[0, 0, :10] = 0
    half = sparse_support(delta.half(), 0.03)
    reference = sparse_support(delta.half().double(), 0.03)          # same values, exact position
    assert torch.equal(half, reference)
    assert 0.96 < half.float().sum() / (delta > 0).sum() < 0.98


def test_float64_inputs_with_a_float32_model_work_in_float64():
    model, x, y = _cnn_case()
    res = str_attack(model, x.double(), y, targeted=True, binary_search_steps=1,
                     max_iterations=10)
    assert res.adv.dtype == torch.float64
    with torch.no_grad():
        assert torch.equal(res.success, logit_margin(model(res.adv.float()), y, True) < 0)


def test_float32_inputs_with_a_float64_model_work():
    model, x, y = _cnn_case()
    res = cw_l2(model.double(), x, y, targeted=True, binary_search_steps=1, max_iterations=5)
    assert res.adv.dtype == torch.float32


@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_rgb_images_for_a_grayscale_model_say_what_is_wrong(attack, kw):
    model = small_cnn(1)
    x = torch.rand(2, 3, 6, 6)
    with pytest.raises(ValueError, match=r"model failed on the inputs \(shape \(2, 3, 6, 6\).*channels"):
        attack(model, x, torch.tensor([1, 2]), targeted=True, **kw)


def test_parameter_checks_name_the_attack_and_the_expected_type():
    model, x, y = _cnn_case()
    with pytest.raises(ValueError, match=r"cw_l2: max_iterations must be an integer, got 20\.5"):
        cw_l2(model, x, y, max_iterations=20.5)
    with pytest.raises(ValueError, match=r"targeted must be True or False, got 'no'"):
        str_attack(model, x, y, targeted="no")
    with pytest.raises(ValueError, match=r"epsilon must be a finite number or None"):
        fgm(model, x, y, epsilon=math.nan)


# --- inputs of any shape for the attacks without spatial groups (issue 13 §3) ----------------

UNSTRUCTURED = [
    (cw_l2, dict(binary_search_steps=5, max_iterations=150, initial_const=1.0), "l2", 1.25),
    (admm_attack, dict(tau=0.0, refine=False, binary_search_steps=4, max_iterations=200), "l2",
     1.25),
    (ead, dict(binary_search_steps=5, max_iterations=150, initial_const=1.0), None, None),
    (cw_linf, dict(max_iterations=100, initial_const=1.0, largest_const=8.0), "linf", 1.25),
    (fgm, dict(norm="l2"), "l2", 1.01),
    (ifgsm, dict(norm="linf", steps=5), "linf", 1.01),
]


@pytest.mark.parametrize("shape", [(8,), (4, 6), (5, 7, 7)], ids=["N,8", "N,4,6", "N,5,7,7"])
@pytest.mark.parametrize("attack,kw,norm,factor", UNSTRUCTURED,
                         ids=["cw_l2", "admm-tau0", "ead", "cw_linf", "fgm", "ifgsm"])
def test_attacks_without_groups_take_any_shape_and_reach_the_linear_optimum(attack, kw, norm,
                                                                            factor, shape):
    """adv_lib's minimal-l2 tests use (8,), (4, 6) and (5, 7, 7) examples; a linear model gives
    the optimum in closed form (see helpers.TwoClassLinear)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(1, *shape, generator=g, dtype=torch.float64)
    w /= w.norm()                        # optima of similar size whatever the dimension
    x0 = torch.rand(3, *shape, generator=g, dtype=torch.float64) * 0.2 + 0.4
    s = x0.flatten(1) @ w.flatten()
    model = TwoClassLinear(w, -(s.max().item() + 0.2))
    margin = -(s + model.b)
    res = attack(model, x0, torch.ones(3, dtype=torch.long), targeted=True, **kw)
    assert res.adv.shape == x0.shape and res.success.all()
    if norm is not None:
        optimum = margin / (w.norm() if norm == "l2" else w.abs().sum())
        got = res.norms()[norm]
        assert (got >= optimum - 1e-6).all() and (got <= factor * optimum).all(), got / optimum


@pytest.mark.parametrize("attack", [str_attack, str_attack_linf])
def test_structured_attacks_say_they_need_images(attack):
    model = TwoClassLinear(torch.ones(1, 8), -5.0)
    with pytest.raises(ValueError, match=r"needs images of shape \(N, C, H, W\)"):
        attack(model, torch.rand(2, 8), torch.ones(2, dtype=torch.long), targeted=True,
               epsilon=0.5)


def test_a_batch_without_an_example_dimension_is_rejected():
    model = TwoClassLinear(torch.ones(1), -5.0)
    with pytest.raises(ValueError, match=r"shape \(N, \.\.\.\)"):
        cw_l2(model, torch.rand(4), torch.ones(4, dtype=torch.long))


def test_str_attack_lists_admm_attacks_keywords_with_the_same_defaults():
    """help(), IDEs and the evaluation's parameter checks see every keyword (issue 13 §3)."""
    import inspect

    def keywords(fn):
        return {n: (p.default, p.annotation) for n, p in inspect.signature(fn).parameters.items()
                if p.kind == p.KEYWORD_ONLY}

    admm, plain, linf = keywords(admm_attack), keywords(str_attack), keywords(str_attack_linf)
    assert plain.pop("preset")[0] is None          # str_attack's own: named keyword sets
    assert set(plain) == set(admm)
    # str_attack's own defaults (issue 17; README "Design choices"), the rest admm_attack's
    own = {"tau": 1.0, "binary_search_steps": 3, "max_iterations": 100,
           "refine_iterations": 80, "rescue_steps": 2}
    assert {n for n in admm if plain[n] != admm[n]} == set(own)
    assert {n: plain[n][0] for n in own} == own
    assert set(linf) == set(admm)
    differ = {n for n in admm if linf[n] != admm[n]}
    assert differ == {"epsilon", "refine_gamma", "refine_misses"}
    assert linf["refine_gamma"][0] == 0.0 and linf["refine_misses"][0] is True and linf["epsilon"][0] is inspect.Parameter.empty


# --- models that break the gradient, the dtype or the output type ------------------------------

class _NoGradForward(torch.nn.Module):
    """Its forward runs under torch.no_grad(): the logits do not depend on x through autograd."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn(1)

    def forward(self, x):
        with torch.no_grad():
            return self.net(x)


class _DetachedInput(_NoGradForward):
    """Its parameters still take gradients, but the input is detached."""

    def forward(self, x):
        return self.net(x.detach())


class _OtherDtypeHead(_NoGradForward):
    """float32 layers, then a head in another dtype: the logits come back in that dtype."""

    def __init__(self, dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.head = torch.nn.Linear(5, 5).to(dtype)

    def forward(self, x):
        return self.head(self.net(x).to(self.dtype))


@pytest.mark.parametrize("broken", [_NoGradForward, _DetachedInput])
@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_a_model_without_a_gradient_to_its_inputs_is_a_clear_error(attack, kw, broken):
    model = broken().eval()
    x = _cnn_case()[1]
    y = model(x).argmax(1)                               # untargeted: nothing is done yet
    with pytest.raises(ValueError, match=r"do not depend on its inputs through autograd.*"
                                         r"torch\.no_grad\(\).*\.detach\(\)"):
        attack(model, x, y, **kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("attack,kw", EVERY_ATTACK, ids=IDS)
def test_logits_in_another_dtype_than_the_inputs_are_attacked_in_the_inputs_dtype(attack, kw,
                                                                                  dtype):
    torch.manual_seed(0)
    model = _OtherDtypeHead(dtype).eval()
    x = _cnn_case()[1]
    y = model(x).argmax(1)
    res = attack(model, x, y, **kw)
    assert res.adv.dtype == x.dtype and res.adv.shape == x.shape
    with torch.no_grad():
        assert torch.equal(res.success, model(res.adv).float().argmax(1) != y)


def test_a_model_returning_a_tuple_names_the_fix():
    model = small_cnn(1)
    x, y = _cnn_case()[1:]
    with pytest.raises(TypeError, match=r"returns a tuple of 2.*lambda x: model\(x\)\[0\]"):
        cw_l2(lambda v: (model(v), v), x, y, max_iterations=2)


def test_inputs_on_the_meta_device_are_a_clear_error():
    model = small_cnn(1)
    x = torch.empty(2, 1, 6, 6, device="meta")
    with pytest.raises(ValueError, match="meta device"):
        fgm(model, x, torch.tensor([1, 2], device="meta"))
