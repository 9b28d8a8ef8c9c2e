"""CIFAR-10 loader reading the official "python version" batches.

The files are ``cifar-10-batches-py/{data_batch_1..5,test_batch}``: pickles
holding ``data`` (N x 3072 uint8, channel-major: 1024 R, 1024 G, 1024 B) and
``labels``. Reading them directly avoids a torchvision dependency.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._common import download_url, first_dir_with

__all__ = ["load_cifar10", "CIFAR10_URL", "CIFAR10_CLASSES"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
_BATCH_DIR = "cifar-10-batches-py"
_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


def _candidates(root: Path) -> list[Path]:
    """Directories that may hold the batch files, in search order."""
    if root.name == _BATCH_DIR:
        return [root]
    return [root / _BATCH_DIR, root / "cifar10" / _BATCH_DIR, root]


def _find_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return first_dir_with(_candidates(root), names)


def _download(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    if not archive.is_file():
        download_url(CIFAR10_URL, archive, timeout=300.0)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(_BATCH_DIR + "/")]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse unsafe paths
            tar.extractall(root, members=members, filter="data")
        else:
            tar.extractall(root, members=members)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 batch (need keys 'data', 'labels')") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}"
        )
    return data, labels


def load_cifar10(
    root: str | Path, split: str = "test", download: bool = False
) -> tuple[Tensor, Tensor]:
    """Load a CIFAR-10 split.

    Args:
        root: directory containing ``cifar-10-batches-py/`` (or ``cifar10/cifar-10-batches-py/``),
            or that batch directory itself.
        split: ``"train"`` (50k) or ``"test"`` (10k).
        download: fetch and extract the official archive into ``root`` if files are missing.

    Returns:
        ``(images, labels)``: float32 ``(N, 3, 32, 32)`` in ``[0, 1]`` and int64 ``(N,)``.

    Raises:
        FileNotFoundError: files missing and ``download`` is False.
        ValueError: unknown split or malformed batch file.
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; expected one of {sorted(_SPLIT_FILES)}")
    root = Path(root)
    names = _SPLIT_FILES[split]
    d = _find_dir(root, names)
    if d is None and download:
        _download(root)
        d = _find_dir(root, names)
    if d is None:
        where = " or ".join(str(p) for p in _candidates(root))
        raise FileNotFoundError(
            f"CIFAR-10 {split} files not found. Expected {', '.join(names)} in {where}. "
            f"Get them with load_cifar10(..., download=True) (CLI: --download), which fetches "
            f"{CIFAR10_URL}; or, from JPEG copies, run `python prepare_cifar10.py DIR` "
            f"and pass DIR as the data root."
        )
    parts = [_read_batch(d / n) for n in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels)
    return x, y
