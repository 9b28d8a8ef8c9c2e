"""Attacks built on the solver core, one module per attack family.

Each public attack is called as ``attack(model, inputs, labels, *, targeted=False, ...)``; its
configuration (every other keyword) is a frozen value of its family (:class:`ADMMConfig`,
:class:`CWL2Config`, ...) validated once, and ``attack.run(model, inputs, labels, config)`` runs
it with a ready configuration (:mod:`strattack.attacks.call`).
"""
from .admm_config import ADMMConfig, StrAttackConfig
from .admm_framework import admm_attack
from .call import Attack
from .carlini_wagner import CWL2Config, CWLinfConfig, cw_l2, cw_linf
from .elastic_net import EADConfig, ead
from .fast_gradient import FGMConfig, IFGSMConfig, fgm, ifgsm
from .group_sparse import GSE_IMAGENET, GSEConfig, gse
from .presets import APP_F, AUTHORS_CODE, STRATTACK, STRATTACK_LINF
from .structured import str_attack, str_attack_linf

__all__ = ["admm_attack", "str_attack", "str_attack_linf", "cw_l2", "cw_linf", "ead", "fgm", "ifgsm",
           "gse", "GSEConfig", "GSE_IMAGENET", "Attack", "ADMMConfig", "StrAttackConfig", "CWL2Config", "CWLinfConfig", "EADConfig",
           "FGMConfig", "IFGSMConfig", "APP_F", "STRATTACK", "STRATTACK_LINF", "AUTHORS_CODE"]
