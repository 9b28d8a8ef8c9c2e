"""The attack configurations: each keyword's rule (one test case per rule: the bad value and the
message), presets as values, one input check per call, and the short path from an evaluation
to the solver."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from helpers import CountingModel, small_cnn

from strattack import attacks
from strattack.attacks import (ADMMConfig, CWL2Config, CWLinfConfig, EADConfig, FGMConfig,
                               GSEConfig, IFGSMConfig, StrAttackConfig)
from strattack.attacks.call import Attack
from strattack.attacks.presets import APP_F, AUTHORS_CODE, PRESETS, STRATTACK, STRATTACK_LINF
from strattack.evaluation.config import attack_specs, load_toml

RULES = [
    # ADMMConfig: the problem
    (ADMMConfig, "group_size", 0, r"group_size must be an integer >= 1, got 0"),
    (ADMMConfig, "stride", -1, r"stride must be an integer >= 1, got -1"),
    (ADMMConfig, "epsilon", 0.0, r"epsilon must be a number > 0, got 0\.0"),
    (ADMMConfig, "confidence", -1.0, r"confidence must be a number >= 0, got -1\.0"),
    (ADMMConfig, "rho", 0.0, r"rho must be a number > 0, got 0\.0"),
    (ADMMConfig, "gamma", -0.1, r"gamma must be a number >= 0, got -0\.1"),
    (ADMMConfig, "tau", -1.0, r"tau must be a number >= 0, got -1\.0"),
    (StrAttackConfig, "tau", 0.0, r"StrAttack needs a group penalty tau > 0, got 0\.0; use "
                                  r"admm_attack for tau = 0"),
    (ADMMConfig, "alpha", 0.0, r"alpha must be a number > 0, got 0\.0"),
    (ADMMConfig, "beta", -1e-3, r"beta must be a number >= 0, got -0\.001"),
    (ADMMConfig, "rho_delta", 0.0, r"rho_delta must be a number > 0, got 0\.0"),
    # ADMMConfig: the search on c
    (ADMMConfig, "initial_const", 0.0, r"initial_const must be a number > 0, got 0\.0"),
    (ADMMConfig, "binary_search_steps", 0, r"binary_search_steps must be an integer >= 1"),
    (ADMMConfig, "max_iterations", 0, r"max_iterations must be an integer >= 1, got 0"),
    (ADMMConfig, "check_every", 0, r"check_every must be an integer >= 1, got 0"),
    (ADMMConfig, "patience", 0, r"patience must be an integer >= 1, got 0"),
    (ADMMConfig, "tol", -1e-3, r"tol must be a number >= 0, got -0\.001"),
    (ADMMConfig, "const_growth", 1.0, r"const_growth must be > 1, got 1\.0"),
    (ADMMConfig, "iteration_growth", -1, r"iteration_growth must be an integer >= 0, got -1"),
    (ADMMConfig, "rescue_steps", -1, r"rescue_steps must be an integer >= 0, got -1"),
    # ADMMConfig: the refinement
    (ADMMConfig, "refine_quantile", 1.0, r"refine_quantile must be in \[0, 1\), got 1\.0"),
    (ADMMConfig, "refine_search_steps", 0, r"refine_search_steps must be an integer >= 1"),
    (ADMMConfig, "refine_iterations", 0, r"refine_iterations must be an integer >= 1, got 0"),
    (ADMMConfig, "refine_gamma", -1.0, r"refine_gamma must be a number >= 0, got -1\.0"),
    (ADMMConfig, "refine_initial_const", 0.0, r"refine_initial_const must be a number > 0"),
    # C&W-l2 (and EAD, which extends it)
    (CWL2Config, "confidence", -1.0, r"confidence must be a number >= 0, got -1\.0"),
    (CWL2Config, "learning_rate", 0.0, r"learning_rate must be a number > 0, got 0\.0"),
    (CWL2Config, "initial_const", 0.0, r"initial_const must be a number > 0, got 0\.0"),
    (CWL2Config, "binary_search_steps", 0, r"binary_search_steps must be an integer >= 1"),
    (CWL2Config, "max_iterations", 0, r"max_iterations must be an integer >= 1, got 0"),
    (EADConfig, "beta", -1.0, r"beta must be a number >= 0, got -1\.0"),
    # C&W-linf
    (CWLinfConfig, "epsilon", -0.1, r"epsilon must be a number > 0, got -0\.1"),
    (CWLinfConfig, "confidence", -1.0, r"confidence must be a number >= 0"),
    (CWLinfConfig, "learning_rate", 0.0, r"learning_rate must be a number > 0"),
    (CWLinfConfig, "initial_const", 0.0, r"initial_const must be a number > 0"),
    (CWLinfConfig, "largest_const", 0.0, r"largest_const must be a number > 0"),
    (CWLinfConfig, "const_factor", 1.0, r"const_factor must be > 1, got 1\.0"),
    (CWLinfConfig, "decrease_factor", 1.0, r"decrease_factor must be in \(0, 1\), got 1\.0"),
    (CWLinfConfig, "initial_tau", 0.0, r"initial_tau must be a number > 0"),
    (CWLinfConfig, "min_tau", -1.0, r"min_tau must be a number >= 0"),
    (CWLinfConfig, "max_iterations", 0, r"max_iterations must be an integer >= 1"),
    # FGM (and IFGSM, which extends it)
    (FGMConfig, "epsilon", 0.0, r"epsilon must be a number > 0, got 0\.0"),
    (FGMConfig, "max_epsilon", 0.0, r"max_epsilon must be a number > 0, got 0\.0"),
    (FGMConfig, "grid_steps", 0, r"grid_steps must be an integer >= 1, got 0"),
    (FGMConfig, "search_steps", -1, r"search_steps must be an integer >= 0, got -1"),
    (FGMConfig, "rtol", -1.0, r"rtol must be a number >= 0, got -1\.0"),
    (FGMConfig, "return_last", True, r"return_last needs a fixed budget: give epsilon"),
    (IFGSMConfig, "steps", 0, r"steps must be an integer >= 1, got 0"),
    (IFGSMConfig, "step_fraction", 0.0, r"step_fraction must be a number > 0, got 0\.0"),
    # GSE
    (GSEConfig, "confidence", -1.0, r"confidence must be a number >= 0"),
    (GSEConfig, "mu", -1.0, r"mu must be a number >= 0, got -1\.0"),
    (GSEConfig, "step_size", 0.0, r"step_size must be a number > 0, got 0\.0"),
    (GSEConfig, "k_hat", -1, r"k_hat must be an integer >= 0, got -1"),
    (GSEConfig, "q", 1.0, r"q must be in \(0, 1\) \(far pixels' lambda grows by 1/q\), got 1\.0"),
    (GSEConfig, "iterations", 0, r"iterations must be an integer >= 1, got 0"),
    (GSEConfig, "search_steps", 0, r"search_steps must be an integer >= 1, got 0"),
    (GSEConfig, "search_factor", 1.0, r"search_factor must be > 1, got 1\.0"),
    (GSEConfig, "blur_size", 4, r"blur_size must be an odd integer >= 1, got 4"),
    (GSEConfig, "blur_sigma", 0.0, r"blur_sigma must be a number > 0, got 0\.0"),
    (GSEConfig, "patch", 0, r"patch must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("config,name,value,message", RULES,
                         ids=[f"{c.__name__}.{n}" for c, n, _, _ in RULES])
def test_each_rule_rejects_its_bad_value_with_its_message(config, name, value, message):
    with pytest.raises(ValueError, match=message):
        config(**{name: value})
    config(**{name: getattr(config(), name)})             # the default passes


def test_combined_rule_adaptive_rho_excludes_rho_delta():
    with pytest.raises(ValueError, match="adaptive_rho balances one rho; it cannot be combined "
                                         "with rho_delta"):
        ADMMConfig(rho_delta=2.0, adaptive_rho=True)


def test_refinement_counts_are_only_checked_when_there_is_a_refinement():
    assert ADMMConfig(refine=False, refine_iterations=0).refine_iterations == 0


TYPES = [("max_iterations", 2.5, r"max_iterations must be an integer, got 2\.5 \(float\)"),
         ("tau", float("nan"), r"tau must be a finite number, got nan"),
         ("refine", "yes", r"refine must be True or False, got 'yes'"),
         ("overlap", "groups", r"overlap must be one of 'exact', 'group', got 'groups'"),
         ("epsilon", "0.1", r"epsilon must be a finite number or None, got '0\.1'"),
         ("patience", 4.0, r"patience must be an integer or None, got 4\.0")]


@pytest.mark.parametrize("name,value,message", TYPES, ids=[t[0] for t in TYPES])
def test_each_field_is_checked_against_its_annotation(name, value, message):
    with pytest.raises(ValueError, match=message):
        ADMMConfig(**{name: value})


def test_numpy_scalars_become_plain_numbers():
    import numpy as np
    config = ADMMConfig(max_iterations=np.int64(7), tau=np.float32(0.5), refine=np.bool_(False))
    assert type(config.max_iterations) is int and type(config.tau) is float
    assert config.refine is False and config == ADMMConfig(max_iterations=7, tau=0.5, refine=False)


def test_an_unknown_field_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="max_iteration"):
        STRATTACK.replace(max_iteration=3)


def test_presets_are_values_derived_from_one_another():
    assert APP_F == ADMMConfig()
    assert dataclasses.replace(STRATTACK, tau=2.0, binary_search_steps=5, max_iterations=200,
                               refine_iterations=100, rescue_steps=0) == StrAttackConfig()
    assert STRATTACK_LINF == StrAttackConfig(refine_gamma=0.0, refine_misses=True)
    assert PRESETS["authors_code"] is AUTHORS_CODE
    assert PRESETS["clustered"] == STRATTACK.replace(group_size=8, stride=4)
    assert PRESETS["clustered_mnist"] == STRATTACK.replace(group_size=4, stride=2)
    assert PRESETS["clustered_imagenet"] == STRATTACK.replace(group_size=13, stride=13,
                                                              initial_const=2.5)
    assert AUTHORS_CODE.tau == 3.0 and AUTHORS_CODE.rescue_steps == 0
    assert AUTHORS_CODE.z_candidate == STRATTACK.z_candidate       # unset fields: StrAttack's


@pytest.mark.parametrize("config, label, preset", [
    ("gse_cifar10.toml", "StrAttack (clustered)", "clustered"),
    ("gse_mnist.toml", "StrAttack (4x4/2)", "clustered_mnist"),
    ("gse_imagenet.toml", "StrAttack (13x13)", "clustered_imagenet")])
def test_each_clustered_preset_is_the_configuration_benchmarks_measured(config, label, preset):
    """BENCHMARKS §13's rows (the shipped configs) are the presets the README recommends."""
    entries = load_toml(Path(__file__).parents[1] / "configs" / config)["attack"]
    spec = next(s for s in attack_specs(entries, ()) if s.label == label)
    assert spec.config == PRESETS[preset]


