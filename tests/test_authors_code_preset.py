"""str_attack(preset="authors_code") and the solver options it needs: rho_delta,
const_growth, success_rule, warm_start, iteration_growth, patience=None, refine_initial_const.
Each option is checked against an independent reference (the authors' update written out in
numpy, a plain-Python c schedule, a fresh run)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import CountingModel, TwoClassLinear, small_cnn

from strattack import str_attack
from strattack.attacks import ADMMConfig, admm_framework
from strattack.attacks.admm_search import SearchSettings, constant_search
from strattack.attacks.tracking import AttackCall, BestSoFar
from strattack.attacks.presets import AUTHORS_CODE
from strattack.solver.admm import ADMMParams, State, StructuredADMM, feasible_bounds
from strattack.solver.groups import GroupSpec

# What README.md ("The authors'-code preset") documents, written out again on purpose.
DOCUMENTED = dict(rho=15.0, rho_delta=30.0, gamma=4.0, tau=3.0, alpha=5.0, group_size=13,
                  stride=13, epsilon=0.5, initial_const=1.0, const_growth=5.0,
                  success_rule="improved", warm_start=False, binary_search_steps=6,
                  max_iterations=2000, iteration_growth=1000, check_every=1, patience=None,
                  refine=True, refine_search_steps=8, refine_iterations=400,
                  refine_initial_const=5.0, refine_quantile=0.03, refine_gamma=0.01,
                  rescue_steps=0)


def spy_on_admm_attack(monkeypatch) -> list[dict]:
    """The configuration str_attack's core receives, as a dict, per call."""
    calls: list[dict] = []
    monkeypatch.setattr(str_attack, "core",
                        lambda model, x, y, config, **kw: calls.append(dataclasses.asdict(config)))
    return calls


def tiny_batch():
    torch.manual_seed(0)
    model, x = small_cnn(3, 5, seed=1), torch.rand(2, 3, 8, 8)
    return model, x, (model(x).argmax(1) + 1) % 5          # never the predicted class


def test_the_preset_sets_the_documented_values(monkeypatch):
    calls = spy_on_admm_attack(monkeypatch)
    model, x, t = tiny_batch()
    str_attack(model, x, t, targeted=True, preset="authors_code")
    assert {k: getattr(AUTHORS_CODE, k) for k in DOCUMENTED} == DOCUMENTED
    assert {k: calls[0][k] for k in DOCUMENTED} == DOCUMENTED
    assert "preset" not in calls[0]


def test_explicit_keywords_override_the_preset(monkeypatch):
    calls = spy_on_admm_attack(monkeypatch)
    model, x, t = tiny_batch()
    str_attack(model, x, t, targeted=True, preset="authors_code", group_size=2, stride=2,
               max_iterations=7, warm_start=True)
    expected = {**DOCUMENTED, "group_size": 2, "stride": 2, "max_iterations": 7,
                "warm_start": True}
    assert {k: calls[0][k] for k in DOCUMENTED} == expected


def test_no_preset_passes_the_defaults(monkeypatch):
    calls = spy_on_admm_attack(monkeypatch)
    model, x, t = tiny_batch()
    str_attack(model, x, t, targeted=True)
    str_attack(model, x, t, targeted=True, preset=None)
    assert calls[0] == calls[1]
    assert calls[0]["rho"] == 1.0 and calls[0]["warm_start"] is True


@pytest.mark.parametrize("name", ["authors", "AUTHORS_CODE", 3])
def test_an_unknown_preset_is_a_clear_error_before_any_model_pass(name):
    model, x, t = tiny_batch()
    counting = CountingModel(model)
    with pytest.raises(ValueError, match="unknown preset .*authors_code"):
        str_attack(counting, x, t, targeted=True, preset=name)
    assert counting.calls == 0


def test_the_preset_runs_end_to_end_with_a_reduced_budget():
    """Every image runs exactly sum_j (M + j G) main iterations (no early stop), then
    refine_search_steps x refine_iterations."""
    model, x, t = tiny_batch()
    r = str_attack(model, x, t, targeted=True, preset="authors_code", group_size=2, stride=2,
                   binary_search_steps=3, max_iterations=4, iteration_growth=2,
                   refine_search_steps=2, refine_iterations=3)
    refined = r.success.long() * 2 * 3
    assert torch.equal(r.iterations, (4 + 6 + 8) + refined)
    assert r.success.all()


# --- rho_delta: the authors' z-step, written out in numpy ------------------------------------

