"""Measure the interpretability claim of Section 6 on many examples at once.

For every example (x0, t0, t) and every attack's perturbation delta:

* ASM-based IS (Fig. 3(a)): ``IS(delta)`` with ``B_ASM`` = ASM(x0, t) above its nu-th percentile,
  for each nu in ``percentiles``; the ASM does not depend on the attack, so it is computed once
  per example (two backward passes) and shared by all attacks;
* CAM-based IS (Sec. 6, "By replacing ASM with CAM"): the same with the CAM of the original image
  under its true class t0 (the most discriminative region of x0 for t0), broadcast over channels.
  The paper does not give the CAM threshold; we report the whole curve. Models without a global
  average pooling + linear head (our CIFAR-10 and MNIST networks) get Grad-CAM instead
  (:func:`~.class_maps.choose_class_maps`); ``cam_method`` says which was used.

:func:`asm_interpretability_scores` gives one percentile's ASM-based IS under both conventions,
ours and GSE's, from one pair of backward passes: the IS columns of ``strattack report``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .asm import asm, logit_gradients, saliency_from_gradients
from .class_maps import ClassMaps, choose_class_maps
from .score import (asm_mask, gse_interpretability_mask, interpretability_curve,
                    interpretability_score)

__all__ = ["PERCENTILES", "InterpretabilityCurves", "asm_interpretability_scores",
           "measure_interpretability"]

#: Fig. 3(a): from the 30th to the 90th percentile.
PERCENTILES: tuple[float, ...] = (30, 40, 50, 60, 70, 80, 90)


@dataclass
class InterpretabilityCurves:
    """Per attack a (P, N) tensor of IS values (NaN where delta = 0); ``cam_is`` is None for
    models with neither CAM nor Grad-CAM (no spatial feature map, e.g. an MLP)."""

    percentiles: tuple[float, ...]
    asm_is: dict[str, Tensor] = field(default_factory=dict)
    cam_is: dict[str, Tensor] | None = None
    cam_unavailable: str | None = None     # why cam_is is None (choose_class_maps' message)
    #: which map the CAM-based IS used, e.g. "Grad-CAM (Selvaraju et al. 2017) at layer 'x'"
    cam_method: str | None = None
    #: the map's name for titles and labels: "CAM" or "Grad-CAM" (None without cam_is)
    cam_name: str | None = None
    #: "asm" (and "cam"): per example, the share of its scores that are exactly 0. ASM scores
    #: are mostly 0 (eqs. (60)/(61)), which makes the low-percentile part of the curves flat.
    zero_fraction: dict[str, Tensor] = field(default_factory=dict)

    def means(self) -> dict[str, dict[str, list[float]]]:
        """{"asm": {attack: [mean IS per percentile]}, "cam": {...}} (nan-aware means)."""
        out = {"asm": {k: torch.nanmean(v, dim=1).tolist() for k, v in self.asm_is.items()}}
        if self.cam_is is not None:
            out["cam"] = {k: torch.nanmean(v, dim=1).tolist() for k, v in self.cam_is.items()}
        return out

    def paired_difference(self, first: str, second: str,
                          kind: str = "asm") -> tuple[list[float], list[float], int]:
        """Per percentile, the mean over examples of IS(first) - IS(second) and its standard
        error (std / sqrt(n), examples where both are defined), and n: whether one attack's
        curve lies above the other's by more than the example-to-example noise."""
        table = self.asm_is if kind == "asm" else self.cam_is
        if table is None:
            raise ValueError(f"no {kind} curves")
        diff = table[first] - table[second]                      # (P, N)
        both = ~diff.isnan().any(dim=0)
        diff = diff[:, both]
        n = int(both.sum())
        mean = diff.mean(dim=1)
        se = diff.std(dim=1) / n ** 0.5 if n > 1 else torch.full_like(mean, float("nan"))
        return mean.tolist(), se.tolist(), n


