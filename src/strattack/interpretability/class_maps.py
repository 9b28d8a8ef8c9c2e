"""Which class activation map a model gets: exact CAM where the head allows it, else Grad-CAM.

The CAM-based IS of Section 6 needs one map per image; the paper's models have a global average
pooling + linear head, ours for CIFAR-10 and MNIST do not. :func:`choose_class_maps` decides once
per model (one traced forward pass) and the result is applied to every batch, and its
``description`` says in the output which method and layer were used.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .cam import cam, find_cam_layers
from .gradcam import default_gradcam_layer, grad_cam, named_layer

__all__ = ["ClassMaps", "choose_class_maps"]


@dataclass(frozen=True)
class ClassMaps:
    """A chosen map method for ``model``: ``method`` "CAM" (``features`` and ``classifier``
    set) or "Grad-CAM" (at ``layer``). Call it as ``maps(inputs, classes)`` -> (N, H, W) in
    [0, 1]."""

    model: nn.Module
    method: str
    layer: str
    features: nn.Module | None = None
    classifier: nn.Linear | None = None

    def __call__(self, inputs: Tensor, classes: Tensor | int) -> Tensor:
        if self.method == "CAM":
            return cam(self.model, inputs, classes, features=self.features,
                       classifier=self.classifier)
        return grad_cam(self.model, inputs, classes, layer=self.layer)

    @property
    def description(self) -> str:
        """E.g. ``Grad-CAM (Selvaraju et al. 2017) at layer 'model.features.12'``."""
        source = "Zhou et al. 2016" if self.method == "CAM" else "Selvaraju et al. 2017"
        return f"{self.method} ({source}) at layer {self.layer!r}"


def choose_class_maps(model: nn.Module, example: Tensor, layer: str | None = None,
                      method: str = "auto") -> ClassMaps:
    """CAM when ``model`` has a GAP + linear head (:func:`find_cam_layers`) and ``method`` is
    "auto" or "cam"; Grad-CAM otherwise (``method`` "gradcam" forces it), at ``layer`` or the
    default of :func:`default_gradcam_layer`. ``layer`` is only for Grad-CAM: CAM's layer is
    fixed by the head. ValueError if neither applies (e.g. an MLP), naming both reasons."""
    if method not in ("auto", "cam", "gradcam"):
        raise ValueError(f"method must be 'auto', 'cam' or 'gradcam', got {method!r}")
    if method != "gradcam" and layer is None:
        try:
            features, classifier = find_cam_layers(model, example)
        except ValueError as err:
            if method == "cam":
                raise
            no_cam = str(err)
        else:
            return ClassMaps(model, "CAM", _name_of(model, features), features, classifier)
    elif method == "cam":
        raise ValueError("layer= chooses a Grad-CAM layer; CAM's layer is fixed by the head")
    else:
        no_cam = "Grad-CAM asked for"
    try:
        name = layer if layer is not None else default_gradcam_layer(model, example)
        named_layer(model, name)
    except ValueError as err:
        raise ValueError(f"{no_cam}; and no Grad-CAM either: {err}") from err
    return ClassMaps(model, "Grad-CAM", name)


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)
