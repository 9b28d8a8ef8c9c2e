"""Attacks built on the solver core, one module per attack family."""
from .admm_framework import admm_attack
from .carlini_wagner import cw_l2, cw_linf
from .elastic_net import ead
from .fast_gradient import fgm, ifgsm
from .structured import str_attack, str_attack_linf

__all__ = ["admm_attack", "str_attack", "str_attack_linf", "cw_l2", "cw_linf", "ead", "fgm", "ifgsm"]
