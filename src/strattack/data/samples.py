"""Small bundled test samples so examples and tests run without any dataset.

Each ``samples/{dataset}_test_samples.npz`` holds ``images`` (uint8 NCHW),
``labels`` and ``indices`` (positions in the official test set). They are made
by ``benchmarks/make_samples.py``. For CIFAR-10 all indices are < 846, the
test images known to be bit-identical with the official release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .registry import NAMED_DATASETS

__all__ = ["load_samples", "SAMPLE_DATASETS", "samples_path"]

SAMPLE_DATASETS: tuple[str, ...] = NAMED_DATASETS    # every named dataset ships samples
_SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def samples_path(dataset: str) -> Path:
    """Path of the bundled ``.npz`` for ``dataset``."""
    if dataset not in SAMPLE_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(SAMPLE_DATASETS)}")
    return _SAMPLES_DIR / f"{dataset}_test_samples.npz"


def load_samples(dataset: str) -> tuple[Tensor, Tensor, Tensor]:
    """Load the bundled test samples of ``dataset`` (``"mnist"`` or ``"cifar10"``).

    Returns:
        ``(images, labels, indices)``: float32 NCHW in ``[0, 1]``, int64 labels,
        int64 indices into the official test set.
    """
    path = samples_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled samples {path} missing; recreate with "
            f"`python benchmarks/make_samples.py --data-root DATA_ROOT`"
        )
    with np.load(path) as z:
        images = torch.from_numpy(z["images"].astype(np.float32) / 255.0)
        labels = torch.from_numpy(z["labels"].astype(np.int64))
        indices = torch.from_numpy(z["indices"].astype(np.int64))
    return images, labels, indices
