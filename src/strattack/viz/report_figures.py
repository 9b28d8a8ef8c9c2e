"""Figures of `strattack report`: l0 histogram per attack and group-sparsity heatmaps
(Fig. 2 style) of stored perturbations. The original images are not in the store, so the
heatmaps show the perturbation's structure only."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data.evaluation_data import EvaluationData
from ..evaluation.report import store_labels
from ..evaluation.store import ResultStore
from ..evaluation.finished_run import CommonExamples, shown_successes
from ..solver.groups import GroupSpec
from .figures import (group_heatmap, magnitude_cmap, mask_zeros, new_figure,
                      plot_attack_comparison, save_figure)

__all__ = ["plot_l0_histogram", "plot_group_heatmaps"]


def plot_l0_histogram(store: ResultStore, path: str | Path) -> Path:
    """Histogram of l0 (changed entries) over the successful examples of every attack."""
    labels = store_labels(store)
    fig = new_figure((6.4, 3.8))
    ax = fig.subplots()
    data = {labels[k]: [r.l0 for r in store.records(k) if r.success] for k in labels}
    data = {k: v for k, v in data.items() if v}
    top = max((max(v) for v in data.values()), default=1.0)
    bins = np.linspace(0, top, 40)
    for name, values in data.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5,
                label=f"{name} (n={len(values)}, mean {np.mean(values):.0f})")
    ax.set_xlabel("l0 of the perturbation (changed pixel entries)")
    ax.set_ylabel("successful examples")
    ax.set_title("Sparsity of the adversarial perturbations")
    if data:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_group_heatmaps(store: ResultStore, path: str | Path, examples: int = 4,
                        context: tuple[nn.Module, EvaluationData] | None = None) -> Path:
    """Fig. 2 style: for the first ``examples`` (image, target) pairs adversarial under every
    attack, the mean |delta| per group (the store's group size). With ``context`` (the model and
    images of the store, see :func:`~strattack.evaluation.finished_run.load_store_context`) each row
    also shows the original and every adversarial example with its predicted class. When no
    example is adversarial under every attack, each attack's row shows its own first examples
    (heatmaps only: the rows no longer share their images)."""
    shown = shown_successes(store, examples)
    size = int(store.meta().get("group_size", 2))
    if context is not None and len(shown) == 1 and shown[0].pairs:
        return _comparison(shown[0], size, context, path)
    rows = [(label, found.pairs, found.deltas[label]) for found in shown for label in found.labels]
    title = ("Group sparsity of stored perturbations" if len(shown) == 1 else
             "Group sparsity: each attack's own examples (none is adversarial under every attack)")
    return _heatmap_grid(rows, size, title, path)


def _comparison(found: CommonExamples, size: int, context: tuple[nn.Module, EvaluationData],
                path: str | Path) -> Path:
    """Per example of ``found``: the original, and per attack its adversarial example with the
    model's prediction and its group heatmap."""
    model, data = context
    rows = found.rows(data)
    x = data.images[rows]
    names = data.class_names
    attacks = {}
    for label, delta in found.deltas.items():
        adv = (x + delta.to(x)).clamp(0, 1)
        with torch.no_grad():
            preds = model(adv.to(next(model.parameters()).device)).argmax(1).tolist()
        attacks[label] = (adv, [names[p] for p in preds])
    captions = [f"{names[int(data.labels[r])]} -> {names[t] if t >= 0 else 'untargeted'}"
                for r, t in zip(rows.tolist(), found.targets.tolist())]
    return plot_attack_comparison(x, captions, attacks, GroupSpec.for_inputs(x, size, size),
                                  path, title=f"Group sparsity ({size}x{size} groups)")


HeatmapRow = tuple[str, Sequence[tuple[int, int]], Tensor]


def _heatmap_grid(rows: Sequence[HeatmapRow], size: int, title: str, path: str | Path) -> Path:
    """One row per (attack label, its (image, target) pairs, their perturbations): the group
    heatmap of each pair, on one colour scale; a row without pairs says so."""
    columns = max((len(pairs) for _, pairs, _ in rows), default=0) or 1
    fig = new_figure((2.2 * columns + 1, 2.2 * max(len(rows), 1)))
    axes = fig.subplots(len(rows) or 1, columns, squeeze=False)
    heat_cmap = magnitude_cmap("hot", 0.2, 0.85)       # as the Fig. 2 panels: grey = exactly 0
    heats = [group_heatmap(d, GroupSpec.for_inputs(d, size, size)).numpy() if pairs else None
             for _, pairs, d in rows]
    # One colour scale for all panels, as the single colorbar says.
    vmax = max((float(h.max()) for h in heats if h is not None and h.size), default=0.0) or 1.0
    image = None
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for (label, pairs, _), heat, line in zip(rows, heats, axes):
        if heat is None:
            line[0].text(0.5, 0.5, f"{label}:\nno adversarial example", fontsize=8,
                         ha="center", va="center", transform=line[0].transAxes)
            continue
        for ax, pair, values in zip(line, pairs, heat):
            ax.set_frame_on(True)
            image = ax.imshow(mask_zeros(values), cmap=heat_cmap, vmin=0, vmax=vmax,
                              interpolation="nearest")
            ax.set_title(f"{label}\nimage {pair[0]}, target {pair[1]}: "
                         f"{int((values > 0).sum())} groups", fontsize=7)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.03)
        bar.set_label(f"mean |perturbation| per {size}x{size} group (0-255)\n"
                      "grey: exactly 0 (group untouched)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
