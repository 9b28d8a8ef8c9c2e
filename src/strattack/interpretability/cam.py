"""Class activation maps (CAM, Zhou et al., CVPR 2016), as used in Section 6 / Fig. 4 / Fig. A2
of the StrAttack paper.

For a network ending in ``feature map f (N, K, h, w) -> global average pooling -> Linear``
(logits ``Z_c = sum_k w_{c,k} mean_{x,y} f_k(x, y) + b_c``), the CAM of class ``c`` is

    M_c(x, y) = sum_k w_{c,k} f_k(x, y),        so that  Z_c = mean_{x,y} M_c(x, y) + b_c

(Zhou et al., eq. (1)-(2); the bias is a constant per class and is left out). :func:`cam`
upsamples ``M_c`` bilinearly to the input size and, by default, min-max normalises each map to
[0, 1].

Own implementation, no third-party CAM library at run time: the computation is one einsum over
a hooked feature map. ``torchcam`` (the ``[explain]`` extra; it installs without torchvision)
serves the tests as an independent reference: its ``CAM`` (0.5, no ReLU) at the feature
layer's resolution equals ``cam(..., normalize=False, upsample=False)``.
Models without such a head get Grad-CAM instead (:func:`~.gradcam.grad_cam`), which for a
GAP + linear head equals CAM / (h*w) after a ReLU but costs a backward pass.

Locating the layers: pass ``features`` (the module whose output is the spatial map fed to the
global average pooling) and ``classifier`` (the final ``nn.Linear``) explicitly, e.g. for
EfficientNet-Lite (``efficientnet_lite_pytorch.EfficientNet``) ``features=net._swish``
(its last call, after ``_bn1(_conv_head(.))``, is the head activation; the map used is the
last output of ``features`` before ``classifier`` runs) and ``classifier=net._fc``. Left out,
:func:`find_cam_layers` finds them by tracing one forward pass (any wrapper, such as
:class:`strattack.models.Normalized`, is traced through). Either way the GAP identity
``classifier(mean_{x,y} f) == classifier output`` is checked, and a model without a global
average pooling + linear head (e.g. :class:`strattack.models.MNISTNet`, which ends in
``Flatten`` + fully connected layers) raises ``ValueError``; :func:`~.class_maps.choose_class_maps`
then picks Grad-CAM.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["cam", "find_cam_layers", "class_indices", "finish_maps", "forward_hooks"]


@contextmanager
def forward_hooks(hooks: Iterable[tuple[nn.Module, Callable[..., None]]]) -> Iterator[None]:
    """Forward hooks ``(module, hook)`` registered for the block and removed after it, even when
    the forward pass fails (a model must not keep our hooks)."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _gap_matches(classifier: nn.Linear, pooled: Tensor, out: Tensor) -> bool:
    """Does ``classifier(pooled)`` reproduce the classifier's recorded output ``out``?"""
    if pooled.shape[-1] != classifier.in_features:
        return False
    with torch.no_grad():
        pred = classifier(pooled.to(classifier.weight.dtype))
    if pred.shape != out.shape:
        return False
    scale = float(out.abs().max().clamp(min=1.0))
    return bool(torch.allclose(pred, out.to(pred.dtype), rtol=1e-3, atol=1e-4 * scale))


def find_cam_layers(model: nn.Module, example: Tensor) -> tuple[nn.Module, nn.Linear]:
    """Find ``(features, classifier)`` of a global-average-pooling + linear head.

    Runs ``model`` once on ``example`` (a batch of inputs; one image is enough) with forward hooks
    on all its submodules, then takes as ``classifier`` the last ``nn.Linear`` to run whose output
    has the logits' shape, and as ``features`` the last module to finish before it whose output is
    a spatial map (N, K, h, w), ``h*w > 1``, with ``K = classifier.in_features`` and whose spatial
    mean, fed to ``classifier``, reproduces the classifier's output (so the pooling between them is
    exactly a global average; a container is preferred to its last child, so activations applied
    functionally inside a block are included).

    Raises:
        ValueError: no such pair (the model has no GAP + linear head), or the model is not an
            ``nn.Module`` returning (N, K) logits.
    """
    if not isinstance(model, nn.Module):
        raise ValueError("automatic CAM layer detection needs an nn.Module; pass features= and "
                         "classifier= explicitly")
    spatial: list[tuple[nn.Module, Tensor]] = []          # (module, spatial mean (N, K))
    linears: list[tuple[int, nn.Linear, Tensor]] = []     # (len(spatial) then, module, output)

    def hook(module: nn.Module, _inp: Any, out: Any) -> None:
        if not isinstance(out, Tensor):
            return
        if isinstance(module, nn.Linear):
            linears.append((len(spatial), module, out.detach().clone()))
        if out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
            spatial.append((module, out.detach().mean(dim=(2, 3))))

    with forward_hooks((m, hook) for m in model.modules()), torch.no_grad():
        logits = model(example)
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError("model must return logits (N, K) for CAM")
    heads = [entry for entry in linears if entry[2].shape == logits.shape]
    if not heads:
        raise ValueError("CAM needs a model ending in global average pooling + nn.Linear; no "
                         "nn.Linear produces the logits")
    before, classifier, out = heads[-1]
    for module, pooled in reversed(spatial[:before]):
        if pooled.shape[1] == classifier.in_features and _gap_matches(classifier, pooled, out):
            return module, classifier
    raise ValueError(
        "CAM needs a model ending in global average pooling + nn.Linear, but the final "
        f"nn.Linear (in_features={classifier.in_features}) is not fed by the spatial mean of a "
        "(N, K, h, w) feature map (e.g. a Flatten + fully connected head); if the model is in "
        "train mode (dropout), call .eval(); otherwise pass features= and classifier=")


