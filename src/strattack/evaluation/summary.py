"""Summaries of attack results: the columns of the demo and benchmark tables."""
from __future__ import annotations

import math

from ..result import AttackResult
from ..solver.groups import GroupSpec
from .metrics import perturbation_metrics

COLUMNS = ("attack", "ASR %", "l0", "l1", "l2", "linf", "groups", "fwd/ex", "bwd/ex",
           "passes/ex", "s/ex")


def summarize(name: str, result: AttackResult, groups: GroupSpec, seconds: float) -> dict[str, object]:
    """ASR and mean norms over the successful examples; passes and seconds per example."""
    n = result.success.numel()
    ok = result.success
    metrics = perturbation_metrics(result.perturbation, groups)
    mean = {k: (v[ok].mean().item() if ok.any() else math.nan) for k, v in metrics.items()}
    fwd = result.forward_passes.float().mean().item()
    bwd = result.backward_passes.float().mean().item()
    return {"attack": name, "ASR %": 100.0 * ok.float().mean().item(), "l0": mean["l0"],
            "l1": mean["l1"], "l2": mean["l2"], "linf": mean["linf"], "groups": mean["groups"],
            "fwd/ex": fwd, "bwd/ex": bwd, "passes/ex": fwd + bwd, "s/ex": seconds / n}


def format_cell(value: object) -> str:
    """A table cell as the printed tables show it (3 significant digits, 'n/a' for NaN); the
    HTML report uses the same, so its numbers read as the Markdown ones."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def markdown_table(rows: list[dict[str, object]], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(c, "")) for c in columns) + " |"
              for row in rows]
    return "\n".join(lines)
