"""Per-example distortion metrics of Table 1 (l0, l1, l2, linf) plus group sparsity."""
from __future__ import annotations

from torch import Tensor

from ..solver.groups import GroupSpec


def perturbation_metrics(delta: Tensor, groups: GroupSpec | None = None) -> dict[str, Tensor]:
    """l0 counts changed entries (pixels x channels, as in the paper's Table 1)."""
    d = delta.flatten(1)
    out = {"l0": (d != 0).sum(dim=1).float(), "l1": d.abs().sum(dim=1),
           "l2": d.norm(dim=1), "linf": d.abs().amax(dim=1)}
    if groups is not None:
        out["groups"] = groups.nonzero_groups(delta).float()
    return out