def _normalize_minmax(maps: Tensor) -> Tensor:
    """Per-map ``(M - min M) / (max M - min M)``; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values
    span = flat.max(dim=1).values - lo
    shape = (-1,) + (1,) * (maps.dim() - 1)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    out = (maps - lo.reshape(shape)) / safe.reshape(shape)
    return torch.where((span > 0).reshape(shape), out, torch.zeros_like(out))


def cam(model: nn.Module, inputs: Tensor, classes: Tensor | int, *,
        features: nn.Module | None = None, classifier: nn.Linear | None = None,
        normalize: bool = True, check: bool = True, upsample: bool = True) -> Tensor:
    """Class activation maps ``C(x, c)`` (Zhou et al. 2016) of ``inputs`` for ``classes``.

    Args:
        model: classifier in eval mode, ``inputs`` (N, C, H, W) in [0, 1] -> logits (N, K), ending
            in global average pooling + ``nn.Linear`` (possibly inside a wrapper such as
            :class:`strattack.models.Normalized`).
        inputs: images (N, C, H, W); the maps live on their device.
        classes: class c of every image, an int or (N,) (e.g. true labels t0 or targets t).
        features: module whose output is the spatial feature map (N, K, h, w) that is globally
            average pooled; its last output before ``classifier`` runs is used.
        classifier: the final ``nn.Linear`` (K -> number of classes).
            Give both or neither; neither: :func:`find_cam_layers` (one extra forward pass of
            the first image).
        normalize: min-max normalise each map to [0, 1] after upsampling (a constant map becomes
            0); False returns the raw upsampled ``M_c`` (logit units before the 1/(h*w) mean).
        check: verify that ``classifier(mean_{x,y} f)`` reproduces the classifier's output on
            this batch (ValueError otherwise).
        upsample: False returns the (N, h, w) maps of the feature layer (e.g. to compare with
            another CAM implementation before any interpolation).

    Returns:
        (N, H, W) maps, bilinearly upsampled (``align_corners=False``) from (h, w) to the input's
        (H, W).
    """
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be (N, C, H, W), got {tuple(inputs.shape)}")
    if (features is None) != (classifier is None):
        raise ValueError("pass both features= and classifier=, or neither (auto-detect)")
    if features is None:
        features, classifier = find_cam_layers(model, inputs[:1])
    assert classifier is not None
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"classifier must be an nn.Linear, got {type(classifier).__name__}")

    state: dict[str, Any] = {}

    def feature_hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        if "head_out" not in state and isinstance(out, Tensor):
            state["maps"] = out.detach().clone()   # clone: later in-place ops must not alter it

    def head_hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        if "head_out" not in state:
            state["head_out"] = out.detach()

    with forward_hooks([(features, feature_hook), (classifier, head_hook)]), torch.no_grad():
        model(inputs)
    maps = state.get("maps")
    if maps is None or "head_out" not in state:
        raise ValueError("features did not run before classifier in the forward pass")
    k = classifier.in_features
    if maps.dim() != 4 or maps.shape[1] != k or maps.shape[0] != inputs.shape[0]:
        raise ValueError(f"features output {tuple(maps.shape)} is not a (N, {k}, h, w) map "
                         "matching the classifier's in_features")
    if check and not _gap_matches(classifier, maps.mean(dim=(2, 3)), state["head_out"]):
        raise ValueError("classifier(global average of features) does not reproduce the "
                         "classifier output: the model has no GAP + linear head on these layers "
                         "(or is in train mode)")

    c = class_indices(classes, inputs.shape[0], classifier.out_features, maps.device)
    weights = classifier.weight.detach()[c].to(maps.dtype)                   # (N, K)
    raw = torch.einsum("nk,nkhw->nhw", weights, maps)                        # M_c, Zhou eq. (2)
    return finish_maps(raw, tuple(inputs.shape[-2:]), normalize=normalize, upsample=upsample)


def class_indices(classes: Tensor | int, n: int, num_classes: int,
                  device: torch.device) -> Tensor:
    """``classes`` (an int or (N,)) as (N,) long indices on ``device``; ValueError out of range."""
    c = torch.as_tensor(classes, device=device).long().reshape(-1)
    if c.numel() == 1:
        c = c.expand(n)
    if c.shape != (n,) or bool(((c < 0) | (c >= num_classes)).any()):
        raise ValueError(f"classes must be an int or (N,) in [0, {num_classes})")
    return c


def finish_maps(raw: Tensor, size: tuple[int, ...], *, normalize: bool,
                upsample: bool) -> Tensor:
    """(N, h, w) maps bilinearly upsampled (``align_corners=False``) to ``size`` unless not
    ``upsample``, then min-max normalised per map if ``normalize``: the last steps shared by
    CAM and Grad-CAM, so that the two are drawn and thresholded alike."""
    if upsample:
        raw = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _normalize_minmax(raw) if normalize else raw
