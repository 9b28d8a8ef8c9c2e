"""Train the paper's MNIST / CIFAR-10 classifiers and save them as safetensors: the library
functions behind ``strattack train``.

The StrAttack paper (Xu et al., ICLR 2019, Appendix F) attacks the Carlini &
Wagner networks defined in :mod:`strattack.models.nets`. This module trains
them from the raw datasets so the shipped weights are reproducible::

    strattack train --dataset mnist --data-root ../shared/data \
        --out src/strattack/models/weights/mnist.safetensors
    strattack train --dataset cifar10 --data-root data-cache \
        --out src/strattack/models/weights/cifar10.safetensors

The recipe (hyper-parameters, augmentation, optimiser) is :mod:`strattack.models.recipe`; the
defenses are :mod:`strattack.models.adversarial_training` and
:mod:`strattack.models.distillation`. The saved file is the ``state_dict`` of the
:class:`~strattack.models.nets.Normalized` wrapper, so normalisation constants travel with the
weights.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from ..data.registry import DATASETS
from ..validation import check_count, check_positive
from .adversarial_training import AdversarialTraining, robust_accuracy
from .distillation import fold_temperature, soft_labels
from .pretrained import build_model, check_architecture
from .recipe import CONFIGS, Schedule, augment, optimizer, training_loss

__all__ = ["train", "distill", "fit", "accuracy", "predict", "save_model"]


def _load(dataset: str, root: Path, split: str) -> tuple[Tensor, Tensor]:
    return DATASETS[dataset].loader(root, split=split)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels of ``model`` (in eval mode) on ``x``."""
    was_training = model.training
    model.eval()
    preds = [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(preds)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in ``[0, 1]``."""
    return (predict(model, x) == y).float().mean().item()


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def fit(dataset: str, x_train: Tensor, targets: Tensor, x_test: Tensor, y_test: Tensor,
        schedule: Schedule, gen: torch.Generator, temperature: float = 1.0,
        adversarial: AdversarialTraining | None = None, arch: str = "cnn"
        ) -> tuple[nn.Module, dict[str, float]]:
    """A fresh ``dataset`` network (architecture ``arch``, :data:`ARCHITECTURES`) trained on
    (x_train, targets) with softmax(logits / T), T = ``temperature``; ``targets``: class
    indices, or soft labels (distillation); with ``adversarial``, on PGD examples of each
    batch. Returns the model (eval mode) and its final test accuracies (with ``adversarial``,
    also its accuracy under PGD-40 on the first 1000 test images).

    The logits are parametrized as T x (the network's output) during training, so the loss
    sees softmax(output) and the shipped recipe trains at any T; the factor is folded into
    the last layer afterwards (:func:`fold_temperature`). Training the plain network at
    T = 100 with this SGD recipe stays at chance (loss 2.3026, 11.35% test accuracy after 4
    epochs on MNIST): the 1/T in the gradient starves it."""
    model = build_model(dataset, arch)
    steps_per_epoch = (len(x_train) + schedule.batch_size - 1) // schedule.batch_size
    optim = optimizer(model, dataset, schedule, steps_per_epoch)
    result: dict[str, float] = {}
    for epoch in range(1, schedule.epochs + 1):
        t0 = time.perf_counter()
        loss, train_acc = _train_epoch(model, dataset, x_train, targets, schedule.batch_size,
                                       optim, gen, adversarial, epoch)
        train_time = time.perf_counter() - t0
        result = _test_accuracies(model, dataset, x_test, y_test)
        msg = (f"epoch {epoch:2d}/{schedule.epochs}  loss {loss:.4f}  train_acc {train_acc:.4f}  "
               + "  ".join(f"{k} {v:.4f}" for k, v in result.items()))
        if adversarial is not None and epoch == schedule.epochs:
            result["pgd40_acc_1000"] = robust_accuracy(model, x_test[:1000], y_test[:1000],
                                                       adversarial.eps)
            msg += f"  pgd40(eps={adversarial.eps})_acc@1000 {result['pgd40_acc_1000']:.4f}"
        msg += f"  time {train_time:.0f}s (+eval {time.perf_counter() - t0 - train_time:.0f}s)"
        print(msg, flush=True)
    model.eval()
    return fold_temperature(model, temperature) if temperature != 1 else model, result


def _train_epoch(model: nn.Module, dataset: str, x_train: Tensor, targets: Tensor,
                 batch_size: int, optim: tuple[torch.optim.Optimizer,
                                               torch.optim.lr_scheduler.LRScheduler],
                 gen: torch.Generator, adversarial: AdversarialTraining | None, epoch: int
                 ) -> tuple[float, float]:
    """One epoch of shuffled, augmented minibatches (with ``adversarial``, their PGD
    examples); returns the mean loss and the training accuracy."""
    cfg = CONFIGS[dataset]
    opt, sched = optim
    hard = targets if not targets.is_floating_point() else targets.argmax(1)
    batches = torch.randperm(len(x_train), generator=gen).split(batch_size)
    total_loss, correct = 0.0, 0
    for i, idx in enumerate(batches):
        xb = augment(x_train[idx], cfg.crop_padding, cfg.hflip, gen)
        if adversarial is not None:   # crafted in eval mode; the model comes back in train mode
            xb = adversarial.examples(model, xb, hard[idx], epoch - 1 + i / len(batches))
        model.train()
        logits = model(xb)
        loss = training_loss(logits, targets[idx])       # logits / T = the output
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == hard[idx]).sum().item()
    return total_loss / len(x_train), correct / len(x_train)


def _test_accuracies(model: nn.Module, dataset: str, x_test: Tensor, y_test: Tensor
                     ) -> dict[str, float]:
    result = {"test_acc": accuracy(model, x_test, y_test)}
    n = DATASETS[dataset].test_size
    if n is not None:       # the test images evaluations use (CIFAR-10: the exact 0..845)
        result["exact_acc"] = accuracy(model, x_test[:n], y_test[:n])
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
        CIFAR-10 (test images ``0..845``). ValueError for a bad value, before any data is read.
    """
    schedule = _checked_schedule(dataset, arch, limit_train, epochs, batch_size, max_lr)
    gen = _set_up(seed, num_threads)
    x_train, y_train, x_test, y_test = _data(dataset, data_root, limit_train)
    if extra_train is not None:
        x_train = torch.cat([x_train, extra_train[0].to(x_train.dtype)])
        y_train = torch.cat([y_train, extra_train[1].to(y_train.dtype)])
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
    batch_size: int | None = None,
    max_lr: float | None = None,
) -> dict[str, float]:
    """Defensive distillation (Papernot et al., 2016): a teacher trained with softmax(logits / T)
    labels the training set with its softmax at T; a student of the same architecture is
    trained at T on those soft labels and deployed at T = 1 (the saved model returns its raw
    logits, about T times larger than an undistilled model's). Same recipe as :func:`train`
    otherwise. The student is saved with ``defense``, ``temperature`` and both networks'
    accuracies in its metadata; returns the student's accuracies (and the teacher's). Teacher
    and student are both of architecture ``arch``."""
    check_positive("temperature", temperature)
    schedule = _checked_schedule(dataset, arch, limit_train, epochs, batch_size, max_lr)
    gen = _set_up(seed, num_threads)
    x_train, y_train, x_test, y_test = _data(dataset, data_root, limit_train)
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


def _checked_schedule(dataset: str, arch: str, limit_train: int | None, epochs: int | None,
                      batch_size: int | None, max_lr: float | None) -> Schedule:
    """The run's schedule; ValueError for an unknown ``arch`` or a value out of range, before
    any data is read."""
    check_architecture(arch)
    if limit_train is not None:
        check_count("limit_train", limit_train)
    return Schedule.of(dataset, epochs, batch_size, max_lr)


def _set_up(seed: int, num_threads: int | None) -> torch.Generator:
    """Torch's threads (``num_threads``, default: torch's) and every seed; the shuffling and
    augmentation generator."""
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    return _seed_everything(seed)
