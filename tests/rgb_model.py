"""A user model for the CLI tests (``rgb_model:build``): a tiny GAP + linear network on RGB
images of any size with 1000 classes (ImageNet-shaped)."""
import torch
from torch import nn


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 1000))