def measure_interpretability(model: nn.Module, inputs: Tensor, true_labels: Tensor,
                             targets: Tensor, deltas: Mapping[str, Tensor],
                             percentiles: Sequence[float] = PERCENTILES, *,
                             batch_size: int = 32, use_cam: bool | None = None,
                             strict: bool = True, variant: str = "61",
                             cam_layer: str | None = None) -> InterpretabilityCurves:
    """ASM- and CAM-based IS curves of each attack's ``deltas[name]`` (N, C, H, W) on ``inputs``.

    ``use_cam``: None = when the model has CAM or Grad-CAM (:func:`choose_class_maps`: exact
    CAM for a GAP + linear head, else Grad-CAM at ``cam_layer`` or its default), True = fail
    if it has neither, False = ASM only; ``variant``: the ASM, eq. ``"61"`` or ``"60"`` (see
    :func:`asm`)."""
    n = len(inputs)
    for name, delta in deltas.items():
        if delta.shape != inputs.shape:
            raise ValueError(f"perturbation of {name!r} has shape {tuple(delta.shape)}, inputs "
                             f"{tuple(inputs.shape)}")
    maps_of, no_cam = _class_maps(model, inputs[:1], use_cam, cam_layer)
    result = InterpretabilityCurves(tuple(percentiles))
    if maps_of is None:
        result.cam_unavailable = no_cam
    else:
        result.cam_method, result.cam_name = maps_of.description, maps_of.method
    asm_parts: dict[str, list[Tensor]] = {k: [] for k in deltas}
    cam_parts: dict[str, list[Tensor]] = {k: [] for k in deltas}
    zero_parts: dict[str, list[Tensor]] = {"asm": [], "cam": []}
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        x, y, t = inputs[sl], true_labels[sl], targets[sl]
        scores = asm(model, x, y, t, variant=variant)
        maps = None
        if maps_of is not None:
            maps = maps_of(x, y)[:, None]
            zero_parts["cam"].append(_zero_share(maps))
        zero_parts["asm"].append(_zero_share(scores))
        for name, delta in deltas.items():
            d = delta[sl].to(x.device, x.dtype)
            asm_parts[name].append(interpretability_curve(scores, d, percentiles, strict=strict))
            if maps is not None:
                cam_parts[name].append(interpretability_curve(maps, d, percentiles, strict=strict))
    result.asm_is = {k: torch.cat(v, dim=1).cpu() for k, v in asm_parts.items()}
    if maps_of is not None:
        result.cam_is = {k: torch.cat(v, dim=1).cpu() for k, v in cam_parts.items()}
    result.zero_fraction = {k: torch.cat(v) for k, v in zero_parts.items() if v}
    return result


def asm_interpretability_scores(model: nn.Module, inputs: Tensor, true_labels: Tensor,
                                targets: Tensor, delta: Tensor, percentile: float
                                ) -> dict[str, Tensor]:
    """(N,) ASM-based IS of ``delta`` on ``inputs`` at ``percentile``: "ours" (eq. (23) with
    eq. (61)'s ASM and the linear percentile of all scores) and "gse" (GSE's: the ASM without
    sign conditions, the percentile of the non-zero scores); NaN where delta = 0. The two maps
    share their gradients, so both cost two backward passes."""
    g_t, g_o = logit_gradients(model, inputs, targets, true_labels)
    d = delta.to(inputs.device, inputs.dtype)
    ours = asm_mask(saliency_from_gradients(g_t, g_o, "61"), percentile)
    gse = gse_interpretability_mask(saliency_from_gradients(g_t, g_o, "gse"), percentile)
    return {"ours": interpretability_score(d, ours).cpu(),
            "gse": interpretability_score(d, gse).cpu()}


def _class_maps(model: nn.Module, example: Tensor, use_cam: bool | None,
                layer: str | None) -> tuple[ClassMaps | None, str]:
    """The map method for the CAM-based IS, or None and why not (``use_cam`` True: raise)."""
    if use_cam is False:
        return None, "not asked for"
    try:
        return choose_class_maps(model, example, layer), ""
    except ValueError as err:
        if use_cam:
            raise
        return None, str(err)


def _zero_share(scores: Tensor) -> Tensor:
    """(N,) share of each example's entries that are exactly 0, on the CPU."""
    return (scores.detach() == 0).flatten(1).double().mean(dim=1).cpu()
