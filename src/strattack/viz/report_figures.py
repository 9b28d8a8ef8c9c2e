"""Figures of `strattack report`: l0 histogram per attack and group-sparsity heatmaps
(Fig. 2 style) of stored perturbations. The original images are not in the store, so the
heatmaps show the perturbation's structure only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.evaluation_data import EvaluationData
from ..evaluation.report import store_labels
from ..evaluation.store import ResultStore
from ..evaluation.finished_run import common_successes
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
    also shows the original and every adversarial example with its predicted class."""
    found = common_successes(store, limit=examples)
    size = int(store.meta().get("group_size", 2))
    if context is not None and found.pairs:
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
    labels = found.labels
    common = found.pairs or [None]
    fig = new_figure((2.2 * len(common) + 1, 2.2 * max(len(labels), 1)))
    axes = fig.subplots(len(labels) or 1, len(common), squeeze=False)
    heat_cmap = magnitude_cmap("hot", 0.2, 0.85)       # as the Fig. 2 panels: grey = exactly 0
    heats = {label: group_heatmap(d, GroupSpec.for_inputs(d, size, size)).numpy()
             for label, d in found.deltas.items() if found.pairs}
    # One colour scale for all panels, as the single colorbar says.
    vmax = max((float(h.max()) for h in heats.values() if h.size), default=0.0) or 1.0
    image = None
    for row, label in enumerate(labels):
        for col, pair in enumerate(common):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if pair is None:
                ax.set_title("no common successful example", fontsize=8)
                continue
            heat = heats[label][col]
            image = ax.imshow(mask_zeros(heat), cmap=heat_cmap, vmin=0, vmax=vmax,
                              interpolation="nearest")
            ax.set_title(f"{label}\nimage {pair[0]}, target {pair[1]}: "
                         f"{int((heat > 0).sum())} groups", fontsize=7)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.03)
        bar.set_label(f"mean |perturbation| per {size}x{size} group (0-255)\n"
                      "grey: exactly 0 (group untouched)", fontsize=8)
    fig.suptitle("Group sparsity of stored perturbations", fontsize=10)
    return save_figure(fig, path)
