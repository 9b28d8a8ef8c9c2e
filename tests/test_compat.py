"""strattack.compat: the torchattacks and foolbox adapters give exactly what our attack functions
give on the same inputs and settings (the bundled MNIST model, a few bundled images, small
budgets). Skipped where the optional package is missing; CI installs both (.ci/run)."""
from __future__ import annotations

import importlib
import sys

import pytest
import torch

from strattack.attacks import admm_attack, str_attack, str_attack_linf
from strattack.data import load_samples
from strattack.models import Normalized, load_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

#: Budgets small enough for a fast test that still runs every stage (search and refinement);
#: the large c makes the few iterations succeed on these images.
SMALL = {"initial_const": 10.0, "binary_search_steps": 1, "max_iterations": 10,
         "refine_search_steps": 1, "refine_iterations": 5}


@pytest.fixture(scope="module")
def model():
    """The bundled MNIST model: Normalized(net, mean, std), taking [0, 1] images."""
    return load_pretrained("mnist")


@pytest.fixture(scope="module")
def batch():
    """Three bundled test images, their true labels and targets label + 1."""
    images, labels, _ = load_samples("mnist")
    return images[:3], labels[:3], (labels[:3] + 1) % 10


def _same(adv, result):
    assert adv.dtype == result.adv.dtype
    assert torch.equal(adv, result.adv)


def _normalization(model):
    """The bundled model's mean and std as lists, and its network (which takes normalised
    images)."""
    return model.mean.flatten().tolist(), model.std.flatten().tolist(), model.model


