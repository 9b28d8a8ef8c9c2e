"""`strattack report --html`: one self-contained HTML page of a store (works offline, e.g. as an
e-mail attachment): the best / average / worst tables, the cost per attack and device, the
report figures, and a gallery (Fig. 2 style across attacks) of the first examples adversarial
under every attack: the original, then per attack its adversarial example and group heatmap
(when no example is, e.g. one attack fooled nothing, each attack's own examples instead).

Every image is a base64 PNG data URI and the page has no script and no external reference.
Every text that comes from the store (attack labels, devices, class names, meta values) is
escaped, since a label is whatever the user typed. Gallery images are written at their pixel
size and enlarged by the browser (``image-rendering: pixelated``), which keeps the file small.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import Normalize
from torch import Tensor, nn

from ..data.evaluation_data import EvaluationData
from ..evaluation.store import ResultStore
from ..evaluation.finished_run import CommonExamples, shown_successes
from ..evaluation.summary import format_cell
from ..solver.groups import GroupSpec
from .figures import group_heatmap, magnitude_cmap

__all__ = ["Gallery", "HtmlTable", "build_galleries", "report_html", "write_report_html"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The gallery's heatmap colours, as in the report's group heatmap figure (grey: exactly 0).
HEAT_CMAP = magnitude_cmap("hot", 0.2, 0.85)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
p.note { color: #555; font-size: 0.85em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; }
table.gallery td { text-align: center; vertical-align: top; font-size: 0.8em; }
table.gallery img { width: 112px; image-rendering: pixelated; display: block; margin: auto; }
span.scale { display: inline-block; width: 12em; height: 0.9em; vertical-align: middle; }
"""


@dataclass(frozen=True)
class HtmlTable:
    """A table of the page: ``rows`` shown in ``columns`` (cells formatted as the printed
    tables), under ``title``, with ``notes`` below it."""

    title: str
    columns: tuple[str, ...]
    rows: list[dict[str, object]]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gallery:
    """The gallery's examples: per (image, target) pair a caption, the original (C, H, W) and
    per attack label the adversarial example and predicted class name (None without the
    images), and per attack the group heatmaps (N, P, Q) in 0-255 units."""

    labels: list[str]
    captions: list[str]
    heatmaps: dict[str, np.ndarray]
    group_size: int
    originals: Tensor | None = None
    adversarial: dict[str, Tensor] | None = None
    predictions: dict[str, list[str]] | None = None

    @property
    def image_count(self) -> int:
        """PNGs the gallery embeds: per example the original and one adversarial image per
        attack when the images are there, and one heatmap per attack always."""
        attacks = len(self.labels)
        per_example = 1 + 2 * attacks if self.originals is not None else attacks
        return len(self.captions) * per_example


def build_galleries(store: ResultStore, examples: int,
                    context: tuple[nn.Module, EvaluationData] | None) -> list[Gallery]:
    """The first ``examples`` (image, target) pairs adversarial under every attack of ``store``,
    as one gallery; when no example is, one gallery per attack of its own first ``examples``
    (:func:`~strattack.evaluation.finished_run.shown_successes`)."""
    size = int(store.meta().get("group_size", 2))
    return [_gallery(found, size, context) for found in shown_successes(store, examples)]


def _gallery(found: CommonExamples, size: int,
             context: tuple[nn.Module, EvaluationData] | None) -> Gallery:
    """The gallery of ``found``; with ``context`` (the store's model and images) also the
    originals, the adversarial examples ``clamp(x0 + delta, 0, 1)`` and the model's predictions
    on them, and heatmaps of the effective perturbation (adversarial - original); without it
    heatmaps of the stored delta."""
    if context is None or not found.pairs:
        heat = {a: _heatmaps(d, size) for a, d in found.deltas.items() if found.pairs}
        captions = [f"image {i}, {_goal(t)}" for i, t in found.pairs]
        return Gallery(found.labels, captions, heat, size)
    model, data = context
    rows = found.rows(data)
    x = data.images[rows]
    names = data.class_names
    adversarial = {a: (x + d.to(x)).clamp(0, 1) for a, d in found.deltas.items()}
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        predictions = {a: [names[p] for p in model(adv.to(device)).argmax(1).tolist()]
                       for a, adv in adversarial.items()}
    captions = [f"image {i}: {names[int(data.labels[r])]} \u2192 {_goal(t, names)}"
                for r, (i, t) in zip(rows.tolist(), found.pairs)]
    heat = {a: _heatmaps(adv - x, size) for a, adv in adversarial.items()}
    return Gallery(found.labels, captions, heat, size, x, adversarial, predictions)


def _goal(target: int, names: Sequence[str] | None = None) -> str:
    """``target NAME``, or ``untargeted`` for the store's target -1 (which must not index the
    class names: -1 would name the last class)."""
    if target < 0:
        return "untargeted"
    return f"target {names[target] if names is not None else target}"


def _heatmaps(delta: Tensor, size: int) -> np.ndarray:
    return group_heatmap(delta, GroupSpec.for_inputs(delta, size, size)).cpu().numpy()


