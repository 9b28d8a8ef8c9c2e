"""The attack task shared by the benchmark scripts: bundled test images, targets."""
from __future__ import annotations

import torch
from torch import Tensor

from strattack.data import load_samples


def attack_task(model, dataset: str, images: int, targets: str,
                device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """First ``images`` correctly classified bundled test images; targets "all" (the 9 other
    classes, image-major) or "next" ((label + 1) mod 10). Returns (inputs, targets, true labels)."""
    x, y, _ = load_samples(dataset)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        ok = (model(x).argmax(1) == y).nonzero().squeeze(1)[:images]
    x, y = x[ok], y[ok]
    if targets == "all":
        t = torch.stack([(y + k) % 10 for k in range(1, 10)], 1).flatten()
        return x.repeat_interleave(9, 0), t, y.repeat_interleave(9, 0)
    return x, (y + 1) % 10, y
