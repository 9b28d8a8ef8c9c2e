"""Train the paper's network on MNIST / CIFAR-10 (Appendix F): the library function behind
``strattack train``."""
from __future__ import annotations

from pathlib import Path

from ..data import default_data_root
from ..data.registry import DATASETS
from ..errors import DataError
from ..models import training

__all__ = ["train"]


def train(dataset: str, out: Path, data_root: Path | None = None, epochs: int | None = None,
          seed: int = 0, download: bool = False) -> dict[str, float]:
    """Train ``dataset``'s network with the shipped recipe (``epochs`` overrides its length) on
    the files in ``data_root`` (default: $STRATTACK_DATA or ./data), fetched first with
    ``download``; save it to ``out`` as safetensors. Returns the final metrics."""
    root = data_root if data_root is not None else default_data_root()
    if download:
        _download(dataset, root)
    return training.train(dataset, root, out, epochs=epochs, seed=seed)


def _download(dataset: str, root: Path) -> None:
    try:
        for split in ("train", "test"):
            DATASETS[dataset].loader(root, split=split, download=True)
    except (OSError, RuntimeError) as err:   # offline, or every mirror failed
        raise DataError(f"download failed: {err}") from err
