"""Classifiers attacked in the StrAttack paper (Appendix F) and their pretrained weights."""

from .nets import CIFAR10Net, MNISTNet, Normalized
from .pretrained import load_pretrained

__all__ = ["CIFAR10Net", "MNISTNet", "Normalized", "load_pretrained"]
