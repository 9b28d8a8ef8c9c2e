"""MNIST loader reading the four official IDX ``.gz`` files.

No torchvision dependency: the IDX format is simple (a big-endian magic number
encoding dtype and rank, the dimensions, then raw bytes), so we parse it with
numpy and validate the magic numbers to catch corrupt or mismatched files early.
"""

from __future__ import annotations

import gzip
import struct
import urllib.error
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._common import download_url, first_dir_with

__all__ = ["load_mnist", "MNIST_FILES", "MNIST_MIRRORS"]

#: File names per split: (images, labels).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Download mirrors, tried in order (the original site is often rate limited).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a gzipped IDX file, checking its magic number and declared size."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: file too short to be an IDX file")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise ValueError(
            f"{path}: IDX header declares shape {dims} ({count} bytes) "
            f"but {len(data) - header} bytes follow"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_dir(root: Path, names: tuple[str, str]) -> Path | None:
    return first_dir_with([root, root / "mnist"], names)


def _download(root: Path, names: tuple[str, str]) -> None:
    for name in names:
        dest = root / name
        if dest.is_file():
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                download_url(mirror + name, dest)
                break
            except (urllib.error.URLError, OSError) as exc:
                errors.append(f"{mirror}{name}: {exc}")
        else:
            raise RuntimeError("could not download MNIST:\n  " + "\n  ".join(errors))


def load_mnist(
    root: str | Path, split: str = "test", download: bool = False
) -> tuple[Tensor, Tensor]:
    """Load an MNIST split.

    Args:
        root: directory containing the IDX ``.gz`` files, directly or in ``root/mnist``.
        split: ``"train"`` (60k) or ``"test"`` (10k).
        download: fetch missing files from the official mirrors into ``root``.

    Returns:
        ``(images, labels)``: float32 ``(N, 1, 28, 28)`` in ``[0, 1]`` and int64 ``(N,)``.

    Raises:
        FileNotFoundError: files missing and ``download`` is False.
        ValueError: unknown split, or a file that is not a valid IDX file.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(MNIST_FILES)}")
    root = Path(root)
    names = MNIST_FILES[split]
    d = _find_dir(root, names)
    if d is None and download:
        _download(root, names)
        d = root
    if d is None:
        raise FileNotFoundError(
            f"MNIST {split} files not found. Expected {names[0]} and {names[1]} "
            f"in {root} or {root / 'mnist'}. Get them with load_mnist(..., download=True) "
            f"(CLI: --download), or download them manually from {MNIST_MIRRORS[0]}"
        )
    images = _read_idx(d / names[0], _IMAGES_MAGIC)
    labels = _read_idx(d / names[1], _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels in {d}"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y
