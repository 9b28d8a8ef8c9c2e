"""The images an evaluation attacks: a named dataset's test split, the bundled samples, or a
folder of images with a labels file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ._common import default_data_root
from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .mnist import load_mnist
from .samples import load_samples

__all__ = ["EvaluationData", "load_evaluation_data", "CIFAR10_EXACT_TEST"]

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


def load_evaluation_data(dataset: str, data_root: str | Path | None = None,
                         bundled: bool = False, download: bool = False) -> EvaluationData:
    """``dataset``: ``"mnist"``, ``"cifar10"`` (test split; CIFAR-10 restricted to its exact
    images 0..845) or the path of an image folder with a ``labels.csv`` (ImageNet-style, see
    :func:`strattack.data.image_folder.load_image_folder`; 224x224 after resize + center crop).
    ``bundled``: use the 100 test images shipped with the package instead of ``data_root``;
    ``download``: fetch missing MNIST / CIFAR-10 files into ``data_root`` first."""
    if dataset in ("mnist", "cifar10"):
        names = [str(i) for i in range(10)] if dataset == "mnist" else list(CIFAR10_CLASSES)
        if bundled:
            images, labels, ids = load_samples(dataset)
        else:
            root = Path(data_root) if data_root is not None else default_data_root()
            loader = load_mnist if dataset == "mnist" else load_cifar10
            images, labels = loader(root, split="test", download=download)
            if dataset == "cifar10":
                images, labels = images[:CIFAR10_EXACT_TEST], labels[:CIFAR10_EXACT_TEST]
            ids = torch.arange(len(images))
        return EvaluationData(dataset, images, labels, ids, names, group_size=2)
    if bundled:
        raise ValueError("--bundled samples exist only for mnist and cifar10")
    folder = Path(dataset)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r} is neither 'mnist', 'cifar10' nor an "
                                f"existing image folder")
    from .image_folder import class_names, load_image_folder

    images, labels, _ = load_image_folder(folder)
    mapping = class_names(folder)
    num_classes = 1000 if max(mapping, default=0) < 1000 else max(mapping) + 1
    names = [mapping.get(i, str(i)) for i in range(num_classes)]
    # 13x13 groups as in the paper's ImageNet experiments (Sec. 7 / App. F).
    return EvaluationData(folder.name, images, labels, torch.arange(len(images)), names,
                          group_size=13)
