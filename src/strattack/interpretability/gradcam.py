"""Grad-CAM (Selvaraju et al., ICCV 2017): class activation maps for any CNN.

CAM (:mod:`.cam`) needs a global-average-pooling + linear head; our CIFAR-10 and MNIST networks
end in ``Flatten`` + fully connected layers instead. Grad-CAM replaces the classifier weights by
the spatially averaged gradients of the class logit ``Z_c`` with respect to a feature map
``A`` (N, K, h, w) of a chosen layer (Selvaraju et al., eqs. (1)-(2)):

    alpha_{c,k} = mean_{x,y} dZ_c / dA_k(x, y),      L_c(x, y) = ReLU(sum_k alpha_{c,k} A_k(x, y))

For a GAP + linear head at its feature map, ``dZ_c / dA_k(x, y) = w_{c,k} / (h*w)`` everywhere,
so Grad-CAM = ReLU(CAM / (h*w)): the two agree up to a positive scale and the ReLU (tested).

Layer choice (:func:`default_gradcam_layer`): the last module to run whose output is a map at the
resolution of the last ``nn.Conv2d`` (so the activation after the last convolution, BN and ReLU,
as in the paper's "last convolutional layer", not the coarser max-pooled map after it). The map
and its gradient are read from the tensor the layer returned *after* the forward pass, so an
in-place activation applied to it later (``nn.ReLU(inplace=True)``) is included in both.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .cam import class_indices, finish_maps, forward_hooks

__all__ = ["grad_cam", "default_gradcam_layer", "named_layer"]


def _spatial(out: Any) -> bool:
    return isinstance(out, Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1


def default_gradcam_layer(model: nn.Module, example: Tensor) -> str:
    """Name (as in ``model.named_modules()``) of the Grad-CAM layer: the last module to finish
    with a (N, K, h, w) output, ``h*w > 1``, at the spatial size of the last ``nn.Conv2d``'s
    output (any such module if the model has no ``nn.Conv2d``). One forward pass of
    ``example``. ValueError if no module outputs a spatial map (e.g. an MLP)."""
    finished: list[tuple[str, tuple[int, ...], bool]] = []     # (name, (h, w), is a conv)

    def hook_for(name: str):
        def hook(module: nn.Module, _inp: Any, out: Any) -> None:
            if _spatial(out):
                finished.append((name, tuple(out.shape[2:]), isinstance(module, nn.Conv2d)))
        return hook

    with forward_hooks((m, hook_for(n)) for n, m in model.named_modules() if n), torch.no_grad():
        model(example)
    if not finished:
        raise ValueError("Grad-CAM needs a layer with a spatial (N, K, h, w) output, h*w > 1; "
                         "this model has none")
    convs = [i for i, (_, _, is_conv) in enumerate(finished) if is_conv]
    if not convs:
        return finished[-1][0]
    size = finished[convs[-1]][1]
    after = [name for name, hw, _ in finished[convs[-1]:] if hw == size]
    return after[-1]


def named_layer(model: nn.Module, name: str) -> nn.Module:
    """Submodule ``name`` of ``model``; ValueError listing a few names if there is none (and
    the full name when ``name`` ends one: "features.12" of a wrapped "model.features.12")."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        ending = [n for n in modules if name and n.endswith("." + name)]
        hint = f"did you mean {ending[0]!r}? " if len(ending) == 1 else ""
        shown = [n for n in modules if n][-8:]
        raise ValueError(f"model has no layer {name!r}; {hint}its last layers are {shown} "
                         "(see model.named_modules())")
    return modules[name]


def grad_cam(model: nn.Module, inputs: Tensor, classes: Tensor | int, *,
             layer: str | None = None, normalize: bool = True,
             upsample: bool = True) -> Tensor:
    """Grad-CAM maps ``L_c`` of ``inputs`` for ``classes``, shaped and scaled like :func:`cam`.

    Args:
        model: classifier in eval mode (BatchNorm in train mode would mix the images of the
            batch), ``inputs`` (N, C, H, W) in [0, 1] -> logits (N, num_classes).
        inputs: images (N, C, H, W); one forward and one backward pass for the whole batch.
        classes: class c of every image, an int or (N,).
        layer: module name in ``model.named_modules()`` whose output ``A`` (N, K, h, w) is
            explained (its last call in the forward pass); None: :func:`default_gradcam_layer`.
        normalize: min-max normalise each map to [0, 1] after upsampling (a constant map, e.g.
            all zero after the ReLU, becomes 0); False: the raw ReLU'd map in logit units.
        upsample: False returns the (N, h, w) maps of the layer, without interpolation.

    Returns:
        (N, H, W) maps, bilinearly upsampled to the input's (H, W) (as :func:`cam`).
    """
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be (N, C, H, W), got {tuple(inputs.shape)}")
    name = layer if layer is not None else default_gradcam_layer(model, inputs[:1])
    maps, logits = _forward_keeping(model, named_layer(model, name), inputs)
    c = class_indices(classes, inputs.shape[0], logits.shape[1], logits.device)
    if not maps.requires_grad:
        raise ValueError(f"layer {name!r} does not depend on the input: no gradient to weight")
    grads, = torch.autograd.grad(logits.gather(1, c[:, None]).sum(), maps)
    alpha = grads.mean(dim=(2, 3))                                    # Selvaraju eq. (1)
    raw = torch.relu(torch.einsum("nk,nkhw->nhw", alpha, maps.detach()))   # eq. (2)
    return finish_maps(raw, tuple(inputs.shape[-2:]), normalize=normalize, upsample=upsample)


def _forward_keeping(model: nn.Module, module: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """The last output of ``module`` (N, K, h, w), still in the graph, and the logits (N, k),
    from one forward pass with gradients (inputs require grad, so frozen weights work too)."""
    outputs: list[Tensor] = []

    def keep(_m: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            outputs.append(out)

    with forward_hooks([(module, keep)]), torch.enable_grad():
        logits = model(inputs.detach().requires_grad_(True))
    if not outputs or not _spatial(outputs[-1]) or outputs[-1].shape[0] != inputs.shape[0]:
        got = tuple(outputs[-1].shape) if outputs else "nothing"
        raise ValueError(f"the Grad-CAM layer must output a (N, K, h, w) map with h*w > 1 "
                         f"during the forward pass; it gave {got}")
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError("model must return logits (N, num_classes) for Grad-CAM")
    return outputs[-1], logits
