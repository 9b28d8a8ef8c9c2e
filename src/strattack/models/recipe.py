"""The shipped training recipe of the paper's MNIST / CIFAR-10 networks: hyper-parameters per
dataset, augmentation, loss and optimiser.

SGD with Nesterov momentum and a one-cycle learning-rate schedule converges in a few epochs, so
training runs on CPU in reasonable time; CIFAR-10 uses random crops (4-px zero padding) and
horizontal flips implemented in plain torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_count, check_positive

__all__ = ["TrainConfig", "CONFIGS", "Schedule", "augment", "training_loss", "optimizer"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults per dataset in :data:`CONFIGS`)."""

    epochs: int
    batch_size: int
    max_lr: float
    weight_decay: float
    crop_padding: int
    hflip: bool


CONFIGS: dict[str, TrainConfig] = {
    # Small random shifts make MNIST reach >= 99.4% reliably in a few epochs.
    "mnist": TrainConfig(epochs=8, batch_size=128, max_lr=0.05, weight_decay=5e-4,
                         crop_padding=2, hflip=False),
    "cifar10": TrainConfig(epochs=12, batch_size=128, max_lr=0.1, weight_decay=5e-4,
                           crop_padding=4, hflip=True),
}


@dataclass(frozen=True)
class Schedule:
    """Epochs, batch size and peak learning rate of one run (defaults: :data:`CONFIGS`).
    ValueError for a value out of range, when it is built."""

    epochs: int
    batch_size: int
    max_lr: float

    def __post_init__(self) -> None:
        check_count("epochs", self.epochs)
        check_count("batch_size", self.batch_size)
        check_positive("max_lr", self.max_lr)

    @classmethod
    def of(cls, dataset: str, epochs: int | None = None, batch_size: int | None = None,
           max_lr: float | None = None) -> "Schedule":
        cfg = CONFIGS[dataset]
        return cls(cfg.epochs if epochs is None else epochs,
                   cfg.batch_size if batch_size is None else batch_size,
                   cfg.max_lr if max_lr is None else max_lr)


def augment(x: Tensor, padding: int, hflip: bool, gen: torch.Generator) -> Tensor:
    """Random crop after zero padding, and optional horizontal flip, per sample.

    Vectorised with advanced indexing so augmentation costs little next to the
    forward/backward pass on CPU.
    """
    n, c, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
        iy = (oy[:, None] + torch.arange(h))[:, None, :, None]
        ix = (ox[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], iy, ix]
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def training_loss(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Cross-entropy of softmax(logits / T) against class indices or, for distillation, against
    soft labels (rows of probabilities): -sum_j p_j log softmax(logits / T)_j, batch mean."""
    log_probs = F.log_softmax(logits / temperature, dim=1)
    if targets.is_floating_point():
        return -(targets * log_probs).sum(dim=1).mean()
    return F.nll_loss(log_probs, targets)


def optimizer(model: nn.Module, dataset: str, schedule: Schedule, steps_per_epoch: int
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum and ``dataset``'s weight decay (none on biases and BatchNorm
    parameters, standard practice), under a one-cycle schedule peaking at ``max_lr``."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": CONFIGS[dataset].weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=schedule.max_lr, momentum=0.9, nesterov=True,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=schedule.max_lr, epochs=schedule.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=0.25)
    return opt, sched