def write_report_html(path: str | Path, title: str, meta: Mapping[str, object],
                      tables: Sequence[HtmlTable], figures: Sequence[Path],
                      galleries: Sequence[Gallery]) -> Path:
    """Write :func:`report_html` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(report_html(title, meta, tables, figures, galleries), encoding="utf-8")
    return path


def report_html(title: str, meta: Mapping[str, object], tables: Sequence[HtmlTable],
                figures: Sequence[Path], galleries: Sequence[Gallery]) -> str:
    """The page: ``title``, the store's ``meta`` (what was attacked, on which model), the
    ``tables``, the PNG ``figures`` (files; ValueError for one that is not a PNG) and the
    ``galleries`` (:func:`build_galleries`; none: left out)."""
    parts = [f"<h1>{_e(title)}</h1>", _meta_list(meta)]
    parts += [_table_section(t) for t in tables]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(p) for p in figures]
    if galleries:
        parts.append(_galleries_section(galleries))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _meta_list(meta: Mapping[str, object]) -> str:
    items = "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in sorted(meta.items()))
    return f"<h2>Run</h2>\n<ul>{items}</ul>"


def _table_section(table: HtmlTable) -> str:
    """The table; each numeric cell carries its exact value in ``data-value`` (what the tests
    and a scraper read), and shows it as the printed tables do."""
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in table.columns) + "</tr>\n"
                   for row in table.rows)
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in table.notes)
    return (f"<h2>{_e(table.title)}</h2>\n<table>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}</tbody>\n</table>\n{notes}")


def _cell(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num" data-value="{value!r}">{_e(format_cell(value))}</td>'
    return f"<td>{_e(format_cell(value))}</td>"


def _figure(path: Path) -> str:
    png = Path(path).read_bytes()
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    return (f'<figure><img src="{_data_uri(png)}" alt="{_e(path.name)}">'
            f"<figcaption>{_e(path.name)}</figcaption></figure>")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3 or 4) array in [0, 1], at its pixel size."""
    from matplotlib.image import imsave   # not pyplot: no global backend change

    buffer = io.BytesIO()
    imsave(buffer, np.clip(rgba, 0.0, 1.0), format="png")
    return buffer.getvalue()


def _image_png(image: Tensor) -> bytes:
    """PNG of a (C, H, W) image in [0, 1], C = 1 (grey) or 3."""
    array = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return _png(np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array)


def _heatmap_png(heat: np.ndarray, vmax: float) -> bytes:
    """PNG of a (P, Q) heatmap on the gallery's shared scale [0, vmax]; exact zeros grey."""
    masked = np.ma.masked_equal(np.asarray(heat, dtype=float), 0.0)
    return _png(HEAT_CMAP(Normalize(0.0, vmax)(masked)))


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{_data_uri(png)}" alt="{_e(alt)}">'


def _galleries_section(galleries: Sequence[Gallery]) -> str:
    """The gallery of the examples adversarial under every attack or, when there are none, one
    per attack of its own examples, under a note that says so."""
    if len(galleries) == 1:
        return ("<h2>Gallery: examples adversarial under every attack</h2>\n"
                + _gallery_table(galleries[0], "no example is adversarial under every attack"))
    fooled_none = [g.labels[0] for g in galleries if not g.captions]
    why = f" ({', '.join(fooled_none)}: none adversarial)" if fooled_none else ""
    parts = ["<h2>Gallery: each attack's own adversarial examples</h2>",
             f'<p class="note">no example is adversarial under every attack{_e(why)}: each '
             "attack's first adversarial examples instead</p>"]
    for gallery in galleries:
        label = gallery.labels[0]
        parts += [f"<h3>{_e(label)}</h3>",
                  _gallery_table(gallery, f"{label}: no adversarial example")]
    return "\n".join(parts)


def _gallery_table(gallery: Gallery, empty: str) -> str:
    """One row per example: the original, then per attack its adversarial example (with the
    model's prediction) and its group heatmap, on one colour scale for the whole table;
    the note ``empty`` without examples."""
    if not gallery.captions:
        return f'<p class="note">{_e(empty)}</p>'
    vmax = max((float(h.max()) for h in gallery.heatmaps.values()), default=0.0) or 1.0
    with_images = gallery.originals is not None
    head = "<th>example</th>" + ("<th>original</th>" if with_images else "")
    for label in gallery.labels:
        head += (f"<th>{_e(label)}</th>" if with_images else "") + f"<th>{_e(label)} groups</th>"
    rows = [_gallery_row(gallery, i, vmax) for i in range(len(gallery.captions))]
    scale = _colour_scale()
    note = (f"heatmaps: mean |perturbation| per {gallery.group_size}x{gallery.group_size} group "
            f"(0-255 units), 0 {scale} {vmax:.3g}; grey: exactly 0 (group untouched)")
    if not with_images:
        note += "; the originals and adversarial images need the store's data (--data-root)"
    return (f"<p class=\"note\">{note}</p>\n<table class=\"gallery\">\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{''.join(rows)}</tbody>\n</table>")


def _gallery_row(gallery: Gallery, i: int, vmax: float) -> str:
    cells = [f"<td>{_e(gallery.captions[i])}</td>"]
    if gallery.originals is not None:
        cells.append(f"<td>{_img(_image_png(gallery.originals[i]), 'original')}original</td>")
    for label in gallery.labels:
        if gallery.adversarial is not None and gallery.predictions is not None:
            predicted = gallery.predictions[label][i]
            cells.append(f"<td>{_img(_image_png(gallery.adversarial[label][i]), label)}"
                         f"predicted: {_e(predicted)}</td>")
        heat = gallery.heatmaps[label][i]
        cells.append(f"<td>{_img(_heatmap_png(heat, vmax), label + ' groups')}"
                     f"{int((heat > 0).sum())} of {heat.size} groups</td>")
    return "<tr>" + "".join(cells) + "</tr>\n"


def _colour_scale() -> str:
    """The heatmap colours as a CSS gradient (no image: the page's image count stays the
    figures and the gallery)."""
    stops = ", ".join("#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in HEAT_CMAP(v)[:3]))
                      for v in np.linspace(0, 1, 6))
    return f'<span class="scale" style="background: linear-gradient(to right, {stops})"></span>'
