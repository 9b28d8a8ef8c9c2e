"""Figures in the style of the paper's Fig. 2: original, adversarial example, and the group-wise
perturbation heatmap (mean |delta| per group, scaled to [0, 255]).

Figures are made with :class:`matplotlib.figure.Figure` (no pyplot): importing this package
leaves matplotlib's global backend alone (a notebook keeps its inline backend) and works headless.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from ..solver.groups import GroupSpec

#: Colour of "no perturbation at all" (exact zeros) in heatmaps: a neutral grey that no
#: nonzero value gets, so an untouched group never looks like a barely touched one.
ZERO_COLOR = "#c8c8c8"


def group_heatmap(delta: Tensor, groups: GroupSpec) -> Tensor:
    """(N, P, Q): average absolute perturbation of every group, in [0, 255] pixel units."""
    mean_abs = groups.unfold(delta.abs()).mean(dim=1) * 255
    return mean_abs.reshape(delta.shape[0], groups.rows, groups.cols)


def magnitude_cmap(name: str, low: float, high: float, zero: str | None = ZERO_COLOR) -> Colormap:
    """The part [low, high] of colormap ``name``: cut so that the smallest nonzero value is
    clearly coloured (not white or black like image strokes or zeros); masked entries (exact
    zeros, see :func:`mask_zeros`) get ``zero`` (None: transparent, showing what is below)."""
    base = colormaps[name]
    cmap = ListedColormap(base(np.linspace(low, high, 256)), name=f"{name}[{low:g}:{high:g}]")
    return cmap.with_extremes(bad=zero if zero is not None else (0, 0, 0, 0))


def mask_zeros(values: np.ndarray) -> np.ma.MaskedArray:
    """``values`` with exact zeros masked (drawn in the colormap's 'bad' colour)."""
    return np.ma.masked_equal(np.asarray(values, dtype=float), 0.0)


def new_figure(figsize: tuple[float, float], layout: str | None = None) -> Figure:
    """A figure outside pyplot's global state, with an Agg canvas (renders headless)."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders created), return the path. Nothing to close: the
    figure is not registered with pyplot and is freed with its last reference."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _as_image(x: Tensor) -> np.ndarray:
    x = x.detach().cpu().float()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def attack_comparison_figure(inputs: Tensor, labels: Sequence[str],
                             attacks: dict[str, tuple[Tensor, Sequence[str]]], groups: GroupSpec,
                             title: str = "") -> Figure:
    """The figure of :func:`plot_attack_comparison`, not saved."""
    n = inputs.shape[0]
    cols = 1 + 2 * len(attacks)
    fig = new_figure((2.1 * cols, 2.3 * n + 0.6))
    axes = fig.subplots(n, cols, squeeze=False)
    heat = {name: group_heatmap(adv - inputs, groups) for name, (adv, _) in attacks.items()}
    vmax = max(float(h.max()) for h in heat.values()) or 1.0
    gray = "gray" if inputs.shape[1] == 1 else None
    # Dark red .. yellow: no nonzero group is black, white or grey (= exactly 0, untouched).
    heat_cmap = magnitude_cmap("hot", 0.2, 0.85)
    image = None
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(_as_image(inputs[i]), cmap=gray, vmin=0, vmax=1)
        ax.set_title(f"original\ntrue -> target: {labels[i]}", fontsize=8)
        for j, (name, (adv, preds)) in enumerate(attacks.items()):
            ax = axes[i, 1 + 2 * j]
            ax.imshow(_as_image(adv[i]), cmap=gray, vmin=0, vmax=1)
            ax.set_title(f"{name}\npredicted: {preds[i]}", fontsize=8)
            ax = axes[i, 2 + 2 * j]
            values = heat[name][i].cpu().numpy()
            image = ax.imshow(mask_zeros(values), cmap=heat_cmap, vmin=0, vmax=vmax,
                              interpolation="nearest")
            nz = int((values > 0).sum())
            ax.set_title(f"{name} groups\n{nz} of {values.size} nonzero", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.03, shrink=0.8)
        bar.set_label("mean |perturbation| per group (0-255)\ngrey: exactly 0 (group untouched)",
                      fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_attack_comparison(inputs: Tensor, labels: Sequence[str], attacks: dict[str, tuple[Tensor, Sequence[str]]],
                           groups: GroupSpec, path: str | Path, title: str = "") -> Path:
    """One row per image: the original, then per attack its adversarial example and heatmap.

    labels: caption of each original, its true class -> target class (e.g. ``"7 -> 8"``).
    attacks: name -> (adversarial examples (N, C, H, W), the model's predicted class names of
    them). Groups with no perturbation at all are drawn grey, apart from the colour scale.
    """
    fig = attack_comparison_figure(inputs, labels, attacks, groups, title)
    return save_figure(fig, path)
