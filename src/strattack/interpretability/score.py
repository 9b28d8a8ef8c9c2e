"""Boolean saliency masks and the interpretability score (IS) of the StrAttack paper, eq. (23).

Section 6: ``B_ASM(i) = 1`` where the ASM score of entry ``i`` exceeds a threshold ``nu``, with
``nu`` set to a percentile of the image's ASM scores (30th to 90th in Fig. 3(a), 90th in
Fig. 3(b)); then ``IS(delta) = ||B_ASM o delta||_2 / ||delta||_2`` (eq. (23)). Replacing ASM by
CAM gives the CAM-based IS quoted in Section 6.

Threshold convention (:func:`percentile_threshold`): the nu-th percentile of one image's scores
is computed like ``numpy.percentile(..., method="linear")``: sort the ``d`` scores
``s_(0) <= ... <= s_(d-1)`` and interpolate linearly at position ``nu/100 * (d - 1)``. The mask
keeps the entries **strictly above** it (``>``, the default: the paper's ``ASM > nu``);
``strict=False`` keeps those at or above it (``>=``), so the 0th percentile keeps every entry; with distinct scores the kept fraction,
``(d - ceil(nu/100 * (d - 1))) / d``, is within ``1/d`` of ``1 - nu/100``. Ties at the
threshold are all kept with ``strict=False``. The two differ where many scores equal the threshold, which for ASM is
typical: eqs. (60)/(61) are exactly 0 on every entry whose gradients have the wrong signs, so
a percentile below the fraction of zeros is 0, and then ``>=`` keeps all zero-score entries
while ``>`` keeps none of them.

GSE's IS (Sadiku, Wagner & Pokutta, ICLR 2025) is this eq. (23) under two other conventions, so
it is an option here rather than a second score: the map is ASM ``variant="gse"``
(:func:`~.asm.asm`) and the threshold ``rank="nonzero"``: the order statistic of the image's
**non-zero** scores ``a_(1) <= ... <= a_(m)`` at rank ``r = ceil(nu/100 * (m + 1))``, i.e.
``a_(r)`` (0 for ``r = 0``, no entry kept past the top: GSE's code fails there), keeping the
entries strictly above it. Zero scores do not count, so the mask is the top ``1 - nu/100`` of
the non-zero scores instead of a share of every entry. :func:`gse_interpretability_mask`
composes the two.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["percentile_threshold", "percentile_mask", "asm_mask", "cam_mask",
           "interpretability_score", "interpretability_curve", "gse_interpretability_mask"]

#: "linear": numpy's percentile of all scores (ours); "nonzero": GSE's rank among non-zero ones
Rank = Literal["linear", "nonzero"]


def percentile_threshold(scores: Tensor, percentile: float, rank: Rank = "linear") -> Tensor:
    """Per-image nu-th percentile of ``scores`` (N, ...): ``rank="linear"``, linear
    interpolation over all scores (numpy's default); ``"nonzero"``, GSE's order statistic of
    the non-zero scores (module docstring).

    Returns (N,) in the dtype of ``scores`` (float32 for integer/bool scores). Sort-based, so it has
    no size limit (unlike ``torch.quantile``).
    """
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    if scores.dim() < 1 or scores.shape[0] == 0 or scores[0].numel() == 0:
        raise ValueError(f"scores must be (N, ...) with N >= 1 and entries, got "
                         f"{tuple(scores.shape)}")
    flat = scores.detach().flatten(1) if scores.dim() > 1 else scores.detach()[:, None]
    if not flat.is_floating_point():
        flat = flat.float()
    if rank == "nonzero":
        return _nonzero_rank_threshold(flat, float(percentile))
    if rank != "linear":
        raise ValueError(f"rank must be 'linear' or 'nonzero', got {rank!r}")
    ordered = flat.sort(dim=1).values
    d = ordered.shape[1]
    pos = float(percentile) / 100.0 * (d - 1)
    lo = int(pos)                     # floor (pos >= 0)
    hi = min(lo + 1, d - 1)
    frac = pos - lo
    return ordered[:, lo] + frac * (ordered[:, hi] - ordered[:, lo])


def _nonzero_rank_threshold(flat: Tensor, percentile: float) -> Tensor:
    """GSE's threshold per row of ``flat`` (N, d): its non-zero entries sorted, the one at rank
    ceil(percentile/100 * (m + 1)) (1-based; 0 at rank 0; the largest past the top)."""
    nonzero = flat != 0
    m = nonzero.sum(dim=1)
    # zeros sorted past every non-zero score: the first m entries are the non-zero ones
    ordered = torch.where(nonzero, flat, torch.full_like(flat, float("inf"))).sort(dim=1).values
    ranks = torch.ceil(percentile / 100.0 * (m + 1).double()).long()
    picked = ordered.gather(1, (torch.minimum(ranks, m) - 1).clamp(min=0)[:, None])[:, 0]
    return torch.where((ranks > 0) & (m > 0), picked, torch.zeros_like(picked))


def percentile_mask(scores: Tensor, percentile: float, *, strict: bool = True,
                    rank: Rank = "linear") -> Tensor:
    """Boolean mask, shaped like ``scores`` (N, ...), of the entries at or above (``strict``:
    strictly above) their image's ``percentile``-th percentile (``rank``: its convention; see
    the module docstring)."""
    thr = percentile_threshold(scores, percentile, rank)
    thr = thr.reshape((-1,) + (1,) * (scores.dim() - 1))
    values = scores.detach() if scores.is_floating_point() else scores.detach().float()
    return values > thr if strict else values >= thr


def asm_mask(scores: Tensor, percentile: float, *, strict: bool = True) -> Tensor:
    """``B_ASM`` of Section 6: True where the ASM score (:func:`~.asm.asm`, (N, C, H, W)) is at or
    above the per-image ``percentile``-th percentile ``nu`` of all ``C*H*W`` scores of that image
    (``strict=True``: strictly above, the paper's ``ASM > nu``). Same shape as ``scores``."""
    return percentile_mask(scores, percentile, strict=strict)


def gse_interpretability_mask(scores: Tensor, percentile: float) -> Tensor:
    """GSE's ``nu_P(ASM)``: the entries of its ASM (``asm(..., variant="gse")``) strictly above
    the ``percentile``-th order statistic of the image's non-zero scores; with
    :func:`interpretability_score` it gives GSE's IS."""
    return percentile_mask(scores, percentile, strict=True, rank="nonzero")


def cam_mask(cams: Tensor, percentile: float, *, strict: bool = True) -> Tensor:
    """``B_CAM``, the CAM analogue of ``B_ASM`` (Section 6, CAM-based IS): True where the class
    activation map (:func:`~.cam.cam`, (N, H, W)) is at or above its per-image
    ``percentile``-th percentile (``strict``: strictly above). Shape (N, H, W), which
    :func:`interpretability_score` broadcasts over the channels of delta."""
    return percentile_mask(cams, percentile, strict=strict)


def _broadcast_mask(delta: Tensor, mask: Tensor) -> Tensor:
    if mask.dim() == delta.dim() - 1 and delta.dim() == 4:
        mask = mask.unsqueeze(1)      # (N, H, W) -> (N, 1, H, W): one pixel mask for all channels
    if mask.dim() != delta.dim() or mask.shape[0] != delta.shape[0]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match delta {tuple(delta.shape)}: "
                         "use delta's shape, (N, 1, H, W) or (N, H, W)")
    # (torch.broadcast_shapes would do, but imports sympy: about a second on first use)
    if any(m not in (1, d) for m, d in zip(mask.shape, delta.shape)):
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to delta "
                         f"{tuple(delta.shape)}")
    return mask