@pytest.mark.parametrize("attack", [attacks.admm_attack, attacks.str_attack,
                                    attacks.str_attack_linf, attacks.cw_l2, attacks.cw_linf,
                                    attacks.ead, attacks.fgm, attacks.ifgsm, attacks.gse])
def test_every_signature_default_is_the_configurations(attack):
    """What users and IDEs see is what runs (also checked when the module is imported)."""
    for name, p in inspect.signature(attack).parameters.items():
        if hasattr(attack.defaults, name) and p.default is not p.empty:
            assert p.default == getattr(attack.defaults, name), name


def test_a_signature_that_drifts_from_its_configuration_is_refused():
    def fgm(model, inputs, labels, *, targeted: bool = False, norm: str = "l2",
            epsilon: float | None = None, loss: str = "ce", max_epsilon: float | None = None,
            grid_steps: int = 10, search_steps: int = 10, rtol: float = 1e-3,
            return_last: bool = False):
        """A drifted signature: norm's default is not FGMConfig's."""

    with pytest.raises(TypeError, match=r"fgm: the signature and FGMConfig differ on \['norm'\]"):
        Attack(fgm, FGMConfig(), attacks.fgm.core)


def test_a_call_builds_the_configuration_from_the_keywords_given():
    seen = []
    model, x = small_cnn(1, 5), torch.rand(2, 1, 6, 6)
    y = model(x).argmax(1)
    original = attacks.str_attack.core
    try:
        attacks.str_attack.core = lambda m, i, lab, config, **kw: seen.append((config, kw))
        attacks.str_attack(model, x, (y + 1) % 5, targeted=True, true_labels=y,
                           preset="authors_code", max_iterations=7)
    finally:
        attacks.str_attack.core = original
    (config, per_call), = seen
    assert config == AUTHORS_CODE.replace(max_iterations=7)
    assert per_call["targeted"] is True and torch.equal(per_call["true_labels"], y)