def authors_iteration(z, u, v, s, grad, img, k, ro=15.0, gamma=2.0, tau=3.0, alpha=5.0,
                      ep=0.5, size=2):
    """One iteration of l2_LADMMST_attack_v3.py (scaled duals, img in [-0.5, 0.5]), one image
    (C, H, W) with non-overlapping size x size groups, looping over the groups."""
    delt = ro / (ro + 2 * gamma) * (z - u)
    w = np.clip(z - s, np.maximum(-0.5 - img, -ep), np.minimum(0.5 - img, ep))
    y = z - v
    for i in range(0, img.shape[1], size):
        for j in range(0, img.shape[2], size):
            block = y[:, i:i + size, j:j + size]
            norm = np.linalg.norm(block)
            scale = max(1 - (tau / ro) / norm, 0.0) if norm > 0 else 0.0
            y[:, i:i + size, j:j + size] = scale * block
    eta = alpha * math.sqrt(k)
    z_new = (eta * z + 2 * ro * (delt + u) + ro * (w + s) + ro * (y + v) - grad) / (eta + 4 * ro)
    return z_new, u + delt - z_new, v + y - z_new, s + w - z_new, y


def test_rho_delta_30_gamma_4_is_the_authors_iteration_at_rho_15_gamma_2():
    torch.manual_seed(3)
    x0 = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    target = 0.3 * torch.randn_like(x0)               # f(z) = ||z - target||^2 / 2 * 40
    groups = GroupSpec.for_inputs(x0, 2, 2)
    lo, hi = feasible_bounds(x0, 0.5)
    params = ADMMParams(rho=15.0, rho_delta=30.0, gamma=4.0, tau=3.0, alpha=5.0)
    core = StructuredADMM(params, groups, lo, hi)
    st = core.init_state(torch.zeros_like(x0))
    img = (x0[0] - 0.5).numpy()
    z = u = v = s = np.zeros_like(img)
    idx = torch.arange(1)
    for k in range(1, 31):
        grad = 40 * (st["z"] - target)
        st = core.step(st, grad, k, idx)
        z, u, v, s, y = authors_iteration(z, u, v, s, 40 * (z - target[0].numpy()), img, k)
        np.testing.assert_allclose(st["z"][0].numpy(), z, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st["u"][0].numpy() / 30.0, u, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st["s"][0].numpy() / 15.0, s, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(groups.fold(st["y"])[0].numpy(), y, rtol=1e-9, atol=1e-12)
    assert np.abs(z).max() > 0.05                       # the iteration went somewhere


def test_rho_delta_none_is_rho():
    torch.manual_seed(4)
    x0 = torch.rand(2, 1, 4, 4)
    lo, hi = feasible_bounds(x0, None)
    groups = GroupSpec.for_inputs(x0, 2, 2)
    grad, idx = torch.randn_like(x0), torch.arange(2)
    steps = [StructuredADMM(ADMMParams(rho=2.0, rho_delta=d), groups, lo, hi)
             for d in (None, 2.0)]
    a, b = (c.step(c.init_state(0.1 * grad), grad, 1, idx) for c in steps)
    assert all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(ValueError, match="rho_delta must be a number > 0"):
        ADMMConfig(rho_delta=0.0)


# --- the search on c: x5 then bisection, success rules, growing steps ------------------------

class ThresholdCore:
    """A fake ADMM core for a TwoClassLinear model at x0 = 0 that never moves z: it reads c off
    the gradient (c * w on the active hinge) and offers a fixed adversarial candidate iff
    c >= threshold. Records the c of every iteration, per search step (``init_state`` marks
    nothing: steps are told apart by ``calls`` between restarts)."""

    def __init__(self, w: torch.Tensor, threshold: float, candidate: torch.Tensor) -> None:
        self.w, self.threshold, self.adv = w, threshold, candidate
        self.seen: list[float] = []

    def init_state(self, init):
        return State(z=init.clone(), c=torch.zeros(init.shape[0], dtype=init.dtype))

    def point(self, st):
        return st["z"]

    def step(self, st, grad, k, idx, eta_scale=None):
        c = grad.flatten(1)[:, 0] / self.w.flatten()[0]
        self.seen.extend(c.tolist())
        return State(z=st["z"], c=c)

    def candidate(self, st, idx):
        ok = (st["c"] >= self.threshold).to(self.adv.dtype).view(-1, 1, 1, 1)
        return ok * self.adv

    def regularizer(self, delta):
        return torch.zeros(delta.shape[0], dtype=delta.dtype)


def reference_schedule(threshold, c0, growth, steps, rule):
    """The authors' rule in plain Python, the candidate's l2 being the same at every success."""
    lower, upper, c, best, seq = 0.0, math.inf, c0, math.inf, []
    for _ in range(steps):
        seq.append(c)
        found = c >= threshold
        improved = found and best == math.inf
        best = 1.0 if found else best
        if (improved if rule == "improved" else found):
            upper = min(upper, c)
        else:
            lower = max(lower, c)
        c = (lower + upper) / 2 if upper < math.inf else c * growth
    return seq


@pytest.mark.parametrize("rule", ["found", "improved"])
def test_c_grows_x5_then_bisects_with_either_success_rule(rule):
    w = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    w[0, 0, 0, 0] = -1.0                     # Z_1 = -x_00 - 1: class 1 needs x_00 <= -1
    model = TwoClassLinear(w, -1.0)
    x0 = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    adv = torch.zeros_like(x0)
    adv[0, 0, 0, 0] = -2.0                   # x_00 = -1.5: a candidate the model calls class 1
    # Z_1 = -(0.5 + d) - 1 at x0 + d: the margin 0 - Z_1 = 1.5 + d; the hinge gradient is +c
    core = ThresholdCore(-w, threshold=7.0, candidate=adv)
    call = AttackCall.start(model, x0, torch.tensor([1]), True, None)
    best = BestSoFar(x0, call.already)
    settings = SearchSettings(initial_const=1.0, search_steps=6, max_iterations=2, check_every=1,
                              patience=None, const_growth=5.0, success_rule=rule,
                              iteration_growth=3)
    out = constant_search(call, core, settings, "admm", active=~call.already, best=best)
    per_step = [2 + 3 * j for j in range(6)]
    assert int(out.iterations) == sum(per_step) == len(core.seen)
    firsts = np.cumsum([0] + per_step[:-1])
    assert [core.seen[i] for i in firsts] == pytest.approx(
        reference_schedule(7.0, 1.0, 5.0, 6, rule))
    # 1, 5, 25 (success), 15 (found; not closer: a failure under "improved"), then 20 or 10
    assert core.seen[firsts[4]] == pytest.approx(20.0 if rule == "improved" else 10.0)


# --- warm_start=False: every c-step restarts ------------------------------------------------

class RecordingADMM(StructuredADMM):
    trajectory: list[torch.Tensor] = []

    def point(self, st):
        RecordingADMM.trajectory.append(st["z"].clone())
        return super().point(st)


def test_without_warm_start_the_second_c_step_is_a_fresh_run_at_its_c(monkeypatch):
    """On a model no perturbation in the box fools, every step fails, so step 2 runs at
    c0 * growth: its iterates equal those of a fresh one-step run started at that c."""
    monkeypatch.setattr(admm_framework, "StructuredADMM", RecordingADMM)
    torch.manual_seed(5)
    model = TwoClassLinear(torch.randn(1, 4, 4), -1000.0)
    x = torch.rand(2, 1, 4, 4)
    t = torch.ones(2, dtype=torch.long)

    def trajectory(**kw):
        RecordingADMM.trajectory = []
        r = str_attack(model, x, t, targeted=True, patience=None, refine=False, check_every=1,
                       max_iterations=6, const_growth=5.0, rescue_steps=0, **kw)
        assert not r.success.any()
        return RecordingADMM.trajectory

    reset = trajectory(binary_search_steps=2, initial_const=0.25, warm_start=False)
    fresh = trajectory(binary_search_steps=1, initial_const=1.25)
    warm = trajectory(binary_search_steps=2, initial_const=0.25)
    assert len(reset) == 12 and all(torch.equal(a, b) for a, b in zip(reset[6:], fresh))
    assert not torch.equal(warm[6], fresh[0])       # warm start carries z over


# --- the refinement: c restarted, support recomputed every round -----------------------------

def test_refinement_restarts_at_its_c_from_the_current_best(monkeypatch):
    seen: list[dict] = []
    search = admm_framework.constant_search

    def spy(call, core, settings, stage, **kw):
        if stage == "refine":
            seen.append(dict(kw, settings=settings))
        return search(call, core, settings, stage, **kw)

    monkeypatch.setattr(admm_framework, "constant_search", spy)
    model, x, t = tiny_batch()
    r = str_attack(model, x, t, targeted=True, group_size=2, stride=2, max_iterations=30,
                   refine_initial_const=5.0, warm_start=False, refine_search_steps=2,
                   refine_iterations=5)
    assert r.success.all() and len(seen) == 1
    kw = seen[0]
    assert torch.equal(kw["const"], torch.full((2,), 5.0))
    assert kw["settings"].warm_start is False and kw["settings"].success_rule == "found"
    core, start = kw["restart"]()                   # from the final best: on its own support
    adv_delta = r.adv - x
    assert torch.allclose(start, adv_delta * core.support, atol=1e-6)
    with pytest.raises(ValueError, match="refine_initial_const"):
        str_attack(model, x, t, targeted=True, refine_initial_const=0.0)
