"""The images an evaluation attacks: a named dataset's test split, the bundled samples, or a
folder of images with a labels file."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import default_data_root
from .registry import CIFAR10_EXACT_TEST, DATASETS, IMAGE_FOLDER_GROUP_SIZE
from .samples import load_samples

__all__ = ["EvaluationData", "check_dataset", "load_evaluation_data", "CIFAR10_EXACT_TEST"]


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
            raise ConfigError(f"images {missing[:10]} are not in the dataset "
                              f"({len(self.ids)} images)")
        return torch.tensor([row_of[int(i)] for i in ids], dtype=torch.long)

    def subset(self, rows: Tensor) -> "EvaluationData":
        return EvaluationData(self.name, self.images[rows], self.labels[rows], self.ids[rows],
                              self.class_names, self.group_size)


def check_dataset(dataset: str, bundled: bool = False) -> None:
    """ConfigError unless ``dataset`` names a dataset or (without ``bundled``) an image folder:
    lets a caller tell a wrong dataset from a wrong image index, both ConfigErrors of
    :func:`load_evaluation_data`."""
    if dataset in DATASETS:
        return
    if bundled:
        raise ConfigError(f"bundled samples exist only for {', '.join(DATASETS)}")
    if not Path(dataset).is_dir():
        raise ConfigError(f"dataset {dataset!r} is neither one of {', '.join(DATASETS)} nor an "
                          "existing image folder")


def load_evaluation_data(dataset: str, data_root: str | Path | None = None,
                         bundled: bool = False, download: bool = False,
                         ids: Sequence[int] | None = None, split: str = "test",
                         image_size: int = 224) -> EvaluationData:
    """``dataset``: ``"mnist"``, ``"cifar10"`` (test split; CIFAR-10 restricted to its exact
    images 0..845) or the path of an image folder with a ``labels.csv`` (ImageNet-style, see
    :func:`strattack.data.image_folder.load_image_folder`: short side ``image_size`` + 32, then
    a center crop of ``image_size`` squared, 224 by default; Lite1 / Lite2 take 240 / 260).
    ``bundled``: use the 100 test images shipped with the package instead of ``data_root``;
    ``download``: fetch missing MNIST / CIFAR-10 files into ``data_root`` first.
    ``ids``: only these images (dataset indices, in this order); an image folder then decodes
    only those files (decoding all 1,000 ImageNet sample images takes over a minute).
    ``split``: ``"train"`` attacks a named dataset's training split (ids are training-set
    indices), e.g. to make adversarial training data."""
    if split != "test" and (bundled or dataset not in DATASETS):
        raise ConfigError(f"--split {split} needs the files of a named dataset "
                          f"({', '.join(DATASETS)}), not bundled samples or an image folder")
    if dataset in DATASETS:
        info = DATASETS[dataset]
        if bundled:
            images, labels, all_ids = load_samples(dataset)
        else:
            root = Path(data_root) if data_root is not None else default_data_root()
            images, labels = info.load_split(root, split, download=download)
            all_ids = torch.arange(len(images))
        data = EvaluationData(dataset, images, labels, all_ids, list(info.class_names),
                              info.group_size)
        return data if ids is None else data.subset(data.rows(list(ids)))
    check_dataset(dataset, bundled)
    folder = Path(dataset)
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
            raise ConfigError(f"images {outside[:10]} are not in the dataset ({size} images)")
    images, labels, _ = load_image_folder(folder, indices=wanted.tolist(), size=image_size,
                                          resize=image_size + 32)
    return EvaluationData(folder.name, images, labels, wanted, names, IMAGE_FOLDER_GROUP_SIZE)
