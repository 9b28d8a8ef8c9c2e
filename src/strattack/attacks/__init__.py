"""Attacks built on the solver core, one module per attack family."""
from .admm_framework import admm_attack
from .structured import str_attack, str_attack_linf

__all__ = ["admm_attack", "str_attack", "str_attack_linf"]
