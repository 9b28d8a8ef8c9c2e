"""Figures of `strattack report`: l0 histogram per attack and group-sparsity heatmaps
(Fig. 2 style) of stored perturbations. The original images are not in the store, so the
heatmaps show the perturbation's structure only."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..data.evaluation_data import EvaluationData  # noqa: E402

from ..evaluation.report import store_labels  # noqa: E402
from ..evaluation.store import ResultStore  # noqa: E402
from ..solver.groups import GroupSpec  # noqa: E402
from ..evaluation.stored import common_successes  # noqa: E402
from .figures import group_heatmap, plot_attack_comparison, save_figure  # noqa: E402

__all__ = ["plot_l0_histogram", "plot_group_heatmaps"]


def plot_l0_histogram(store: ResultStore, path: str | Path) -> Path:
    """Histogram of l0 (changed entries) over the successful examples of every attack."""
    labels = store_labels(store)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
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
    images of the store, see :func:`~strattack.evaluation.stored.load_store_context`) each row
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
        captions = [f"{names[int(data.labels[r])]} -> {names[t]}"
                    for r, t in zip(rows.tolist(), found.targets.tolist())]
        return plot_attack_comparison(x, captions, attacks, GroupSpec.for_inputs(x, size, size),
                                      path, title=f"Group sparsity ({size}x{size} groups)")
    labels = found.labels
    common = found.pairs or [None]
    fig, axes = plt.subplots(len(labels) or 1, len(common),
                             figsize=(2.2 * len(common) + 1, 2.2 * max(len(labels), 1)),
                             squeeze=False)
    image = None
    for row, label in enumerate(labels):
        for col, pair in enumerate(common):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if pair is None:
                ax.set_title("no common successful example", fontsize=8)
                continue
            delta = found.deltas[label][col : col + 1]
            heat = group_heatmap(delta, GroupSpec.for_inputs(delta, size, size))[0].numpy()
            image = ax.imshow(heat, cmap="hot", interpolation="nearest")
            ax.set_title(f"{label}\nimage {pair[0]} -> {pair[1]}: "
                         f"{int((heat > 0).sum())} groups", fontsize=7)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.03)
        bar.set_label(f"mean |perturbation| per {size}x{size} group (0-255)", fontsize=8)
    fig.suptitle("Group sparsity of stored perturbations", fontsize=10)
    return save_figure(fig, path)
