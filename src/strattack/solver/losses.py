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


def hinge(margin: Tensor, confidence: float) -> Tensor:
    """max(margin + kappa, 0): the loss term of eq. (3), c * max(margin, -kappa), shifted by
    kappa as in the original C&W code (>= 0, zero exactly when the wanted class wins by kappa;
    same gradient). Every attack multiplies it by its own c."""
    return (margin + confidence).clamp_min(0)


def is_adversarial(margin: Tensor, confidence: float) -> Tensor:
    """Success with confidence kappa: the wanted class wins by at least kappa (and strictly)."""
    return (margin < 0) & (margin <= -confidence)
