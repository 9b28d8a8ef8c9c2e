"""strattack: structured adversarial attacks (Xu et al., ICLR 2019) in plain PyTorch.

Every attack shares one calling convention::

    result = attack(model, inputs, labels, *, targeted=False, ...)

``model`` maps (N, C, H, W) inputs in [0, 1] to logits (N, K); ``labels`` are the targets when
``targeted`` else the true classes; the result is an :class:`AttackResult`.
"""
from .attacks.structured import str_attack
from .result import AttackResult

__all__ = ["str_attack", "AttackResult"]
__version__ = "0.1.0"
