"""StrAttack, its l_inf-bounded variant and the general ADMM attack as torchattacks attacks.

::

    from strattack.compat.torchattacks import StrAttack
    atk = StrAttack(model, tau=2.0, group_size=2, stride=2)
    atk.set_normalization_used(mean=[0.1307], std=[0.3081])   # if the model takes normalised
    atk.set_mode_targeted_by_label()                          # labels below are the targets
    adv = atk(images, labels)

Every torchattacks attack mode works: default (untargeted, ``labels`` = true classes),
``set_mode_targeted_by_label`` (``labels`` = targets), ``set_mode_targeted_by_function``,
``set_mode_targeted_random`` and ``set_mode_targeted_least_likely`` (``labels`` = true classes,
and a target equal to an image's true class is an error). Inside, the attack works in [0, 1]
pixel space on ``self.get_logits``, which applies the normalisation set with
``set_normalization_used`` (torchattacks then takes and returns normalised images); the model
mode is torchattacks' (``set_model_training_mode``). Keywords are those of
:func:`~strattack.attacks.str_attack` (:func:`~strattack.attacks.str_attack_linf`,
:func:`~strattack.attacks.admm_attack`), checked when the attack is built; the full
:class:`~strattack.result.AttackResult` of the last call (success, passes, norms) is
``atk.last_result``.

torchattacks' wheel declares torchvision and ``requests~=2.25.1`` but imports without either:
where torchvision cannot be installed (or must not replace your torch), install it with
``pip install --no-deps torchattacks scipy``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..attacks import admm_attack, gse, str_attack, str_attack_linf
from ..result import AttackResult
from ._params import attack_parameters, missing_extra

try:
    from torchattacks.attack import Attack
except ImportError as err:
    raise missing_extra("torchattacks", "torchattacks",
                        " (or, where torchvision cannot be installed: pip install --no-deps "
                        "torchattacks scipy)") from err

__all__ = ["ADMM", "GSE", "StrAttack", "StrAttackLinf"]

#: The torchattacks mode whose ``labels`` are the targets themselves (no true classes known).
BY_LABEL = "targeted(label)"


class _Delegating(Attack):
    """A torchattacks attack that runs one of our attack functions (``_function``) on a batch."""

    _function: Callable[..., AttackResult]

    def __init__(self, model: nn.Module, **params: Any) -> None:
        super().__init__(type(self).__name__, model)
        self.params = attack_parameters(self._function, params, type(self).__name__)
        self.supported_mode = ["default", "targeted"]
        self._last_result: AttackResult | None = None

    @property
    def last_result(self) -> AttackResult | None:
        """The :class:`AttackResult` of the last call (None before the first)."""
        return self._last_result

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Adversarial images in [0, 1] (torchattacks normalises them back when asked to)."""
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs labels: the true classes, or the "
                             "targets after set_mode_targeted_by_label()")
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        wanted, true_labels = labels, None
        if self.targeted:
            wanted = self.get_target_label(images, labels)
            true_labels = None if self.attack_mode == BY_LABEL else labels
        result = self._function(self.get_logits, images, wanted, targeted=self.targeted,
                                true_labels=true_labels, **self.params)
        self._last_result = result
        return result.adv


class StrAttack(_Delegating):
    """:func:`strattack.attacks.str_attack` (StrAttack, Xu et al., ICLR 2019): a group-sparse
    perturbation; defaults are the paper's (Appendix F)."""

    _function = staticmethod(str_attack)


class StrAttackLinf(_Delegating):
    """:func:`strattack.attacks.str_attack_linf`: StrAttack within ``||delta||_inf <= epsilon``
    (the paper's Table 2 setting)."""

    _function = staticmethod(str_attack_linf)

    def __init__(self, model: nn.Module, epsilon: float, **params: Any) -> None:
        super().__init__(model, epsilon=epsilon, **params)


class ADMM(_Delegating):
    """:func:`strattack.attacks.admm_attack`: the general ADMM framework (``tau=0`` and
    ``distortion="l2"``: a C&W-l2-like attack; ``distortion="elastic"``: EAD-like)."""

    _function = staticmethod(admm_attack)


class GSE(_Delegating):
    """:func:`strattack.attacks.gse` (GSE, Sadiku, Wagner & Pokutta, ICLR 2025): group-wise
    sparse perturbations by a proximal gradient method with the 1/2-quasinorm."""

    _function = staticmethod(gse)
