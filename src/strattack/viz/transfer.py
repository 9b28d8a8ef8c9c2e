"""Bar chart of `strattack transfer`: per receiving model, each source attack's top-1 and top-5
transfer rate, with the clean baseline (chance) marked on every bar so a rate is read against
it."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from .figures import new_figure, save_figure

__all__ = ["plot_transfer"]


def plot_transfer(rows: Sequence[dict[str, object]], path: str | Path,
                  title: str = "Transferability of the adversarial examples") -> Path:
    """Two panels (top-1, top-5): bars per receiving model and source attack (the rows of
    :func:`strattack.evaluation.transfer.transfer`), a black tick at the clean baseline."""
    fig = new_figure((max(6.4, 1.6 * len(_unique(rows, "model")) + 3), 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, k in zip(axes, ("top-1", "top-5")):
        _panel(ax, rows, k)
    axes[0].set_ylabel("examples that transfer (%)")
    # beside the panels: inside, it would hide the bars near 100%
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _unique(rows: Sequence[dict[str, object]], column: str) -> list[str]:
    return list(dict.fromkeys(str(r[column]) for r in rows))


def _panel(ax: Axes, rows: Sequence[dict[str, object]], k: str) -> None:
    """One metric's bars; undefined rates (untargeted top-5) are left out."""
    models, attacks = _unique(rows, "model"), _unique(rows, "attack")
    width = 0.8 / len(attacks)
    for a, attack in enumerate(attacks):
        pos = np.arange(len(models)) + (a - (len(attacks) - 1) / 2) * width
        values = {str(r["model"]): r for r in rows if r["attack"] == attack}
        rate = [_value(values.get(m), f"{k} %") for m in models]
        clean = [_value(values.get(m), f"clean {k} %") for m in models]
        ax.bar(pos, rate, width * 0.9, label=attack)
        ax.hlines(clean, pos - width * 0.45, pos + width * 0.45, colors="black", linewidth=2,
                  label="clean baseline" if a == len(attacks) - 1 else None)
    ax.set_xticks(np.arange(len(models)), models, rotation=20, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_title(f"{k} success", fontsize=9)


def _value(row: dict[str, object] | None, column: str) -> float:
    return math.nan if row is None else float(row[column])  # type: ignore[arg-type]
