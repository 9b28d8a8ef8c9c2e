"""Dataset loaders (MNIST, CIFAR-10) and bundled test samples."""

from ._common import default_data_root
from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .image_folder import class_names, load_image_folder, read_labels
from .mnist import load_mnist
from .samples import load_samples

__all__ = [
    "CIFAR10_CLASSES",
    "class_names",
    "default_data_root",
    "load_cifar10",
    "load_image_folder",
    "load_mnist",
    "load_samples",
    "read_labels",
]
