"""Train the paper's MNIST / CIFAR-10 classifiers and save them as safetensors.

The StrAttack paper (Xu et al., ICLR 2019, Appendix F) attacks the Carlini &
Wagner networks defined in :mod:`strattack.models.nets`. This module trains
them from the raw datasets so the shipped weights are reproducible::

    python -m strattack.models.training --dataset mnist \
        --data-root ../shared/data --out src/strattack/models/weights/mnist.safetensors
    python -m strattack.models.training --dataset cifar10 \
        --data-root data-cache --out src/strattack/models/weights/cifar10.safetensors

Training runs on CPU in reasonable time: SGD with Nesterov momentum and a
one-cycle learning-rate schedule converges in few epochs; CIFAR-10 uses random
crops (4-px zero padding) and horizontal flips implemented in plain torch.
The saved file is the ``state_dict`` of the :class:`~strattack.models.nets.Normalized`
wrapper, so normalisation constants travel with the weights.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from ..data import load_cifar10, load_mnist
from ..data.registry import CIFAR10_EXACT_TEST
from .pretrained import build_model

__all__ = ["TrainConfig", "CONFIGS", "AdversarialTraining", "pgd_linf", "train", "evaluate", "main"]



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
class AdversarialTraining:
    """PGD adversarial training (Madry et al. 2018) under ``||delta||_inf <= eps``.

    Madry's MNIST model uses 40 steps of 0.01 for 100k iterations; on two CPU cores we use
    fewer, larger steps (``steps`` of ``step_size`` from a uniform random start) and ramp
    ``eps`` linearly from 0 over the first ``ramp_epochs`` epochs, which keeps training from
    stalling at chance accuracy early on. Robustness is checked after training with a
    stronger PGD (see :func:`robust_accuracy`).
    """

    eps: float = 0.3
    steps: int = 5
    step_size: float = 0.1
    ramp_epochs: float = 2.0


def pgd_linf(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float,
             gen: torch.Generator | None = None) -> Tensor:
    """Untargeted cross-entropy PGD with a uniform random start, projected on the eps-ball and [0, 1]."""
    noise = torch.rand(x.shape, generator=gen, device=x.device) if gen is not None else torch.rand_like(x)
    adv = (x + (2 * noise - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = adv.detach() + step_size * grad.sign()
        adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 40,
                    step_size: float = 0.01, batch_size: int = 500) -> float:
    """Accuracy under :func:`pgd_linf` (model in eval mode; default = Madry's evaluation attack)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        adv = pgd_linf(model, xb, yb, eps, steps, step_size)
        with torch.no_grad():
            correct += (model(adv).argmax(1) == yb).sum().item()
    model.train(was_training)
    return correct / len(x)


def _load(dataset: str, root: Path, split: str) -> tuple[Tensor, Tensor]:
    loader = load_mnist if dataset == "mnist" else load_cifar10
    return loader(root, split=split)


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


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels of ``model`` (in eval mode) on ``x``."""
    was_training = model.training
    model.eval()
    preds = [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(preds)


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in ``[0, 1]``."""
    return (predict(model, x) == y).float().mean().item()


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def train(
    dataset: str,
    data_root: str | Path,
    out_path: str | Path,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    max_lr: float | None = None,
    num_threads: int = 2,
    limit_train: int | None = None,
    adversarial: AdversarialTraining | None = None,
) -> dict[str, float]:
    """Train the ``dataset`` network and save its ``Normalized`` state dict to ``out_path``.

    Args:
        dataset: ``"mnist"`` or ``"cifar10"``.
        data_root: directory the dataset loaders read (see :mod:`strattack.data`).
        out_path: destination ``.safetensors`` file.
        epochs, batch_size, max_lr: override the defaults in :data:`CONFIGS`.
        seed: seeds python, numpy, torch and the shuffling/augmentation generator.
        num_threads: CPU threads for torch.
        limit_train: use only the first N training images (for smoke tests).
        adversarial: train on PGD examples instead of clean ones (robust model of Table 2).

    Returns:
        Final test accuracies: ``{"test_acc": ...}`` plus ``"exact_acc"`` for
        CIFAR-10 (test images ``0..845``).
    """
    cfg = CONFIGS[dataset]
    epochs = cfg.epochs if epochs is None else epochs
    batch_size = cfg.batch_size if batch_size is None else batch_size
    max_lr = cfg.max_lr if max_lr is None else max_lr
    torch.set_num_threads(num_threads)
    gen = _seed_everything(seed)

    x_train, y_train = _load(dataset, Path(data_root), "train")
    x_test, y_test = _load(dataset, Path(data_root), "test")
    if limit_train is not None:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    print(f"{dataset}: train {tuple(x_train.shape)}, test {tuple(x_test.shape)}; "
          f"epochs={epochs} batch={batch_size} max_lr={max_lr} seed={seed}", flush=True)

    model = build_model(dataset)
    # No weight decay on biases / BatchNorm parameters (standard practice).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=max_lr, momentum=0.9, nesterov=True,
    )
    steps_per_epoch = (len(x_train) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )

    result: dict[str, float] = {}
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss, correct = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            xb = augment(x_train[idx], cfg.crop_padding, cfg.hflip, gen)
            yb = y_train[idx]
            if adversarial is not None:
                progress = (epoch - 1 + i / steps_per_epoch) / max(adversarial.ramp_epochs, 1e-9)
                eps = adversarial.eps * min(1.0, progress)
                # Examples are crafted in eval mode so BatchNorm statistics see only training steps.
                model.eval()
                xb = pgd_linf(model, xb, yb, eps, adversarial.steps,
                              adversarial.step_size * eps / adversarial.eps, gen)
                model.train()
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        train_time = time.perf_counter() - t0
        result = {"test_acc": evaluate(model, x_test, y_test)}
        msg = (f"epoch {epoch:2d}/{epochs}  loss {total_loss / len(x_train):.4f}  "
               f"train_acc {correct / len(x_train):.4f}  test_acc {result['test_acc']:.4f}")
        if dataset == "cifar10":
            n = CIFAR10_EXACT_TEST
            result["exact_acc"] = evaluate(model, x_test[:n], y_test[:n])
            msg += f"  exact0-{n - 1}_acc {result['exact_acc']:.4f}"
        if adversarial is not None and epoch == epochs:
            result["pgd40_acc_1000"] = robust_accuracy(model, x_test[:1000], y_test[:1000],
                                                       adversarial.eps)
            msg += f"  pgd40(eps={adversarial.eps})_acc@1000 {result['pgd40_acc_1000']:.4f}"
        msg += f"  time {train_time:.0f}s (+eval {time.perf_counter() - t0 - train_time:.0f}s)"
        print(msg, flush=True)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {"dataset": dataset, "epochs": str(epochs), "seed": str(seed),
                **({"adversarial": repr(adversarial)} if adversarial is not None else {}),
                **{k: f"{v:.4f}" for k, v in result.items()}}
    save_file(state, str(out_path), metadata=metadata)
    print(f"saved {out_path} ({out_path.stat().st_size / 1e6:.2f} MB): {result}", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m strattack.models.training``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(CONFIGS))
    p.add_argument("--data-root", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--adv-eps", type=float, default=None,
                   help="PGD adversarial training at this l_inf radius (robust model)")
    p.add_argument("--adv-steps", type=int, default=5)
    p.add_argument("--adv-step-size", type=float, default=0.1)
    p.add_argument("--adv-ramp-epochs", type=float, default=2.0)
    a = p.parse_args(argv)
    adversarial = (None if a.adv_eps is None else
                   AdversarialTraining(a.adv_eps, a.adv_steps, a.adv_step_size, a.adv_ramp_epochs))
    train(a.dataset, a.data_root, a.out, epochs=a.epochs, seed=a.seed,
          batch_size=a.batch_size, max_lr=a.max_lr, num_threads=a.threads,
          limit_train=a.limit_train, adversarial=adversarial)


if __name__ == "__main__":
    main()
