"""The C&W margin loss of eq. (3) and the adversarial criterion that goes with it."""
from __future__ import annotations

import torch
from torch import Tensor


def logit_margin(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Per-image margin; negative exactly when the image is classified as wanted.

    targeted:   max_{j != t} Z_j - Z_t   (eq. 3 before the max with -kappa)
    untargeted: Z_y - max_{j != y} Z_j
    """
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    is_label = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, labels[:, None], True)
    other = logits.masked_fill(is_label, float("-inf")).amax(dim=1)
    return other - label_logit if targeted else label_logit - other


def cw_loss(margin: Tensor, const: Tensor, confidence: float) -> Tensor:
    """f = c * max(margin, -kappa), eq. (3), per image."""
    return const * margin.clamp_min(-confidence)


def is_adversarial(margin: Tensor, confidence: float) -> Tensor:
    """Success with confidence kappa: the wanted class wins by at least kappa (and strictly)."""
    return (margin < 0) & (margin <= -confidence)
