"""Network definitions used in the StrAttack paper (Xu et al., ICLR 2019).

The paper evaluates its attacks on the MNIST and CIFAR-10 classifiers of
Carlini & Wagner (2017); Appendix F of the StrAttack paper lists the
architecture: four 3x3 convolutions, two 2x2 max-pools, two fully connected
hidden layers and a final linear layer producing *logits* (no softmax), since
the C&W-style attack loss is defined on logits.

All models here take inputs already normalised for the network; use
:class:`Normalized` to obtain a model that accepts images in ``[0, 1]``, which
is the domain in which the attacks constrain perturbations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MNISTNet", "CIFAR10Net", "Normalized"]


def _conv_block(
    in_ch: int, mid_ch: int, out_ch: int, batch_norm: bool
) -> list[nn.Module]:
    """Two valid (unpadded) 3x3 convolutions with ReLU, followed by a 2x2 max-pool."""
    layers: list[nn.Module] = []
    for cin, cout in ((in_ch, mid_ch), (mid_ch, out_ch)):
        layers.append(nn.Conv2d(cin, cout, kernel_size=3))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    return layers


class _CWNet(nn.Module):
    """Shared Carlini & Wagner architecture (StrAttack paper, Appendix F)."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, int, int, int],
        flat_features: int,
        hidden: int,
        num_classes: int = 10,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            *_conv_block(in_channels, c1, c2, batch_norm),
            *_conv_block(c2, c3, c4, batch_norm),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_features, hidden),
            nn.ReLU(inplace=True),
            # Dropout is only active in training mode (C&W train with p=0.5).
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        return self.classifier(self.features(x))


class MNISTNet(_CWNet):
    """C&W MNIST classifier (StrAttack paper, Appendix F).

    ``conv(1->32) conv(32->32) pool conv(32->64) conv(64->64) pool``
    ``fc(1024->200) dropout fc(200->200) fc(200->10)``, all 3x3 convolutions
    valid (no padding) so a 28x28 input gives a 64x4x4 = 1024 feature map.
    Input: ``(N, 1, 28, 28)``; output: logits ``(N, 10)``.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__(
            in_channels=1,
            channels=(32, 32, 64, 64),
            flat_features=64 * 4 * 4,
            hidden=200,
            num_classes=num_classes,
            dropout=dropout,
            batch_norm=False,
        )


class CIFAR10Net(_CWNet):
    """C&W CIFAR-10 classifier (StrAttack paper, Appendix F), with BatchNorm.

    ``conv(3->64) conv(64->64) pool conv(64->128) conv(128->128) pool``
    ``fc(3200->256) dropout fc(256->256) fc(256->10)``, valid 3x3 convolutions
    so a 32x32 input gives a 128x5x5 = 3200 feature map.

    Deviation from the paper: a ``BatchNorm2d`` follows every convolution
    (``batch_norm=True`` by default). It lets the network reach ~80% test
    accuracy in about ten CPU epochs, instead of the ~50 epochs plain SGD needs;
    in eval mode BatchNorm is a fixed affine map, so the attacked function is
    still a piecewise-linear ReLU network like the paper's. Pass
    ``batch_norm=False`` for the exact paper layout (shipped weights need True).
    Input: ``(N, 3, 32, 32)``; output: logits ``(N, 10)``.
    """

    def __init__(
        self, num_classes: int = 10, dropout: float = 0.5, batch_norm: bool = True
    ) -> None:
        super().__init__(
            in_channels=3,
            channels=(64, 64, 128, 128),
            flat_features=128 * 5 * 5,
            hidden=256,
            num_classes=num_classes,
            dropout=dropout,
            batch_norm=batch_norm,
        )


class Normalized(nn.Module):
    """Wrap ``model`` so it accepts images in ``[0, 1]``.

    Computes ``model((x - mean) / std)`` with per-channel ``mean``/``std``.
    Putting the normalisation inside the module means attacks can work directly
    in pixel space (where box constraints ``[0, 1]`` and distortion norms are
    defined) while gradients still flow through the normalisation. ``mean`` and
    ``std`` are registered buffers so they follow ``.to(device)`` and are saved
    in the ``state_dict``.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self, model: nn.Module, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std lengths differ: {len(mean)} vs {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.model = model
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` (``(N, C, H, W)`` in ``[0, 1]``) and return the model's logits."""
        return self.model((x - self.mean) / self.std)
