"""The named datasets and what the paper says about each, in one place.

Everything that depends on the dataset's name (its test-split loader, class names, bundled
model and samples, the paper's group size and initial constant) is read from here, so adding
a dataset is one entry.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..errors import ConfigError
from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .mnist import load_mnist

__all__ = ["DatasetInfo", "DATASETS", "NAMED_DATASETS", "SPLITS", "dataset_info",
           "CIFAR10_EXACT_TEST"]

Loader = Callable[..., tuple[Tensor, Tensor]]

#: CIFAR-10 test images 0..845 are bit-identical with the official release in the shared
#: benchmark data (the rest were decoded from JPEG copies): evaluations use only those.
CIFAR10_EXACT_TEST = 846

#: The splits an evaluation can attack: the test split (the tables), or the training split (to
#: make adversarial examples for adversarial training, App. H).
SPLITS = ("test", "train")

#: Group size r = S of the paper's ImageNet experiments (Sec. 7 / App. F), for image folders.
IMAGE_FOLDER_GROUP_SIZE = 13


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset: ``loader(root, split=..., download=...)`` -> (images, labels);
    ``test_size``: the test images evaluations may use (None: all); ``group_size`` and
    ``initial_const``: the paper's r = S and StrAttack's initial c on it (App. F)."""

    name: str
    loader: Loader
    class_names: tuple[str, ...]
    group_size: int
    initial_const: float
    test_size: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def default_model(self) -> str:
        """The bundled model trained on it (``load_pretrained`` name)."""
        return self.name

    def load_split(self, root: Path, split: str = "test", download: bool = False
                   ) -> tuple[Tensor, Tensor]:
        """The ``split`` ("test": only the images evaluations may use; or "train")."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        images, labels = self.loader(root, split=split, download=download)
        if split == "train":
            return images, labels
        return images[: self.test_size], labels[: self.test_size]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", load_mnist, tuple(str(i) for i in range(10)),
                         group_size=2, initial_const=0.5),
    "cifar10": DatasetInfo("cifar10", load_cifar10, tuple(CIFAR10_CLASSES), group_size=2,
                           initial_const=0.25, test_size=CIFAR10_EXACT_TEST),
}

#: Names of the registered datasets, e.g. for option choices.
NAMED_DATASETS: tuple[str, ...] = tuple(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {list(NAMED_DATASETS)}")
    return DATASETS[name]
