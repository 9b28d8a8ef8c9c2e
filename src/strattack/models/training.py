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

from ..data.registry import DATASETS
from .pretrained import ARCHITECTURES, build_model, check_architecture

__all__ = ["TrainConfig", "CONFIGS", "AdversarialTraining", "Schedule", "pgd_linf", "train",
           "distill", "fit", "fold_temperature", "soft_labels", "training_loss", "evaluate", "main"]



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
    return DATASETS[dataset].loader(root, split=split)


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


@dataclass(frozen=True)
class Schedule:
    """Epochs, batch size and peak learning rate of one run (defaults: :data:`CONFIGS`)."""

    epochs: int
    batch_size: int
    max_lr: float

    @classmethod
    def of(cls, dataset: str, epochs: int | None = None, batch_size: int | None = None,
           max_lr: float | None = None) -> "Schedule":
        cfg = CONFIGS[dataset]
        return cls(cfg.epochs if epochs is None else epochs,
                   cfg.batch_size if batch_size is None else batch_size,
                   cfg.max_lr if max_lr is None else max_lr)


def training_loss(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Cross-entropy of softmax(logits / T) against class indices or, for distillation, against
    soft labels (rows of probabilities): -sum_j p_j log softmax(logits / T)_j, batch mean."""
    log_probs = F.log_softmax(logits / temperature, dim=1)
    if targets.is_floating_point():
        return -(targets * log_probs).sum(dim=1).mean()
    return F.nll_loss(log_probs, targets)


@torch.no_grad()
def soft_labels(teacher: nn.Module, x: Tensor, temperature: float,
                batch_size: int = 1000) -> Tensor:
    """The teacher's softmax(logits / T) on ``x`` (eval mode): the student's training labels."""
    teacher.eval()
    return torch.cat([F.softmax(teacher(x[i : i + batch_size]) / temperature, dim=1)
                      for i in range(0, len(x), batch_size)])


def _optimizer(model: nn.Module, dataset: str, schedule: Schedule, steps_per_epoch: int
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    # No weight decay on biases / BatchNorm parameters (standard practice).
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


def fold_temperature(model: nn.Module, temperature: float) -> nn.Module:
    """Multiply the last Linear layer by T, so that the model's logits are T times the trained
    network's output (same architecture, same predictions)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(temperature)
        last.bias.mul_(temperature)
    return model


def fit(dataset: str, x_train: Tensor, targets: Tensor, x_test: Tensor, y_test: Tensor,
        schedule: Schedule, gen: torch.Generator, temperature: float = 1.0,
        adversarial: AdversarialTraining | None = None, arch: str = "cnn"
        ) -> tuple[nn.Module, dict[str, float]]:
    """A fresh ``dataset`` network (architecture ``arch``, :data:`ARCHITECTURES`) trained on (x_train, targets) with softmax(logits / T),
    T = ``temperature``; ``targets``: class indices, or soft labels (distillation). Returns the
    model (eval mode) and its final test accuracies.

    The logits are parametrized as T x (the network's output) during training, so the loss
    sees softmax(output) and the shipped recipe trains at any T; the factor is folded into
    the last layer afterwards (:func:`fold_temperature`). Training the plain network at
    T = 100 with this SGD recipe stayed at chance (loss 2.3026, 11.35% test accuracy after 4
    epochs on MNIST): the 1/T in the gradient starves it."""
    cfg = CONFIGS[dataset]
    model = build_model(dataset, arch)
    bs = schedule.batch_size
    steps_per_epoch = (len(x_train) + bs - 1) // bs
    opt, sched = _optimizer(model, dataset, schedule, steps_per_epoch)
    hard = targets if not targets.is_floating_point() else targets.argmax(1)
    result: dict[str, float] = {}
    for epoch in range(1, schedule.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss, correct = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            xb = augment(x_train[idx], cfg.crop_padding, cfg.hflip, gen)
            if adversarial is not None:
                progress = (epoch - 1 + i / steps_per_epoch) / max(adversarial.ramp_epochs, 1e-9)
                eps = adversarial.eps * min(1.0, progress)
                # Examples are crafted in eval mode so BatchNorm statistics see only training steps.
                model.eval()
                xb = pgd_linf(model, xb, hard[idx], eps, adversarial.steps,
                              adversarial.step_size * eps / adversarial.eps, gen)
                model.train()
            logits = model(xb)
            loss = training_loss(logits, targets[idx])       # logits / T = the output
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == hard[idx]).sum().item()
        train_time = time.perf_counter() - t0
        result = _test_accuracies(model, dataset, x_test, y_test)
        msg = (f"epoch {epoch:2d}/{schedule.epochs}  loss {total_loss / len(x_train):.4f}  "
               f"train_acc {correct / len(x_train):.4f}  "
               + "  ".join(f"{k} {v:.4f}" for k, v in result.items()))
        if adversarial is not None and epoch == schedule.epochs:
            result["pgd40_acc_1000"] = robust_accuracy(model, x_test[:1000], y_test[:1000],
                                                       adversarial.eps)
            msg += f"  pgd40(eps={adversarial.eps})_acc@1000 {result['pgd40_acc_1000']:.4f}"
        msg += f"  time {train_time:.0f}s (+eval {time.perf_counter() - t0 - train_time:.0f}s)"
        print(msg, flush=True)
    model.eval()
    return fold_temperature(model, temperature) if temperature != 1 else model, result


def _test_accuracies(model: nn.Module, dataset: str, x_test: Tensor, y_test: Tensor
                     ) -> dict[str, float]:
    result = {"test_acc": evaluate(model, x_test, y_test)}
    n = DATASETS[dataset].test_size
    if n is not None:       # the test images evaluations use (CIFAR-10: the exact 0..845)
        result["exact_acc"] = evaluate(model, x_test[:n], y_test[:n])
    return result


def save_model(model: nn.Module, out_path: str | Path, metadata: dict[str, str]) -> Path:
    """The ``Normalized`` state dict as safetensors, with string ``metadata``."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_path), metadata=metadata)
    print(f"saved {out_path} ({out_path.stat().st_size / 1e6:.2f} MB): {metadata}", flush=True)
    return out_path


def _data(dataset: str, data_root: str | Path, limit_train: int | None
          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x_train, y_train = _load(dataset, Path(data_root), "train")
    x_test, y_test = _load(dataset, Path(data_root), "test")
    if limit_train is not None:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    print(f"{dataset}: train {tuple(x_train.shape)}, test {tuple(x_test.shape)}", flush=True)
    return x_train, y_train, x_test, y_test


def train(
    dataset: str,
    data_root: str | Path,
    out_path: str | Path,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    max_lr: float | None = None,
    num_threads: int | None = None,
    limit_train: int | None = None,
    adversarial: AdversarialTraining | None = None,
    extra_train: tuple[Tensor, Tensor] | None = None,
    arch: str = "cnn",
) -> dict[str, float]:
    """Train the ``dataset`` network and save its ``Normalized`` state dict to ``out_path``.

    Args:
        dataset: ``"mnist"`` or ``"cifar10"``.
        data_root: directory the dataset loaders read (see :mod:`strattack.data`).
        out_path: destination ``.safetensors`` file.
        epochs, batch_size, max_lr: override the defaults in :data:`CONFIGS`.
        seed: seeds python, numpy, torch and the shuffling/augmentation generator.
        num_threads: CPU threads for torch (default: torch's, which follows OMP_NUM_THREADS).
        limit_train: use only the first N training images (for smoke tests).
        adversarial: train on PGD examples instead of clean ones (robust model of Table 2).
        extra_train: (images, labels) added to the training set, e.g. adversarial examples
            with their true labels (adversarial training by data augmentation, App. H).
        arch: the network (:data:`ARCHITECTURES`): ``"cnn"``, the paper's, or a zoo network
            for transferability; recorded in the file's metadata, which loading reads.

    Returns:
        Final test accuracies: ``{"test_acc": ...}`` plus ``"exact_acc"`` for
        CIFAR-10 (test images ``0..845``).
    """
    check_architecture(arch)  # before any data is read
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    gen = _seed_everything(seed)
    x_train, y_train, x_test, y_test = _data(dataset, data_root, limit_train)
    if extra_train is not None:
        x_train = torch.cat([x_train, extra_train[0].to(x_train.dtype)])
        y_train = torch.cat([y_train, extra_train[1].to(y_train.dtype)])
    schedule = Schedule.of(dataset, epochs, batch_size, max_lr)
    model, result = fit(dataset, x_train, y_train, x_test, y_test, schedule, gen,
                        adversarial=adversarial, arch=arch)
    save_model(model, out_path, {"dataset": dataset, "arch": arch,
                                 "epochs": str(schedule.epochs),
                                 "seed": str(seed),
                                 **({"adversarial": repr(adversarial)} if adversarial else {}),
                                 **({"defense": "adversarial training (data augmentation)",
                                     "adv_examples": str(len(extra_train[1]))}
                                    if extra_train is not None else {}),
                                 **{k: f"{v:.4f}" for k, v in result.items()}})
    return result


def distill(
    dataset: str,
    data_root: str | Path,
    out_path: str | Path,
    temperature: float,
    epochs: int | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    limit_train: int | None = None,
    arch: str = "cnn",
) -> dict[str, float]:
    """Defensive distillation (Papernot et al., 2016): a teacher trained with softmax(logits / T)
    labels the training set with its softmax at T; a student of the same architecture is
    trained at T on those soft labels and deployed at T = 1 (the saved model returns its raw
    logits, about T times larger than an undistilled model's). Same recipe as :func:`train`
    otherwise. The student is saved with ``defense``, ``temperature`` and both networks'
    accuracies in its metadata; returns the student's accuracies (and the teacher's). Teacher
    and student are both of architecture ``arch``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_architecture(arch)  # before any data is read
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    gen = _seed_everything(seed)
    x_train, y_train, x_test, y_test = _data(dataset, data_root, limit_train)
    schedule = Schedule.of(dataset, epochs)
    print(f"teacher at T = {temperature:g}", flush=True)
    teacher, teacher_result = fit(dataset, x_train, y_train, x_test, y_test, schedule, gen,
                                  temperature, arch=arch)
    soft = soft_labels(teacher, x_train, temperature)
    print(f"student at T = {temperature:g} on the teacher's soft labels", flush=True)
    student, result = fit(dataset, x_train, soft, x_test, y_test, schedule, gen, temperature,
                          arch=arch)
    result.update({f"teacher_{k}": v for k, v in teacher_result.items()})
    save_model(student, out_path, {"dataset": dataset, "arch": arch, "defense": "distillation",
                                   "temperature": f"{temperature:g}",
                                   "epochs": str(schedule.epochs), "seed": str(seed),
                                   **{k: f"{v:.4f}" for k, v in result.items()}})
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
    p.add_argument("--arch", choices=ARCHITECTURES, default="cnn",
                   help="network: the paper's CNN or a zoo network (strattack.models.zoo)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--adv-eps", type=float, default=None,
                   help="PGD adversarial training at this l_inf radius (robust model)")
    p.add_argument("--adv-steps", type=int, default=5)
    p.add_argument("--adv-step-size", type=float, default=0.1)
    p.add_argument("--adv-ramp-epochs", type=float, default=2.0)
    p.add_argument("--distill-temperature", type=float, default=None,
                   help="defensive distillation at this temperature (teacher, then student)")
    a = p.parse_args(argv)
    if a.distill_temperature is not None:
        distill(a.dataset, a.data_root, a.out, a.distill_temperature, epochs=a.epochs,
                seed=a.seed, num_threads=a.threads, limit_train=a.limit_train, arch=a.arch)
        return
    adversarial = (None if a.adv_eps is None else
                   AdversarialTraining(a.adv_eps, a.adv_steps, a.adv_step_size, a.adv_ramp_epochs))
    train(a.dataset, a.data_root, a.out, epochs=a.epochs, seed=a.seed,
          batch_size=a.batch_size, max_lr=a.max_lr, num_threads=a.threads,
          limit_train=a.limit_train, adversarial=adversarial, arch=a.arch)


if __name__ == "__main__":
    main()
