"""A small global-average-pooling classifier (test/helper model for CAM).

The C&W networks of :mod:`strattack.models.nets` end in ``Flatten`` + fully connected layers,
which CAM (Zhou et al. 2016) cannot explain; this helper has the structure CAM needs,
``features -> global average pooling -> Linear``. It is not one of the paper's models and ships
no weights.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["GAPNet"]


class GAPNet(nn.Module):
    """``features`` (padded 3x3 conv + ReLU blocks, a 2x2 max-pool after each block but the last)
    ``-> mean over (h, w) -> classifier`` (``nn.Linear(widths[-1], num_classes)``).

    ``features`` outputs the (N, widths[-1], h, w) map whose class-weighted sum is the CAM.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10,
                 widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one block")
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(widths):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of images (N, in_channels, H, W)."""
        return self.classifier(self.features(x).mean(dim=(2, 3)))