def test_one_str_attack_linf_call_checks_its_inputs_once(monkeypatch):
    from strattack.attacks import call
    checks = []
    original = call.check_inputs
    monkeypatch.setattr(call, "check_inputs", lambda inputs: checks.append(1) or original(inputs))
    model, x = small_cnn(1, 5), torch.rand(2, 1, 6, 6)
    y = model(x).argmax(1)
    attacks.str_attack_linf(model, x, y, epsilon=0.2, binary_search_steps=1, max_iterations=5,
                            refine_iterations=2)
    assert len(checks) == 1


def test_a_bad_configuration_costs_no_model_pass_and_names_the_attack():
    model, x = small_cnn(1, 5), torch.rand(2, 1, 6, 6)
    counting = CountingModel(model)
    with pytest.raises(ValueError, match=r"str_attack_linf: rescue_steps must be an integer >= 0"):
        attacks.str_attack_linf(counting, x, torch.tensor([0, 1]), epsilon=0.2, rescue_steps=-1)
    assert counting.calls == 0


def test_from_an_evaluation_to_the_admm_step_in_at_most_five_functions(tmp_path, monkeypatch):
    """The path of a configured keyword (``--set str_attack.tau=0.5``): the spec's validated
    configuration reaches the solver step through at most five library functions."""
    from strattack.evaluation import runner
    from strattack.evaluation.examples import make_examples
    from strattack.evaluation.store import ResultStore
    from strattack.solver.admm import StructuredADMM

    paths = []
    step = StructuredADMM.step

    def spy(self, *args, **kwargs):
        frames = [f.function for f in inspect.stack()[1:]]
        paths.append((frames[:frames.index("run_evaluation")], self.params.tau))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(StructuredADMM, "step", spy)
    model, x = small_cnn(1, 5), torch.rand(1, 1, 6, 6)
    y = model(x).argmax(1)
    spec = runner.AttackSpec("str_attack", {"tau": 0.5, "binary_search_steps": 1,
                                            "max_iterations": 1, "refine": False})
    with ResultStore(tmp_path / "r.sqlite") as store:
        runner.run_evaluation(model, x, y, make_examples([0], y.tolist(), "next", 5), [spec],
                              store, progress=False)
    path, tau = paths[0]
    assert tau == 0.5
    assert len(path) <= 5, path
