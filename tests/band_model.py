"""A fixed MNIST-shaped classifier for the synthetic "brightest band" images of
test_defenses.py: logit c = 10 x the mean brightness of rows 2+2c and 3+2c (importable as
``band_model:build`` by the CLI, as tests run with pythonpath = ["tests"])."""
from __future__ import annotations

import torch
from torch import nn


class BandModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x[:, 0].mean(dim=2)                       # (N, 28) row brightness
        bands = rows[:, 2:22].reshape(-1, 10, 2).mean(dim=2)
        return self.scale * bands


def build() -> nn.Module:
    return BandModel()