def interpretability_score(delta: Tensor, mask: Tensor) -> Tensor:
    """Interpretability score of eq. (23), per image: ``IS = ||B o delta||_2 / ||delta||_2``.

    Args:
        delta: perturbations (N, C, H, W) (any (N, ...) works).
        mask: Boolean map ``B`` (nonzero = selected), either shaped like ``delta``, or
            (N, 1, H, W) / (N, H, W) to use one pixel mask for all channels (as from
            :func:`cam_mask`).

    Returns:
        (N,) scores in [0, 1] (float32 for non-float ``delta``): 1 when ``B`` covers the support
        of ``delta``, 0 when disjoint from it. **Convention for delta = 0** (a failed attack or an
        image needing no perturbation): the ratio 0/0 is undefined and the score is ``NaN``, so
        that averages over images must say how they treat it (``torch.nanmean`` skips them)
        rather than silently counting 0 or 1.
    """
    if delta.dim() < 1:
        raise ValueError("delta must be batched (N, ...)")
    b = (_broadcast_mask(delta, mask).detach() != 0).to(delta.device)
    d = delta.detach()
    if not d.is_floating_point():
        d = d.float()
    n = d.shape[0]
    masked = torch.where(b, d, torch.zeros((), dtype=d.dtype, device=d.device))
    num = masked.reshape(n, -1).norm(dim=1)
    den = d.reshape(n, -1).norm(dim=1)
    ratio = num / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, ratio.clamp(max=1.0), torch.full_like(den, float("nan")))


def interpretability_curve(scores: Tensor, delta: Tensor, percentiles: Sequence[float], *,
                           strict: bool = True) -> Tensor:
    """IS of every image at every threshold percentile, as in Fig. 3(a): ``(P, N)`` with row
    ``p`` = ``interpretability_score(delta, percentile_mask(scores, percentiles[p]))``. Average
    over images with ``torch.nanmean(curve, dim=1)`` (delta = 0 gives NaN)."""
    return torch.stack([interpretability_score(delta, percentile_mask(scores, p, strict=strict))
                        for p in percentiles])
