"""StrAttack and the general ADMM attack as foolbox 3 minimization attacks.

::

    import foolbox as fb
    from strattack.compat.foolbox import StrAttack
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))     # preprocessing=dict(mean=..., std=...,
                                                       # axis=-3) if the model takes normalised
    raw, clipped, success = StrAttack(tau=2.0)(fmodel, images, labels, epsilons=None)
    criterion = fb.criteria.TargetedMisclassification(targets)   # targeted
    raw, clipped, success = StrAttack()(fmodel, images, criterion, epsilons=None)

As every foolbox ``MinimizationAttack``: ``epsilons=None`` returns the minimal examples found
(``clipped`` is ``raw``), a number or a list of them clips the l2 norm of the perturbation
(``distance = l2``) and reports success per epsilon. Criteria: ``Misclassification`` (or plain
labels) and ``TargetedMisclassification``. The model must be a ``PyTorchModel`` with bounds
(0, 1), the attacks' box; its preprocessing (normalisation) is applied by foolbox on every
call. Keywords are those of :func:`~strattack.attacks.str_attack` /
:func:`~strattack.attacks.admm_attack`, checked when the attack is built; the
:class:`~strattack.result.AttackResult` of the last run (passes, norms, our own success with the
``confidence`` kappa) is ``attack.last_result``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..attacks import admm_attack, gse, str_attack
from ..result import AttackResult
from ._params import attack_parameters, missing_extra

try:
    import eagerpy as ep
    from foolbox.attacks.base import (MinimizationAttack, T, get_criterion, raise_if_kwargs,
                                      verify_input_bounds)
    from foolbox.criteria import Criterion, Misclassification, TargetedMisclassification
    from foolbox.distances import l2
    from foolbox.models import Model
except ImportError as err:
    raise missing_extra("foolbox", "foolbox") from err

__all__ = ["ADMM", "GSE", "StrAttack"]


class _Delegating(MinimizationAttack):
    """A foolbox minimization attack that runs one of our attack functions (``_function``)."""

    _function: Callable[..., AttackResult]
    distance = l2

    def __init__(self, **params: Any) -> None:
        self.params = attack_parameters(self._function, params, type(self).__name__)
        self._last_result: AttackResult | None = None

    @property
    def last_result(self) -> AttackResult | None:
        """The :class:`AttackResult` of the last run (None before the first)."""
        return self._last_result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    def run(self, model: Model, inputs: T,
            criterion: Misclassification | TargetedMisclassification | T, *,
            early_stop: float | None = None, **kwargs: Any) -> T:
        """The adversarial examples (``early_stop`` is ignored: the attack always minimises)."""
        raise_if_kwargs(kwargs)
        x, restore_type = ep.astensor_(inputs)
        verify_input_bounds(x, model)
        _check_model(model, x)
        wanted, targeted = _wanted_classes(get_criterion(criterion))
        result = self._function(model, x.raw, wanted, targeted=targeted, **self.params)
        self._last_result = result
        return restore_type(ep.astensor(result.adv))


def _check_model(model: Model, x: ep.Tensor) -> None:
    """Our attacks are PyTorch code on the box [0, 1]."""
    if not isinstance(x, ep.PyTorchTensor):
        raise ValueError(f"the strattack attacks take PyTorch tensors (a foolbox PyTorchModel), "
                         f"got {type(x.raw).__name__}")
    if tuple(model.bounds) != (0, 1):
        raise ValueError(f"the strattack attacks work on images in [0, 1]: build the model with "
                         f"bounds=(0, 1) (and its normalisation as preprocessing), not "
                         f"{tuple(model.bounds)}")


def _wanted_classes(criterion: Criterion) -> tuple[Tensor, bool]:
    """The classes to reach (targets) or to leave (true labels), and whether targeted."""
    if isinstance(criterion, TargetedMisclassification):
        return criterion.target_classes.raw, True
    if isinstance(criterion, Misclassification):
        return criterion.labels.raw, False
    raise ValueError(f"unsupported criterion {criterion!r}: use Misclassification (or labels) "
                     "or TargetedMisclassification")


class StrAttack(_Delegating):
    """:func:`strattack.attacks.str_attack` (StrAttack, Xu et al., ICLR 2019): a group-sparse
    perturbation; defaults are the paper's (Appendix F)."""

    _function = staticmethod(str_attack)


class ADMM(_Delegating):
    """:func:`strattack.attacks.admm_attack`: the general ADMM framework (``tau=0`` and
    ``distortion="l2"``: a C&W-l2-like attack; ``distortion="elastic"``: EAD-like)."""

    _function = staticmethod(admm_attack)


class GSE(_Delegating):
    """:func:`strattack.attacks.gse` (GSE, Sadiku, Wagner & Pokutta, ICLR 2025): group-wise
    sparse perturbations by a proximal gradient method with the 1/2-quasinorm."""

    _function = staticmethod(gse)
