"""Train the paper's network on MNIST / CIFAR-10 (Appendix F): the library function behind
``strattack train``."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ..data import default_data_root
from ..data.registry import DATASETS
from ..errors import ConfigError, DataError
from ..evaluation.store import STORE_NAME
from ..models import training
from ..models.adversarial_training import AdversarialTraining
from ..models.pretrained import ARCHITECTURES
from .common import read_store

__all__ = ["train", "adversarial_training_data", "pgd_training"]


DEFENSES = ("none", "distillation", "adversarial")


def train(dataset: str, out: Path, data_root: Path | None = None, epochs: int | None = None,
          seed: int = 0, download: bool = False, defense: str = "none",
          temperature: float | None = None, adv_examples: Path | None = None,
          threads: int | None = None, arch: str = "cnn", *, batch_size: int | None = None,
          max_lr: float | None = None, limit_train: int | None = None,
          adv_eps: float | None = None, adv_steps: int | None = None,
          adv_step_size: float | None = None,
          adv_ramp_epochs: float | None = None) -> dict[str, float]:
    """Train ``dataset``'s network with the shipped recipe (``epochs``, ``batch_size`` and
    ``max_lr`` override its own; ``limit_train``: the first N training images only) on the
    files in ``data_root`` (default: $STRATTACK_DATA or ./data), fetched first with
    ``download``; save it to ``out`` as safetensors. ``defense="distillation"``: defensive
    distillation at ``temperature`` (:func:`~strattack.models.training.distill`);
    ``defense="adversarial"``: the clean training set plus the successful adversarial examples
    of the run folder ``adv_examples`` (:func:`adversarial_training_data`). ``adv_eps``: PGD
    adversarial training at that l_inf radius (:func:`pgd_training`; ``adv_steps``,
    ``adv_step_size`` and ``adv_ramp_epochs`` tune it). ``threads``: torch CPU threads
    (default: torch's). ``arch``: the network (:data:`ARCHITECTURES`; ``cnn``, the paper's, by
    default), recorded in the file so that loading rebuilds it. Returns the final metrics.
    ConfigError or ValueError for a bad value, before any data is read."""
    _check_defense(defense, temperature, adv_examples)
    if arch not in ARCHITECTURES:
        raise ConfigError(f"--arch must be one of {ARCHITECTURES}, got {arch!r}")
    pgd = pgd_training(adv_eps, adv_steps, adv_step_size, adv_ramp_epochs)
    if pgd is not None and defense == "distillation":
        raise ConfigError("--adv-eps (PGD adversarial training) does not go with --defense "
                          "distillation")
    root = data_root if data_root is not None else default_data_root()
    run = {"epochs": epochs, "seed": seed, "num_threads": threads, "arch": arch,
                "batch_size": batch_size, "max_lr": max_lr, "limit_train": limit_train}
    if download:
        _download(dataset, root)
    if defense == "distillation":
        return training.distill(dataset, root, out, float(temperature), **run)
    extra = None
    if defense == "adversarial":
        extra = adversarial_training_data(Path(adv_examples), dataset, root)
    return training.train(dataset, root, out, extra_train=extra, adversarial=pgd, **run)


def pgd_training(adv_eps: float | None, adv_steps: int | None = None,
                 adv_step_size: float | None = None, adv_ramp_epochs: float | None = None
                 ) -> AdversarialTraining | None:
    """PGD adversarial training at radius ``adv_eps`` (None: none), the other settings
    :class:`~strattack.models.adversarial_training.AdversarialTraining`'s defaults where None.
    ConfigError for a setting without ``adv_eps``; ValueError for a value out of range."""
    given = {"steps": adv_steps, "step_size": adv_step_size, "ramp_epochs": adv_ramp_epochs}
    given = {name: value for name, value in given.items() if value is not None}
    if adv_eps is None:
        if given:
            raise ConfigError(f"--adv-{next(iter(given)).replace('_', '-')} goes with --adv-eps "
                              "(PGD adversarial training)")
        return None
    return AdversarialTraining(adv_eps, **given)


def adversarial_training_data(run: Path, dataset: str, data_root: Path
                              ) -> tuple[Tensor, Tensor]:
    """The successful adversarial examples of the `strattack eval --split train` store in
    ``run`` (every attack in it), as images x0 + delta with their TRUE labels (Tramer et al.,
    2018: data augmentation). DataError for a store of another dataset or split, or without a
    successful example."""
    with read_store(run / STORE_NAME) as store:
        _check_source(store.meta(), run, dataset)
        x_train, y_train = DATASETS[dataset].load_split(data_root, "train")
        found = [r for key in store.attacks() for r in store.records(key, True) if r.success]
    if not found:
        raise DataError(f"{run} has no successful adversarial example to train on")
    images = torch.stack([x_train[r.image] for r in found])
    deltas = torch.stack([torch.from_numpy(r.perturbation) for r in found])
    labels = torch.tensor([r.true_label for r in found])
    if not torch.equal(labels, y_train[[r.image for r in found]]):
        raise DataError(f"{run}: its true labels disagree with the training set in "
                        f"{data_root}: is it the same data?")
    return (images + deltas.to(images.dtype)).clamp(0, 1), labels


def _check_source(meta: Mapping[str, object], run: Path, dataset: str) -> None:
    if meta.get("dataset") != dataset or meta.get("split") != "train":
        raise DataError(f"{run} holds examples of dataset {meta.get('dataset')!r}, split "
                        f"{meta.get('split', 'test')!r}; adversarial training of {dataset} "
                        f"needs `strattack eval --dataset {dataset} --split train ...`")


def _check_defense(defense: str, temperature: float | None, adv_examples: Path | None) -> None:
    if defense not in DEFENSES:
        raise ConfigError(f"--defense must be one of {DEFENSES}, got {defense!r}")
    if (defense == "adversarial") != (adv_examples is not None):
        raise ConfigError("--adv-examples RUN goes with --defense adversarial (and it needs one)")
    if (defense == "distillation") != (temperature is not None):
        raise ConfigError("--temperature goes with --defense distillation (and it needs one)")
    if temperature is not None and not temperature > 0:
        raise ConfigError(f"--temperature must be > 0, got {temperature}")


def _download(dataset: str, root: Path) -> None:
    try:
        for split in ("train", "test"):
            DATASETS[dataset].loader(root, split=split, download=True)
    except (OSError, RuntimeError) as err:   # offline, or every mirror failed
        raise DataError(f"download failed: {err}") from err
