"""A user model for the CLI tests (loaded as ``slow_model:build``): a fixed linear classifier
on 1x28x28 inputs that sleeps in every forward pass, so a run can be killed mid-way."""
import time

import torch
from torch import nn


class SlowLinear(nn.Module):
    def __init__(self, delay: float = 0.01) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.linear(x.flatten(1))


def build() -> nn.Module:
    torch.manual_seed(0)
    return SlowLinear()
