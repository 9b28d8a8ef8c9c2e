"""Train the paper's network on MNIST / CIFAR-10 (Appendix F): the library function behind
``strattack train``."""
from __future__ import annotations

from pathlib import Path

from ..data import default_data_root
from ..data.registry import DATASETS
from ..errors import ConfigError, DataError
from ..models import training

__all__ = ["train"]


DEFENSES = ("none", "distillation")


def train(dataset: str, out: Path, data_root: Path | None = None, epochs: int | None = None,
          seed: int = 0, download: bool = False, defense: str = "none",
          temperature: float | None = None) -> dict[str, float]:
    """Train ``dataset``'s network with the shipped recipe (``epochs`` overrides its length) on
    the files in ``data_root`` (default: $STRATTACK_DATA or ./data), fetched first with
    ``download``; save it to ``out`` as safetensors. ``defense="distillation"``: defensive
    distillation at ``temperature`` (:func:`~strattack.models.training.distill`). Returns the
    final metrics."""
    _check_defense(defense, temperature)
    root = data_root if data_root is not None else default_data_root()
    if download:
        _download(dataset, root)
    if defense == "distillation":
        return training.distill(dataset, root, out, float(temperature), epochs=epochs, seed=seed)
    return training.train(dataset, root, out, epochs=epochs, seed=seed)


def _check_defense(defense: str, temperature: float | None) -> None:
    if defense not in DEFENSES:
        raise ConfigError(f"--defense must be one of {DEFENSES}, got {defense!r}")
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
