"""Figures in the style of the paper's Fig. 2: original, adversarial example, and the group-wise
perturbation heatmap (mean |delta| per group, scaled to [0, 255])."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ..solver.groups import GroupSpec  # noqa: E402


def group_heatmap(delta: Tensor, groups: GroupSpec) -> Tensor:
    """(N, P, Q): average absolute perturbation of every group, in [0, 255] pixel units."""
    mean_abs = groups.unfold(delta.abs()).mean(dim=1) * 255
    return mean_abs.reshape(delta.shape[0], groups.rows, groups.cols)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders created), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _as_image(x: Tensor) -> np.ndarray:
    x = x.detach().cpu().float()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def plot_attack_comparison(inputs: Tensor, labels: Sequence[str], attacks: dict[str, tuple[Tensor, Sequence[str]]],
                           groups: GroupSpec, path: str | Path, title: str = "") -> Path:
    """One row per image: the original, then per attack its adversarial example and heatmap.

    attacks: name -> (adversarial examples (N, C, H, W), predicted class names of them).
    """
    n = inputs.shape[0]
    cols = 1 + 2 * len(attacks)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.1 * n + 0.6), squeeze=False)
    heat = {name: group_heatmap(adv - inputs, groups) for name, (adv, _) in attacks.items()}
    vmax = max(float(h.max()) for h in heat.values()) or 1.0
    cmap = "gray" if inputs.shape[1] == 1 else None
    image = None
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(_as_image(inputs[i]), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(f"original: {labels[i]}", fontsize=8)
        for j, (name, (adv, preds)) in enumerate(attacks.items()):
            ax = axes[i, 1 + 2 * j]
            ax.imshow(_as_image(adv[i]), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(f"{name}: {preds[i]}", fontsize=8)
            ax = axes[i, 2 + 2 * j]
            image = ax.imshow(heat[name][i].cpu().numpy(), cmap="hot", vmin=0, vmax=vmax,
                              interpolation="nearest")
            nz = int((heat[name][i] > 0).sum())
            ax.set_title(f"{name} groups ({nz} nonzero)", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.03, shrink=0.8)
        bar.set_label("mean |perturbation| per group (0-255)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
