"""Defensive distillation (Papernot et al., 2016): the teacher's soft labels, and the temperature
folded into the trained network so that it is deployed at T = 1."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["fold_temperature", "soft_labels"]


@torch.no_grad()
def soft_labels(teacher: nn.Module, x: Tensor, temperature: float,
                batch_size: int = 1000) -> Tensor:
    """The teacher's softmax(logits / T) on ``x`` (eval mode): the student's training labels."""
    teacher.eval()
    return torch.cat([F.softmax(teacher(x[i : i + batch_size]) / temperature, dim=1)
                      for i in range(0, len(x), batch_size)])


def fold_temperature(model: nn.Module, temperature: float) -> nn.Module:
    """Multiply the last Linear layer by T, so that the model's logits are T times the trained
    network's output (same architecture, same predictions)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(temperature)
        last.bias.mul_(temperature)
    return model
