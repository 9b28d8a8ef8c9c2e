"""Adversarial saliency map (ASM) of Papernot et al. (2016b), as used in the StrAttack paper
(Xu et al., ICLR 2019, Section 6 and Appendix E).

With logits ``Z(x)`` (the network output before the softmax), target class ``t`` and true class
``t0``, the ASM of every input entry ``i`` (one pixel of one channel: ``x`` lives in ``R^d``,
``d = C*H*W``) is

* eq. (61), the paper's working definition (Appendix E), default ``variant="61"``::

      ASM(x, t)[i] = 0                                   if dZ_t/dx_i < 0 or dZ_t0/dx_i > 0
                   = (dZ_t/dx_i) * |dZ_t0/dx_i|          otherwise

* eq. (60), the original definition of Papernot et al., ``variant="60"``::

      ASM(x, t)[i] = 0                                   if dZ_t/dx_i < 0 or S_i > 0
                   = (dZ_t/dx_i) * |S_i|                 otherwise,
      S_i = sum_{j != t} dZ_j/dx_i.

Both cases collapse into one product of rectified gradients,
``ASM = max(g_t, 0) * max(-g_o, 0)`` with ``g_o = dZ_t0/dx`` (61) or ``g_o = S`` (60): where
``g_t >= 0`` and ``g_o <= 0`` it is ``g_t * |g_o|``, and elsewhere one factor is zero. This is
what :func:`asm` computes.

* ``variant="gse"``, the map of GSE's code (Sadiku, Wagner & Pokutta, ICLR 2025; its IS is
  eq. (23) with this map and another percentile, see :mod:`.score`)::

      ASM(x, t)[i] = (dZ_t/dx_i) * |dZ_t0/dx_i|          everywhere

  eq. (61) without the sign conditions: equal to it where ``dZ_t/dx_i >= 0`` and
  ``dZ_t0/dx_i <= 0``, positive also where both gradients are positive, negative where
  ``dZ_t/dx_i < 0``.

Batching: the logits of different images do not depend on each other's inputs (a model in eval
mode), so ``d(sum_n Z(x_n)_{t_n})/dx`` holds the gradient of every image's own target logit.
One backward pass per needed logit (two in all) gives the whole batch; nothing loops over
pixels or images.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["asm", "logit_gradients", "saliency_from_gradients"]

Variant = Literal["61", "60", "gse"]
VARIANTS: tuple[str, ...] = ("61", "60", "gse")


def _labels(labels: Tensor | int, n: int, num_classes: int, device: torch.device,
            name: str) -> Tensor:
    """``labels`` as a (N,) int64 tensor on ``device`` (an int is used for every image)."""
    out = torch.as_tensor(labels, device=device).long().reshape(-1)
    if out.numel() == 1:
        out = out.expand(n)
    if out.shape != (n,):
        raise ValueError(f"{name} must be an int or have shape ({n},), got {tuple(out.shape)}")
    if bool(((out < 0) | (out >= num_classes)).any()):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got {out.tolist()}")
    return out


def logit_gradients(model: nn.Module, inputs: Tensor, targets: Tensor | int,
                    others: Tensor | int | None = None) -> tuple[Tensor, Tensor]:
    """Gradients of the logits that enter the ASM, for a whole batch at once.

    Returns ``(g_t, g_o)``, both shaped like ``inputs``: ``g_t[n] = dZ(x_n)_{t_n}/dx_n`` and
    ``g_o[n] = dZ(x_n)_{o_n}/dx_n`` when ``others`` (the classes ``o``) is given (eq. (61) uses
    ``o = t0``), else ``g_o[n] = sum_{j != t_n} dZ(x_n)_j/dx_n`` (eq. (60)). Each is one
    backward pass of a scalar summed over the batch.
    """
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be batched (N, ...), got shape {tuple(inputs.shape)}")
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"model must return logits (N, K), got shape {tuple(logits.shape)}")
        n, k = logits.shape
        t = _labels(targets, n, k, logits.device, "targets")
        z_t = logits.gather(1, t[:, None]).sum()
        (g_t,) = torch.autograd.grad(z_t, x, retain_graph=True)
        if others is None:   # sum_{j != t} Z_j = sum_j Z_j - Z_t  (eq. (60))
            z_o = logits.sum() - z_t
        else:                # Z_{t0}  (eq. (61))
            o = _labels(others, n, k, logits.device, "true_labels")
            z_o = logits.gather(1, o[:, None]).sum()
        (g_o,) = torch.autograd.grad(z_o, x)
    return g_t, g_o


def asm(model: nn.Module, inputs: Tensor, true_labels: Tensor | int | None,
        targets: Tensor | int, *, variant: Variant = "61") -> Tensor:
    """Adversarial saliency map ``ASM(x, t)`` of every input entry (Appendix E).

    Args:
        model: maps ``inputs`` (N, C, H, W) in [0, 1] to logits (N, K); it should be in eval mode
            (images must not interact, e.g. through BatchNorm batch statistics).
        inputs: images x, (N, C, H, W) (any (N, ...) works); the result lives on their device.
        true_labels: true classes t0, an int or (N,); used by eq. (61), ignored (may be None) by
            eq. (60).
        targets: target classes t, an int or (N,).
        variant: ``"61"`` (default; the paper's eq. (61), true and target logits only),
            ``"60"`` (eq. (60), target logit against the sum of all other logits) or ``"gse"``
            (GSE's map, eq. (61) without its sign conditions).

    Returns:
        A tensor shaped like ``inputs``: ``max(dZ_t/dx, 0) * max(-dZ_o/dx, 0)``, equal to
        eq. (61) (``o = t0``) or eq. (60) (``dZ_o = sum_{j != t} dZ_j``) entry by entry, or
        for ``"gse"`` ``dZ_t/dx * |dZ_t0/dx|`` (of either sign). Two backward passes over the
        batch.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant != "60" and true_labels is None:
        raise ValueError(f"variant {variant!r} needs true_labels (it uses the true-class logit)")
    others = true_labels if variant != "60" else None
    g_t, g_o = logit_gradients(model, inputs, targets, others)
    return saliency_from_gradients(g_t, g_o, variant)


def saliency_from_gradients(g_t: Tensor, g_o: Tensor, variant: Variant = "61") -> Tensor:
    """The ASM of ``variant`` from :func:`logit_gradients`' ``(g_t, g_o)`` (``g_o`` of the true
    class for "61" and "gse", of the other classes' sum for "60"): several maps from one pair
    of backward passes."""
    if variant == "gse":
        return g_t * g_o.abs()
    # eqs. (60)/(61): zero where dZ_t/dx_i < 0 or dZ_o/dx_i > 0, else dZ_t/dx_i * |dZ_o/dx_i|.
    return g_t.clamp(min=0) * g_o.neg().clamp(min=0)
