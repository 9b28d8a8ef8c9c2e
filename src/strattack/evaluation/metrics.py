"""Per-example distortion metrics of Table 1 (l0, l1, l2, linf) plus group sparsity, and the
pixel-level group-sparsity metrics of GSE (Sadiku, Wagner & Pokutta, ICLR 2025): pixel l0, the
number of 4-connected clusters of perturbed pixels, and d_{2,0} (non-zero k x k patches)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..solver.groups import GroupSpec, nonzero_windows

__all__ = ["perturbation_metrics", "perturbed_pixels", "pixel_l0", "cluster_count",
           "nonzero_patches", "group_sparsity_metrics"]


def perturbation_metrics(delta: Tensor, groups: GroupSpec | None = None) -> dict[str, Tensor]:
    """l0 counts changed entries (pixels x channels, as in the paper's Table 1)."""
    d = delta.flatten(1)
    out = {"l0": (d != 0).sum(dim=1).float(), "l1": d.abs().sum(dim=1),
           "l2": d.norm(dim=1), "linf": d.abs().amax(dim=1)}
    if groups is not None:
        out["groups"] = groups.nonzero_groups(delta).float()
    return out


def perturbed_pixels(delta: Tensor) -> Tensor:
    """(N, H, W) Boolean map of the pixels with any channel of ``delta`` (N, C, H, W) changed.
    GSE's test, mean over channels of |delta| != 0, is the same: a sum of absolute values is
    zero only when every term is."""
    if delta.dim() != 4:
        raise ValueError(f"delta must be (N, C, H, W), got shape {tuple(delta.shape)}")
    return (delta != 0).any(dim=1)


def pixel_l0(delta: Tensor) -> Tensor:
    """(N,) number of pixels with any channel changed."""
    return perturbed_pixels(delta).flatten(1).sum(dim=1)


def cluster_count(delta: Tensor) -> Tensor:
    """(N,) number of 4-connected clusters of perturbed pixels (GSE's ANC before averaging).

    Connected components of the whole batch at once, by min-label hooking with shortcutting
    (Shiloach-Vishkin style): every pixel points to a smaller pixel of its cluster, edges pull
    their endpoints' trees onto the smaller root, and pointer jumping flattens the trees. The
    rounds grow with the logarithm of a cluster's size rather than with its diameter, which a
    plain neighbour-minimum propagation needs (hundreds of rounds for a long cluster)."""
    mask = perturbed_pixels(delta)
    n = mask.shape[0]
    # nodes: the perturbed pixels only, numbered in raster order across the batch
    node = torch.cumsum(mask.reshape(-1), 0).reshape(mask.shape) - 1
    # 4-neighbour edges between perturbed pixels; none crosses a row or an image
    right = mask[:, :, :-1] & mask[:, :, 1:]
    down = mask[:, :-1, :] & mask[:, 1:, :]
    u = torch.cat([node[:, :, :-1][right], node[:, :-1, :][down]])
    v = torch.cat([node[:, :, 1:][right], node[:, 1:, :][down]])
    parent = torch.arange(int(mask.sum()), device=mask.device)
    while True:
        before = parent.clone()
        grand_u, grand_v = parent[parent[u]], parent[parent[v]]
        # hook each endpoint's parent (and the endpoint itself) onto the other side's root
        parent.scatter_reduce_(0, parent[u], grand_v, "amin")
        parent.scatter_reduce_(0, parent[v], grand_u, "amin")
        parent.scatter_reduce_(0, u, grand_v, "amin")
        parent.scatter_reduce_(0, v, grand_u, "amin")
        parent = torch.minimum(parent, parent[parent])
        if torch.equal(parent, before):
            break
    # at the fixed point every cluster is a star around its first node: one root per cluster
    image_of_node = mask.flatten(1).nonzero()[:, 0]
    is_root = parent == torch.arange(parent.numel(), device=mask.device)
    return torch.bincount(image_of_node[is_root], minlength=n)


def nonzero_patches(delta: Tensor, patch: int = 8) -> Tensor:
    """(N,) d_{2,0}: the number of k x k windows (``patch`` = k, stride 1, only the positions
    where the window lies inside the image) in which ``delta`` has any non-zero entry."""
    mask = perturbed_pixels(delta)
    h, w = mask.shape[1:]
    if not 1 <= patch <= min(h, w):
        raise ValueError(f"the patch side must lie in [1, {min(h, w)}] for {h} x {w} images, "
                         f"got {patch}")
    return nonzero_windows(delta, patch)


def group_sparsity_metrics(delta: Tensor, patch: int = 8) -> dict[str, Tensor]:
    """Per example (N,): "pixel l0", "clusters" (4-connected) and "d20" (non-zero ``patch`` x
    ``patch`` windows) of ``delta`` (N, C, H, W), as floats; d20 is NaN for images smaller
    than the window (none fits), so that a default window does not stop a report."""
    n, _, h, w = delta.shape
    fits = patch <= min(h, w)
    d20 = (nonzero_patches(delta, patch).float() if fits
           else torch.full((n,), float("nan"), device=delta.device))
    return {"pixel l0": pixel_l0(delta).float(), "clusters": cluster_count(delta).float(),
            "d20": d20}
