"""The images an evaluation attacks: a named dataset's test split, the bundled samples, or a
folder of images with a labels file."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ._common import default_data_root
from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .mnist import load_mnist
from .samples import load_samples

__all__ = ["EvaluationData", "load_evaluation_data", "first_correct", "drop_misclassified",
           "CIFAR10_EXACT_TEST"]

#: CIFAR-10 test images 0..845 are bit-identical with the official release in the shared
#: benchmark data (the rest were decoded from JPEG copies): evaluations use only those.
CIFAR10_EXACT_TEST = 846


@dataclass
class EvaluationData:
    """Images (N, C, H, W) in [0, 1], labels (N,), ``ids`` (N,): each image's index in its
    dataset (stored with every result), class names, and the group size the paper uses on it."""

    name: str
    images: Tensor
    labels: Tensor
    ids: Tensor
    class_names: list[str]
    group_size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def rows(self, ids: list[int]) -> Tensor:
        """Positions in ``images`` of the images with these dataset ``ids``; ValueError naming
        the ids that are not in this data."""
        row_of = {int(i): r for r, i in enumerate(self.ids.tolist())}
        missing = [i for i in ids if int(i) not in row_of]
        if missing:
            raise ValueError(f"images {missing[:10]} are not in the dataset "
                             f"({len(self.ids)} images)")
        return torch.tensor([row_of[int(i)] for i in ids], dtype=torch.long)

    def subset(self, rows: Tensor) -> "EvaluationData":
        return EvaluationData(self.name, self.images[rows], self.labels[rows], self.ids[rows],
                              self.class_names, self.group_size)


def load_evaluation_data(dataset: str, data_root: str | Path | None = None,
                         bundled: bool = False, download: bool = False,
                         ids: Sequence[int] | None = None) -> EvaluationData:
    """``dataset``: ``"mnist"``, ``"cifar10"`` (test split; CIFAR-10 restricted to its exact
    images 0..845) or the path of an image folder with a ``labels.csv`` (ImageNet-style, see
    :func:`strattack.data.image_folder.load_image_folder`; 224x224 after resize + center crop).
    ``bundled``: use the 100 test images shipped with the package instead of ``data_root``;
    ``download``: fetch missing MNIST / CIFAR-10 files into ``data_root`` first.
    ``ids``: only these images (dataset indices, in this order); an image folder then decodes
    only those files (decoding all 1,000 ImageNet sample images takes over a minute)."""
    if dataset in ("mnist", "cifar10"):
        names = [str(i) for i in range(10)] if dataset == "mnist" else list(CIFAR10_CLASSES)
        if bundled:
            images, labels, all_ids = load_samples(dataset)
        else:
            root = Path(data_root) if data_root is not None else default_data_root()
            loader = load_mnist if dataset == "mnist" else load_cifar10
            images, labels = loader(root, split="test", download=download)
            if dataset == "cifar10":
                images, labels = images[:CIFAR10_EXACT_TEST], labels[:CIFAR10_EXACT_TEST]
            all_ids = torch.arange(len(images))
        data = EvaluationData(dataset, images, labels, all_ids, names, group_size=2)
        return data if ids is None else data.subset(data.rows(list(ids)))
    if bundled:
        raise ValueError("--bundled samples exist only for mnist and cifar10")
    folder = Path(dataset)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r} is neither 'mnist', 'cifar10' nor an "
                                f"existing image folder")
    from .image_folder import class_names, load_image_folder, read_labels

    mapping = class_names(folder)
    num_classes = 1000 if max(mapping, default=0) < 1000 else max(mapping) + 1
    names = [mapping.get(i, str(i)) for i in range(num_classes)]
    if ids is None:
        wanted = torch.arange(len(read_labels(folder)[0]))
    else:
        wanted = torch.tensor([int(i) for i in ids], dtype=torch.long)
        size = len(read_labels(folder)[0])
        outside = [int(i) for i in wanted if not 0 <= i < size]
        if outside:
            raise ValueError(f"images {outside[:10]} are not in the dataset ({size} images)")
    images, labels, _ = load_image_folder(folder, indices=wanted.tolist())
    # 13x13 groups as in the paper's ImageNet experiments (Sec. 7 / App. F).
    return EvaluationData(folder.name, images, labels, wanted, names, group_size=13)


def first_correct(model: Callable[[Tensor], Tensor], dataset: str, limit: int | None,
                  data_root: str | Path | None = None, bundled: bool = False,
                  download: bool = False, chunk: int = 64,
                  device: str | torch.device = "cpu") -> EvaluationData:
    """The first ``limit`` images of ``dataset`` that ``model`` classifies correctly (all of
    them for ``None``). An image folder is decoded ``chunk`` images at a time and only as far
    as needed; a named dataset is loaded whole (it is already in memory-friendly arrays)."""
    from ..evaluation.tasks import correctly_classified

    if dataset in ("mnist", "cifar10") or bundled or limit is None:
        data = load_evaluation_data(dataset, data_root, bundled, download)
        rows = correctly_classified(model, data.images.to(device), data.labels, limit)
        return data.subset(torch.tensor(rows, dtype=torch.long))
    from .image_folder import read_labels

    size = len(read_labels(dataset)[0])
    parts: list[EvaluationData] = []
    found = 0
    for start in range(0, size, chunk):
        part = load_evaluation_data(dataset, ids=range(start, min(start + chunk, size)))
        rows = correctly_classified(model, part.images.to(device), part.labels, limit - found)
        parts.append(part.subset(torch.tensor(rows, dtype=torch.long)))
        found += len(rows)
        if found >= limit:
            break
    first = parts[0]
    return EvaluationData(first.name, torch.cat([p.images for p in parts]),
                          torch.cat([p.labels for p in parts]), torch.cat([p.ids for p in parts]),
                          first.class_names, first.group_size)


def drop_misclassified(model: Callable[[Tensor], Tensor], data: EvaluationData,
                       device: str | torch.device = "cpu") -> tuple[EvaluationData, list[int]]:
    """``data`` without the images ``model`` already misclassifies, and the ids of those.

    An attack on a misclassified image "succeeds" with a zero perturbation (untargeted) or
    measures something else than the paper's tables (targeted), so such images must not enter
    the statistics: the paper attacks correctly classified images only."""
    from ..evaluation.tasks import correctly_classified

    rows = correctly_classified(model, data.images.to(device), data.labels)
    kept = set(rows)
    dropped = [int(data.ids[r]) for r in range(len(data.ids)) if r not in kept]
    return data.subset(torch.tensor(rows, dtype=torch.long)), dropped
