"""A user model for the CLI tests (``gap_model:build``): a tiny random network ending in global
average pooling + linear on 1-channel inputs, so CAM applies."""
import torch
from torch import nn


def build() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.Conv2d(16, 16, 5, padding=2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
