"""Sliding-mask groups (paper Sec. 2, eq. 1) and the block soft-thresholding operator (eq. 12).

A mask of size r x r x C slides over an H x W image with stride S. Group G_{p,q} holds the
r*r*C entries under the mask at row offset p*S and column offset q*S, for
p in [P], q in [Q], P = floor((H - r)/S) + 1, Q = floor((W - r)/S) + 1.
S = r gives a partition of the covered pixels (Prop. 1); S < r gives overlapping groups (Prop. 2).

Groups are handled with the layout of ``torch.nn.functional.unfold`` / ``fold``: ``unfold``
gathers every group into a column of an (N, C*r*r, P*Q) tensor, ``fold`` scatters such columns
back and *sums* entries that several groups share. Nothing of size n * P*Q is ever built. Both
are written with strided views instead of calling im2col, which is erratic on CPU here (up to
100x slower for some shapes when threads are contended).

Pixels no group covers: when (H - r) or (W - r) is not a multiple of S, the last rows/columns
belong to no group. They do not appear in g(delta) (eq. 1). The attacks built on these groups
keep such pixels unperturbed (see :func:`strattack.solver.admm.feasible_bounds`), so that every
perturbed pixel belongs to some group; ``coverage`` tells which pixels these are.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class GroupSpec:
    """Sliding-mask group structure over (C, H, W) images."""

    channels: int
    height: int
    width: int
    size: int
    stride: int

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width", "size", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GroupSpec.{name} must be a positive integer, got {value!r}")
        if self.size > min(self.height, self.width):
            raise ValueError(
                f"group size r={self.size} is larger than the image ({self.height}x{self.width})"
            )
        if self.stride > self.size:
            raise ValueError(
                f"stride S={self.stride} larger than the group size r={self.size} would leave gaps "
                "between groups; use S <= r"
            )

    @classmethod
    def for_inputs(cls, inputs: Tensor, size: int, stride: int) -> "GroupSpec":
        _, c, h, w = inputs.shape
        return cls(int(c), int(h), int(w), size, stride)

    @property
    def rows(self) -> int:
        """P: number of mask positions along the height."""
        return (self.height - self.size) // self.stride + 1

    @property
    def cols(self) -> int:
        """Q: number of mask positions along the width."""
        return (self.width - self.size) // self.stride + 1

    @property
    def num_groups(self) -> int:
        return self.rows * self.cols

    @property
    def group_dim(self) -> int:
        return self.channels * self.size * self.size

    @property
    def overlapping(self) -> bool:
        return self.stride < self.size

    def unfold(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C*r*r, P*Q): column i holds the entries of group D_i
        (same layout as ``F.unfold``: rows ordered (channel, kernel row, kernel col))."""
        r, s, n = self.size, self.stride, x.shape[0]
        patches = x.unfold(2, r, s).unfold(3, r, s)            # (N, C, P, Q, r, r), a view
        return patches.permute(0, 1, 4, 5, 2, 3).reshape(n, self.group_dim, self.num_groups)

    def fold(self, cols: Tensor) -> Tensor:
        """(N, C*r*r, P*Q) -> (N, C, H, W), summing entries shared by several groups."""
        r, s, n = self.size, self.stride, cols.shape[0]
        p, q = self.rows, self.cols
        blocks = cols.reshape(n, self.channels, r, r, p, q)
        out = cols.new_zeros(n, self.channels, self.height, self.width)
        if s == r:   # a partition of the covered region: one strided copy
            tiled = blocks.permute(0, 1, 4, 2, 5, 3).reshape(n, self.channels, p * r, q * r)
            out[:, :, :p * r, :q * r] = tiled
            return out
        for i in range(r):       # r*r strided additions, one per offset inside the mask
            for j in range(r):
                out[:, :, i:i + s * (p - 1) + 1:s, j:j + s * (q - 1) + 1:s] += blocks[:, :, i, j]
        return out

    def coverage(self, like: Tensor) -> Tensor:
        """(1, C, H, W): how many groups contain each entry (0 for uncovered pixels)."""
        ones = torch.ones(1, self.group_dim, self.num_groups, dtype=like.dtype, device=like.device)
        return self.fold(ones)

    def norms(self, x: Tensor) -> Tensor:
        """(N, P*Q): the l2 norm of every group of x."""
        return self.unfold(x).norm(dim=1)

    def penalty(self, x: Tensor) -> Tensor:
        """g(x) of eq. (1) per image, (N,)."""
        return self.norms(x).sum(dim=1)

    def nonzero_groups(self, x: Tensor) -> Tensor:
        """Number of groups with a nonzero entry, per image, (N,)."""
        return (self.unfold(x) != 0).any(dim=1).sum(dim=1)


def block_soft_threshold(cols: Tensor, threshold: Tensor | float) -> Tensor:
    """Proximal operator of threshold * ||.||_2 applied to every group column (eq. 12 / 17).

    cols: (N, d, L), one group per column. threshold: scalar or (N,) per image.
    Returns (1 - threshold/||c||)_+ * c, with 0 for a zero column (the limit of the formula).
    """
    norms = cols.norm(dim=1, keepdim=True)
    if isinstance(threshold, Tensor):
        threshold = threshold.reshape(-1, 1, 1)
    scale = (1 - threshold / norms.clamp_min(torch.finfo(cols.dtype).tiny)).clamp_min(0)
    return cols * scale


def nonzero_windows(delta: Tensor, size: int) -> Tensor:
    """(N,) d_2,0 of GSE: the number of ``size`` x ``size`` windows (stride 1, only positions
    inside the image) in which ``delta`` (N, C, H, W) has a non-zero entry; ``size`` must fit."""
    perturbed = (delta != 0).any(dim=1, keepdim=True).float()
    # a window's mean of a 0/1 map is positive exactly when it holds a perturbed pixel
    return (F.avg_pool2d(perturbed, size, stride=1) > 0).flatten(1).sum(dim=1)