def _import_without(monkeypatch, package, adapter):
    """Import the adapter module as if ``package`` were not installed."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, adapter, raising=False)
    return importlib.import_module(adapter)


# ------------------------------------------------------------------ torchattacks
@pytest.fixture(scope="module")
def ta():
    pytest.importorskip("torchattacks")
    return importlib.import_module("strattack.compat.torchattacks")


def test_torchattacks_untargeted_is_str_attack(ta, model, batch):
    x, y, _ = batch
    atk = ta.StrAttack(model, tau=1.0, **SMALL)
    adv = atk(x, y)
    reference = str_attack(model, x, y, tau=1.0, **SMALL)
    _same(adv, reference)
    assert torch.equal(atk.last_result.success, reference.success)
    assert atk.get_mode() == "default"


def test_torchattacks_targeted_by_label_is_str_attack(ta, model, batch):
    x, _, t = batch
    atk = ta.StrAttack(model, **SMALL)
    atk.set_mode_targeted_by_label(quiet=True)
    reference = str_attack(model, x, t, targeted=True, **SMALL)
    _same(atk(x, t), reference)
    assert reference.success.any()


def test_torchattacks_targeted_by_function_knows_the_true_labels(ta, model, batch):
    x, y, t = batch
    atk = ta.StrAttack(model, **SMALL)
    atk.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10, quiet=True)
    _same(atk(x, y), str_attack(model, x, t, targeted=True, true_labels=y, **SMALL))
    atk.set_mode_targeted_by_function(lambda images, labels: labels, quiet=True)
    with pytest.raises(ValueError, match="true"):     # a target equal to the true class
        atk(x, y)


def test_torchattacks_random_targets(ta, model, batch):
    x, y, _ = batch
    atk = ta.StrAttack(model, **SMALL)
    atk.set_mode_targeted_random(quiet=True)
    torch.manual_seed(3)
    adv = atk(x, y)
    torch.manual_seed(3)
    targets = atk.get_random_target_label(x, y)
    assert not (targets == y).any()
    _same(adv, str_attack(model, x, targets, targeted=True, true_labels=y, **SMALL))


def test_torchattacks_linf_and_admm(ta, model, batch):
    x, _, t = batch
    linf = ta.StrAttackLinf(model, epsilon=0.3, **SMALL)
    linf.set_mode_targeted_by_label(quiet=True)
    _same(linf(x, t), str_attack_linf(model, x, t, epsilon=0.3, targeted=True, **SMALL))
    dense = ta.ADMM(model, tau=0.0, refine=False, binary_search_steps=1, max_iterations=10)
    dense.set_mode_targeted_by_label(quiet=True)
    _same(dense(x, t), admm_attack(model, x, t, targeted=True, tau=0.0, refine=False,
                                   binary_search_steps=1, max_iterations=10))


def test_torchattacks_normalization_used(ta, model, batch):
    """A model that takes normalised images: torchattacks takes and returns normalised images
    and the attack works in [0, 1] between them, as ours does on Normalized(model)."""
    x, _, t = batch
    mean, std, net = _normalization(model)
    atk = ta.StrAttack(net, **SMALL)
    atk.set_normalization_used(mean=mean, std=std)
    atk.set_mode_targeted_by_label(quiet=True)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    normalised = (x - m) / s
    adv = atk(normalised, t)
    pixels = normalised * s + m                 # what torchattacks hands the attack
    reference = str_attack(Normalized(net, mean, std), pixels, t, targeted=True, **SMALL)
    assert torch.equal(adv, (reference.adv - m) / s)
    assert reference.success.any()


def test_torchattacks_checks_the_keywords_when_built(ta, model):
    with pytest.raises(TypeError, match="StrAttack: got an unexpected keyword argument 'tua'"):
        ta.StrAttack(model, tua=1.0)
    with pytest.raises(ValueError, match="StrAttack: tau must be a finite number"):
        ta.StrAttack(model, tau="2")
    with pytest.raises(TypeError, match=r"\['targeted'\] are set by the adapter"):
        ta.StrAttack(model, targeted=True)
    with pytest.raises(TypeError, match="epsilon"):
        ta.StrAttackLinf(model)


def test_torchattacks_missing_names_the_extra(monkeypatch):
    with pytest.raises(ImportError, match=r'strattack\[torchattacks\]".*--no-deps torchattacks'):
        _import_without(monkeypatch, "torchattacks", "strattack.compat.torchattacks")


# ------------------------------------------------------------------ foolbox
@pytest.fixture(scope="module")
def fb():
    return pytest.importorskip("foolbox")


@pytest.fixture(scope="module")
def fa(fb):
    return importlib.import_module("strattack.compat.foolbox")


def test_foolbox_untargeted_with_labels_is_str_attack(fb, fa, model, batch):
    x, y, _ = batch
    attack = fa.StrAttack(tau=1.0, **SMALL)
    raw, clipped, success = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=None)
    reference = str_attack(model, x, y, tau=1.0, **SMALL)
    _same(raw, reference)
    assert clipped is raw
    assert torch.equal(success, reference.success)
    assert attack.last_result.forward_passes is not None


def test_foolbox_targeted_misclassification(fb, fa, model, batch):
    x, _, t = batch
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    raw, _, success = fa.StrAttack(**SMALL)(fmodel, x, fb.criteria.TargetedMisclassification(t),
                                            epsilons=None)
    reference = str_attack(model, x, t, targeted=True, **SMALL)
    _same(raw, reference)
    assert torch.equal(success, reference.success) and success.any()


def test_foolbox_admm_with_several_epsilons(fb, fa, model, batch):
    """epsilons: a list gives one clipped tensor and one success row per epsilon."""
    x, _, t = batch
    settings = {"tau": 0.0, "refine": False, "binary_search_steps": 1, "max_iterations": 10}
    raws, clipped, success = fa.ADMM(**settings)(
        fb.PyTorchModel(model, bounds=(0, 1)), x, fb.criteria.TargetedMisclassification(t),
        epsilons=[None, 1e-3])
    reference = admm_attack(model, x, t, targeted=True, **settings)
    _same(raws[0], reference)
    assert torch.equal(clipped[0], reference.adv)
    assert (clipped[1] - x).flatten(1).norm(dim=1).max() <= 1e-3 + 1e-6
    assert success.shape == (2, 3) and not success[1].any()


def test_foolbox_preprocessing(fb, fa, model, batch):
    """A model that takes normalised images, normalised by foolbox's preprocessing: the same
    as our attack on Normalized(model)."""
    x, _, t = batch
    mean, std, net = _normalization(model)
    fmodel = fb.PyTorchModel(net, bounds=(0, 1), preprocessing={
        "mean": torch.tensor(mean), "std": torch.tensor(std), "axis": -3})
    raw, _, _ = fa.StrAttack(**SMALL)(fmodel, x, fb.criteria.TargetedMisclassification(t),
                                      epsilons=None)
    _same(raw, str_attack(Normalized(net, mean, std), x, t, targeted=True, **SMALL))


def test_foolbox_rejects_other_bounds_and_criteria(fb, fa, model, batch):
    x, y, _ = batch
    with pytest.raises(ValueError, match=r"images in \[0, 1\]: build the model with bounds"):
        fa.StrAttack(**SMALL)(fb.PyTorchModel(model, bounds=(0, 255)), x, y, epsilons=None)
    with pytest.raises(ValueError, match="unsupported criterion"):
        both = fb.criteria.Misclassification(y) & fb.criteria.Misclassification(y)
        fa.StrAttack(**SMALL).run(fb.PyTorchModel(model, bounds=(0, 1)), x, both)
    with pytest.raises(TypeError, match="ADMM: got an unexpected keyword argument"):
        fa.ADMM(steps=3)


def test_foolbox_missing_names_the_extra(monkeypatch):
    with pytest.raises(ImportError, match=r'strattack\[foolbox\]'):
        _import_without(monkeypatch, "foolbox", "strattack.compat.foolbox")
