"""Load a folder of images listed in a CSV labels file, with ImageNet evaluation preprocessing.

The folder holds image files plus a labels file (``labels.csv`` by default): a CSV
with a header row and at least the columns ``filename`` (relative to the folder)
and ``label_index`` (an integer class index); other columns (e.g. ``wnid``,
``class_name``) are optional. This is the layout of the 1000-image ImageNet sample
used by the benchmarks::

    filename,wnid,label_index,class_name
    n01440764_tench.JPEG,n01440764,0,tench

Preprocessing (standard ImageNet evaluation, in plain PIL + torch, no torchvision):

1. convert to RGB (grayscale / palette / RGBA / CMYK images included);
2. resize so the *short side* equals ``resize`` (default 256), keeping the aspect
   ratio (long side ``int(resize * long / short)``, as torchvision's ``Resize``),
   with PIL **bicubic** interpolation. PIL's ``resize`` filters with a kernel
   widened by the scale factor when downsampling, i.e. it antialiases. Bicubic is
   what the TensorFlow EfficientNet evaluation pipeline uses (the weights served by
   :func:`~strattack.models.pretrained.load_pretrained` as ``"efficientnet_lite0"``
   come from it), and it is how the shared ImageNet sample was resized to a short
   side of 256 in the first place. Images whose short side already equals
   ``resize`` are not resampled;
3. center-crop ``size x size`` (default 224), with torchvision's rounding of the
   offsets (``round((h - size) / 2)``);
4. scale to float32 in ``[0, 1]``, NCHW. No mean/std normalisation: models wrapped in
   :class:`~strattack.models.nets.Normalized` take ``[0, 1]`` images, the domain in
   which attacks constrain perturbations.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_image_folder", "class_names", "read_labels", "preprocess_image"]

_REQUIRED_COLUMNS = ("filename", "label_index")


def _labels_path(root: str | Path, labels_file: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    path = root / labels_file
    if not path.is_file():
        raise FileNotFoundError(
            f"labels file {path} not found (expected a CSV with header columns "
            f"{', '.join(_REQUIRED_COLUMNS)})"
        )
    return path


def _read_rows(
    root: str | Path, labels_file: str | Path
) -> tuple[Path, list[tuple[int, dict[str, str]]], list[str]]:
    """``(line number, row dict)`` of the labels CSV after checking the header; also the columns."""
    path = _labels_path(root, labels_file)
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: tolerate a BOM
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; the header must contain "
                f"{list(_REQUIRED_COLUMNS)} (found {columns})"
            )
        reader.fieldnames = columns
        rows = [
            (reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None})
            for row in reader
        ]
    return path, rows, columns


def read_labels(root: str | Path, labels_file: str | Path = "labels.csv") -> tuple[list[str], list[int]]:
    """Parse the labels file of an image folder.

    Returns:
        ``(filenames, label_indices)`` in file order.

    Raises:
        FileNotFoundError: the folder or the labels file does not exist.
        ValueError: a required column is missing, a row has an empty filename or a
            ``label_index`` that is not a non-negative integer, or the file lists no images.
    """
    path, rows, _ = _read_rows(root, labels_file)
    return _parse_rows(path, rows)


def _parse_rows(
    path: Path, rows: list[tuple[int, dict[str, str]]]
) -> tuple[list[str], list[int]]:
    names: list[str] = []
    labels: list[int] = []
    for line, row in rows:
        name, label = row.get("filename", ""), row.get("label_index", "")
        if not name:
            raise ValueError(f"{path}, line {line}: empty filename")
        try:
            value = int(label)
        except ValueError:
            raise ValueError(
                f"{path}, line {line}: label_index {label!r} is not an integer"
            ) from None
        if value < 0:
            raise ValueError(f"{path}, line {line}: negative label_index {value}")
        names.append(name)
        labels.append(value)
    if not names:
        raise ValueError(f"{path}: lists no images")
    return names, labels


def class_names(root: str | Path, labels_file: str | Path = "labels.csv") -> dict[int, str]:
    """Mapping ``label_index -> class_name`` from the labels file's ``class_name`` column.

    Only the classes that occur in the file are present; the dict is empty when the
    file has no ``class_name`` column.

    Raises:
        ValueError: one ``label_index`` is given two different class names (or the
            checks of :func:`read_labels` fail).
    """
    path, rows, columns = _read_rows(root, labels_file)
    _, labels = _parse_rows(path, rows)
    if "class_name" not in columns:
        return {}
    mapping: dict[int, str] = {}
    for label, (line, row) in zip(labels, rows):
        name = row.get("class_name", "")
        if label in mapping and mapping[label] != name:
            raise ValueError(
                f"{path}, line {line}: label_index {label} named {name!r}, "
                f"but {mapping[label]!r} earlier"
            )
        mapping[label] = name
    return mapping


def preprocess_image(path: str | Path, size: int = 224, resize: int | None = 256) -> Tensor:
    """Load one image and apply the module's preprocessing: ``(3, size, size)`` float32 in ``[0, 1]``.

    ``resize=None`` skips the resize step (then both sides must be at least ``size``).
    """
    from PIL import Image  # Pillow: `pip install pillow` (in the `imagenet` extra)

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        if resize is not None and min(w, h) != resize:
            if w <= h:
                new_w, new_h = resize, int(resize * h / w)
            else:
                new_w, new_h = int(resize * w / h), resize
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
            w, h = new_w, new_h
        if w < size or h < size:
            raise ValueError(
                f"{path}: image of size {w}x{h} (after resizing) is smaller than the crop {size}"
            )
        top = int(round((h - size) / 2.0))
        left = int(round((w - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.uint8)  # (size, size, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image_folder(
    root: str | Path,
    labels_file: str | Path = "labels.csv",
    indices: Sequence[int] | None = None,
    size: int = 224,
    resize: int | None = 256,
) -> tuple[Tensor, Tensor, list[str]]:
    """Load (a subset of) the images listed in ``root/labels_file``, preprocessed for ImageNet models.

    Args:
        root: the folder holding the images and the labels file.
        labels_file: CSV (header row) with columns ``filename`` and ``label_index``,
            relative to ``root``.
        indices: positions (rows, 0-based, in file order; negative values count from
            the end) to load; ``None`` loads all rows. Use it to load large folders in
            batches.
        size: side of the square center crop.
        resize: the short side is resized to this before cropping (bicubic,
            antialiased); ``None`` disables resizing.

    Returns:
        ``(images, labels, names)``: float32 ``(N, 3, size, size)`` in ``[0, 1]``,
        int64 ``(N,)`` label indices, and the ``N`` file names.

    Raises:
        FileNotFoundError: the folder, the labels file or any selected image is missing.
        IndexError: an index is out of range.
        ValueError: malformed labels file (see :func:`read_labels`), ``resize < size``,
            or an unreadable / too small image.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if resize is not None and resize < size:
        raise ValueError(f"resize ({resize}) must be >= size ({size}) so the crop fits")
    names, labels = read_labels(root, labels_file)
    root = Path(root)
    if indices is None:
        selected = list(range(len(names)))
    else:
        selected = []
        for i in indices:
            i = int(i)
            if not -len(names) <= i < len(names):
                raise IndexError(
                    f"index {i} out of range for {len(names)} images in {root / labels_file}"
                )
            selected.append(i % len(names))
    files = [root / names[i] for i in selected]
    missing = [names[i] for i, f in zip(selected, files) if not f.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} image file(s) listed in {root / labels_file} missing from {root}: {shown}"
        )
    images = torch.empty(len(files), 3, size, size, dtype=torch.float32)
    for k, f in enumerate(files):
        try:
            images[k] = preprocess_image(f, size=size, resize=resize)
        except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
            raise ValueError(f"cannot read image {f}: {exc}") from exc
    label_tensor = torch.tensor([labels[i] for i in selected], dtype=torch.int64)
    return images, label_tensor, [names[i] for i in selected]
