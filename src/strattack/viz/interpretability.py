"""Interpretability figures of the StrAttack paper (matplotlib figures outside pyplot, so
importing this changes no global backend):

* :func:`plot_is_vs_percentile`: mean ASM-based interpretability score versus the threshold
  percentile nu, one line per attack (Fig. 3(a));
* :func:`plot_asm_panels`: original image, its ASM, and ``B_ASM o delta`` of every attack
  (Fig. 3(b), Fig. A2(a));
* :func:`plot_cam_panels`: CAMs (or Grad-CAMs, labelled as such) of the original and the
  adversarial images under the true and the target class (Fig. 4, Fig. 3(c), Fig. A2(b)).

Images are (C, H, W) (or (1, C, H, W)) tensors or arrays in [0, 1] with C = 1 or 3; per-channel
maps (ASM, perturbations) are shown per pixel, summed over channels. Exact zeros (no
perturbation, zero ASM score) are drawn apart from the colour scale (transparent over the faded
image, or grey), so "nothing" never looks like "a little".
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from ..interpretability.score import asm_mask, interpretability_score
from .figures import magnitude_cmap, mask_zeros, new_figure, save_figure

__all__ = ["plot_is_vs_percentile", "plot_asm_panels", "plot_cam_panels", "is_vs_percentile_figure",
           "asm_panels_figure", "cam_panels_figure", "zero_score_note"]

ArrayLike = Union[Tensor, np.ndarray]

#: Perturbation magnitudes over the faded image: salmon .. dark red, never white (the faded
#: image's strokes) or grey (its background); exact zeros are transparent.
PERTURBATION_CMAP = magnitude_cmap("Reds", 0.35, 1.0, zero=None)
#: ASM scores: light .. dark blue; exact zeros (most of an ASM) grey.
ASM_CMAP = magnitude_cmap("Blues", 0.4, 1.0)


def _tensor(x: ArrayLike) -> Tensor:
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.double()


def _chw(image: ArrayLike) -> Tensor:
    """(C, H, W) float64 from (C, H, W), (1, C, H, W) or (H, W)."""
    t = _tensor(image)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"expected an image (C, H, W), got shape {tuple(t.shape)}")
    return t


def _show_image(ax: Axes, image: Tensor, faded: bool = False) -> None:
    """Draw a (C, H, W) image in [0, 1]; ``faded`` draws it in light grey as a backdrop."""
    img = image.clamp(0, 1)
    if faded:
        gray = img.mean(dim=0).numpy()
        ax.imshow(0.55 + 0.45 * gray, cmap="gray", vmin=0, vmax=1)
    elif img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())


def _per_pixel(m: Tensor) -> Tensor:
    """(H, W) per-pixel map: channels summed; a (H, W) map is returned as is."""
    return m.sum(dim=0) if m.dim() == 3 else m


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def zero_score_note(zero_fraction: ArrayLike, score_name: str = "ASM") -> str:
    """Why IS curves are flat at low percentiles: the share of scores that are exactly 0
    (``zero_fraction``: one fraction per image). Below an image's share of zeros its percentile
    threshold is 0 for every nu, so its mask, and its IS, do not change with nu."""
    z = _tensor(zero_fraction).reshape(-1)
    if z.numel() == 0:
        return ""
    lo, hi, mean = float(z.min()), float(z.max()), float(z.mean())
    spread = ("" if z.numel() == 1 else " in every image" if hi - lo < 0.005
              else f" (per image {lo:.0%} to {hi:.0%})")
    return (f"{mean:.0%} of the {score_name} scores are exactly 0{spread}: for ν below an "
            f"image's share of zeros\nits threshold is 0, so its mask and IS do not change; "
            f"hence flat curves below ν ≈ {100 * lo:.0f}.")


def is_vs_percentile_figure(percentiles: Sequence[float], mean_is: Mapping[str, ArrayLike], *,
                            title: str = "",
                            ylabel: str = "mean interpretability score IS (eq. 23)",
                            xlabel: str = "threshold ν (percentile of ASM scores)",
                            zero_fraction: ArrayLike | None = None,
                            score_name: str = "ASM") -> Figure:
    """The figure of :func:`plot_is_vs_percentile`, not saved."""
    x = np.asarray(list(percentiles), dtype=float)
    fig = new_figure((4.6, 3.4))
    ax = fig.subplots()
    markers = "osD^vx*+"
    for i, (name, values) in enumerate(mean_is.items()):
        y = _tensor(values).reshape(-1).numpy()
        if y.shape != x.shape:
            raise ValueError(f"{name}: {y.size} IS values for {x.size} percentiles")
        ax.plot(x, y, marker=markers[i % len(markers)], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(title="attack", fontsize=8)
    ax.set_title(title or "Interpretability score vs ASM threshold", fontsize=10)
    note = zero_score_note(zero_fraction, score_name) if zero_fraction is not None else ""
    if note:
        ax.text(0.5, -0.2, note, transform=ax.transAxes, ha="center", va="top", fontsize=6.5)
    return fig


def plot_is_vs_percentile(percentiles: Sequence[float], mean_is: Mapping[str, ArrayLike],
                          path: str | Path, *, title: str = "",
                          ylabel: str = "mean interpretability score IS (eq. 23)",
                          xlabel: str = "threshold ν (percentile of ASM scores)",
                          zero_fraction: ArrayLike | None = None,
                          score_name: str = "ASM") -> Path:
    """Fig. 3(a): mean IS (ASM-based unless said otherwise) versus the percentile nu of the ASM
    scores used as the threshold of ``B_ASM``; one line per attack (``{name: (P,) means}``).

    ``zero_fraction``: per image, the share of its ``score_name`` scores that are exactly 0; when
    given, a note under the plot says how much of each curve is flat because of them."""
    fig = is_vs_percentile_figure(percentiles, mean_is, title=title, ylabel=ylabel,
                                  xlabel=xlabel, zero_fraction=zero_fraction,
                                  score_name=score_name)
    return save_figure(fig, path)


def plot_asm_panels(image: ArrayLike, asm: ArrayLike, deltas: Mapping[str, ArrayLike],
                    mask_percentile: float, path: str | Path, *,
                    class_names: tuple[str, str] | None = None, title: str = "") -> Path:
    """Fig. 3(b) / A2(a): original image, its ASM, then ``B_ASM o delta`` of every attack
    (:func:`asm_panels_figure`), written to ``path``."""
    fig = asm_panels_figure(image, asm, deltas, mask_percentile, class_names=class_names,
                            title=title)
    return save_figure(fig, path)


def asm_panels_figure(image: ArrayLike, asm: ArrayLike, deltas: Mapping[str, ArrayLike],
                      mask_percentile: float, *, class_names: tuple[str, str] | None = None,
                      title: str = "") -> Figure:
    """Fig. 3(b) / A2(a): original image, its ASM, then ``B_ASM o delta`` of every attack.

    Args:
        image: original image x0, (C, H, W) in [0, 1].
        asm: ``ASM(x0, t)`` of that image, (C, H, W) (or (H, W)); shown summed over channels.
        deltas: attack name -> perturbation delta (C, H, W).
        mask_percentile: nu, the percentile of ASM scores thresholding ``B_ASM`` (paper: 90).
        class_names: (true class, target class) names for the titles.

    Each attack panel draws ``|B_ASM o delta|`` (summed over channels) over a faded copy of the
    image (pixels with no masked perturbation left transparent) and reports the IS of eq. (23);
    the ASM panel draws pixels whose score is exactly 0 in grey.
    """
    x0 = _chw(image)
    scores = _tensor(asm)
    if scores.dim() == 2:
        scores = scores[None]
    mask = asm_mask(scores[None], mask_percentile)[0]                  # B_ASM, like scores
    true_name, target_name = class_names if class_names else ("", "")
    cols = 2 + len(deltas)
    fig = new_figure((2.8 * cols, 3.1), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)
    ax = axes[0, 0]
    _show_image(ax, x0)
    ax.set_title("original" + (f"\ntrue: {true_name}" if true_name else ""), fontsize=8)
    ax = axes[0, 1]
    pixel_scores = _per_pixel(scores)
    top = float(pixel_scores.max())
    im = ax.imshow(mask_zeros((pixel_scores / (top or 1.0)).numpy()), cmap=ASM_CMAP, vmin=0,
                   vmax=1)
    ax.set_title("ASM" + (f" (target: {target_name})" if target_name else "")
                 + f"\n> {mask_percentile:g}th pct: {mask.double().mean():.0%} kept", fontsize=8)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(f"ASM score / max (max = {top:.2g})\ngrey: exactly 0", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    masked = {}
    for name, delta in deltas.items():
        d = _chw(delta)
        if mask.shape[0] != d.shape[0] and mask.shape[0] != 1:
            raise ValueError(f"{name}: delta {tuple(d.shape)} does not match ASM "
                             f"{tuple(mask.shape)}")
        masked[name] = (d, _per_pixel((d * mask).abs()))
    vmax = max((float(m.max()) for _, m in masked.values()), default=0.0) or 1.0
    for j, (name, (d, mag)) in enumerate(masked.items()):
        ax = axes[0, 2 + j]
        _show_image(ax, x0, faded=True)
        im = ax.imshow(mask_zeros(mag.numpy()), cmap=PERTURBATION_CMAP, vmin=0, vmax=vmax)
        score = float(interpretability_score(d[None], mask[None])[0])
        ax.set_title(f"{name}: " + r"$B_{ASM}\circ\delta$" + f"\nIS = {score:.2f}", fontsize=8)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label("|masked perturbation|\nnone: image shows through", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    for ax in axes.flat:
        _bare(ax)
    fig.suptitle(title or f"ASM and masked perturbations (ν = {mask_percentile:g}th percentile)",
                 fontsize=10)
    return fig


def plot_cam_panels(image: ArrayLike, adv_by_attack: Mapping[str, ArrayLike],
                    cams: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | Path, *,
                    class_names: tuple[str, str] | None = None, title: str = "",
                    method: str = "CAM") -> Path:
    """Fig. 4: CAMs (or Grad-CAMs) of the original and of each attack's adversarial example,
    under the true class t0 and the target class t (:func:`cam_panels_figure`), written to
    ``path``."""
    fig = cam_panels_figure(image, adv_by_attack, cams, class_names=class_names, title=title,
                            method=method)
    return save_figure(fig, path)


def cam_panels_figure(image: ArrayLike, adv_by_attack: Mapping[str, ArrayLike],
                      cams: Mapping[str, tuple[ArrayLike, ArrayLike]], *,
                      class_names: tuple[str, str] | None = None, title: str = "",
                      method: str = "CAM") -> Figure:
    """Fig. 4: class activation maps of the original and of each attack's adversarial example,
    under the true class t0 and the target class t.

    Args:
        image: original image x0, (C, H, W) in [0, 1].
        adv_by_attack: attack name -> adversarial example x_adv (C, H, W).
        cams: ``"original"`` and every attack name -> ``(C(x, t0), C(x, t))``, maps (H, W) of
            that image (as from :func:`strattack.interpretability.cam`, normalised to [0, 1]).
        class_names: (true class t0, target class t) names for the row labels.
        method: the maps' name in the labels, colour bar and title: "CAM" (exact, Zhou et al.)
            or "Grad-CAM" (``ClassMaps.method``).

    Layout: one column per image (original, then attacks); row 1 the image (for an attack: its
    perturbation |x_adv - x0|, summed over channels, over the faded original), rows 2 and 3 the
    map under t0 and under t overlaid on that image.
    """
    if method not in ("CAM", "Grad-CAM"):
        raise ValueError(f"method must be 'CAM' or 'Grad-CAM', got {method!r}")
    x0 = _chw(image)
    names = ["original", *adv_by_attack]
    missing = [n for n in names if n not in cams]
    if missing:
        raise ValueError(f"cams lacks maps for {missing} (keys: 'original' and the attack names)")
    images = {"original": x0, **{n: _chw(a) for n, a in adv_by_attack.items()}}
    t0_name, t_name = class_names if class_names else ("t0", "t")
    pert = {n: (images[n] - x0).abs().sum(dim=0) for n in adv_by_attack}
    pmax = max((float(p.max()) for p in pert.values()), default=0.0) or 1.0
    fig = new_figure((2.5 * len(names) + 1.0, 7.6), layout="constrained")
    axes = fig.subplots(3, len(names), squeeze=False)
    pert_im = None
    for j, name in enumerate(names):
        ax = axes[0, j]
        if name == "original":
            _show_image(ax, x0)
            ax.set_title("original x0", fontsize=8)
        else:
            _show_image(ax, x0, faded=True)
            pert_im = ax.imshow(mask_zeros(pert[name].numpy()), cmap=PERTURBATION_CMAP,
                                vmin=0, vmax=pmax)
            ax.set_title(f"{name}: perturbation", fontsize=8)
        for row, cls in ((1, t0_name), (2, t_name)):
            ax = axes[row, j]
            m = _tensor(cams[name][row - 1])
            m = m[0] if m.dim() == 3 else m
            _show_image(ax, images[name], faded=False)
            ax.imshow(m.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            label = "x0" if name == "original" else f"x_{name}"
            ax.set_title(f"C({label}, {cls})", fontsize=8)
    axes[0, 0].set_ylabel("image / perturbation", fontsize=8)
    axes[1, 0].set_ylabel(f"{method}, true class: {t0_name}", fontsize=8)
    axes[2, 0].set_ylabel(f"{method}, target class: {t_name}", fontsize=8)
    for ax in axes.flat:
        _bare(ax)
    cam_scale = ScalarMappable(Normalize(0, 1), cmap="jet")
    bar = fig.colorbar(cam_scale, ax=axes[1:, :].ravel().tolist(), fraction=0.03, pad=0.03)
    bar.set_label(f"{method} (normalised to [0, 1], drawn at 50% opacity)", fontsize=8)
    if pert_im is not None:
        bar = fig.colorbar(pert_im, ax=axes[0, :].ravel().tolist(), fraction=0.03, pad=0.03)
        bar.set_label("|perturbation| (sum over channels)\nnone: image shows through",
                      fontsize=8)
    maps = "Class activation maps" if method == "CAM" else "Grad-CAM class activation maps"
    fig.suptitle(title or f"{maps} of original and adversarial images", fontsize=10)
    return fig
