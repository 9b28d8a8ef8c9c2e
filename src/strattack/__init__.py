"""strattack: structured adversarial attacks (Xu et al., ICLR 2019) in plain PyTorch.

Every attack shares one calling convention::

    result = attack(model, inputs, labels, *, targeted=False, ...)

``model`` maps (N, C, H, W) inputs in [0, 1] to logits (N, K); ``labels`` are the targets when
``targeted`` else the true classes; the result is an :class:`AttackResult`.
"""
from .attacks import admm_attack, cw_l2, cw_linf, ead, fgm, ifgsm, str_attack, str_attack_linf
from .result import AttackResult

__all__ = ["AttackResult", "admm_attack", "str_attack", "str_attack_linf",
           "cw_l2", "cw_linf", "ead", "fgm", "ifgsm"]
__version__ = "0.1.0"
