"""Networks of other families than the paper's, for transferability (Table 3).

The paper's Table 3 measures how adversarial examples crafted on one network fool networks of
other architectures. On the small datasets this project trains its own zoo with ``strattack
train --arch NAME``: a multilayer perceptron, LeNet-5, a small ResNet and a small VGG, beside
the paper's C&W CNN (``cnn``, :mod:`strattack.models.nets`). Each takes the input channels,
square image size and number of classes, so the same definition serves MNIST and CIFAR-10.
Like the C&W networks they return logits and expect normalised inputs (wrap them in
:class:`~strattack.models.nets.Normalized`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["ZOO", "MLP", "LeNet5", "ResNet", "VGG", "build_zoo_network"]


class MLP(nn.Sequential):
    """Fully connected ReLU network ``in -> 512 -> 512 -> classes`` (no convolution at all:
    the family farthest from the CNNs)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int,
                 hidden: tuple[int, ...] = (512, 512)) -> None:
        widths = (in_channels * image_size * image_size, *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Linear(cin, cout), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], num_classes))
        super().__init__(*layers)


class LeNet5(nn.Sequential):
    """LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling instead of the original tanh and
    subsampling: ``conv5(6, pad 2) pool conv5(16) pool fc120 fc84 fc(classes)``. The padding
    of the first convolution plays the role of the original 32x32 framing of the 28x28 digits."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        side = ((image_size // 2) - 4) // 2         # after conv(pad 2), pool, conv5, pool
        super().__init__(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., 2016): two 3x3 conv-BN layers plus the identity, or a
    strided 1x1 conv-BN projection where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``relu(body(x) + shortcut(x))``."""
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Sequential):
    """Small ResNet: a 3x3 conv-BN stem of 16 channels, one basic block per stage at 16, 32 and
    64 channels (the last two halve the resolution), global average pooling and a linear head
    (ResNet-8: 8 weight layers on the main path; one block per stage keeps CPU training as
    cheap as the C&W CNN's)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int,
                 widths: tuple[int, ...] = (16, 32, 64)) -> None:
        del image_size          # global average pooling: any input size
        blocks = [BasicBlock(cin, cout, 1 if i == 0 else 2)
                  for i, (cin, cout) in enumerate(zip((widths[0], *widths), widths))]
        super().__init__(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
            *blocks,
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(widths[-1], num_classes),
        )


class VGG(nn.Sequential):
    """Small VGG (Simonyan & Zisserman, 2015): stacks of padded 3x3 conv-BN-ReLU, each stack
    ending in a 2x2 max-pool (``32-32-P-64-64-P``), then one linear layer on the flattened
    feature map."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int,
                 stages: tuple[int, ...] = (32, 64)) -> None:
        layers: list[nn.Module] = []
        cin = in_channels
        for width in stages:
            for _ in range(2):
                layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                cin = width
            layers.append(nn.MaxPool2d(2))
        side = image_size // 2 ** len(stages)
        super().__init__(*layers, nn.Flatten(), nn.Linear(cin * side * side, num_classes))


#: ``strattack train --arch`` names of the zoo networks -> class(in_channels, image_size, classes).
#: ``"cnn"``, the paper's network, is not here: it is per dataset (:mod:`strattack.models.nets`).
ZOO: dict[str, Callable[[int, int, int], nn.Module]] = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "resnet": ResNet,
    "vgg": VGG,
}


def build_zoo_network(arch: str, in_channels: int, image_size: int, num_classes: int
                      ) -> nn.Module:
    """The untrained zoo network ``arch`` for square ``image_size`` inputs of ``in_channels``."""
    if arch not in ZOO:
        raise ValueError(f"unknown zoo architecture {arch!r}; expected one of {list(ZOO)}")
    return ZOO[arch](in_channels, image_size, num_classes)
