"""Attacks built on the solver core, one module per attack family."""
from .structured import str_attack

__all__ = ["str_attack"]
