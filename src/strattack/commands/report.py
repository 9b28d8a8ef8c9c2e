"""Best / average / worst-case tables of a `strattack eval` store, written as files: the library
function behind ``strattack report``."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.evaluation_data import EvaluationData
from ..errors import ConfigError, DataError
from ..evaluation.report import (COST_COLUMNS, RATIO_COLUMNS, Measure, cost_rows, ratio_notes,
                                 ratio_rows, report_columns, report_rows, write_report)
from ..evaluation.evaluate import weights_used
from ..evaluation.store import STORE_NAME, ExampleRecord, ResultStore
from ..evaluation.finished_run import load_store_context
from ..evaluation.summary import markdown_table
from ..interpretability.analysis import asm_interpretability_scores
from ..viz.report_figures import plot_group_heatmaps, plot_l0_histogram
from ..viz.report_html import Gallery, HtmlTable, build_galleries, write_report_html
from .common import TableResult, read_store, writable_folder

__all__ = ["ReportResult", "report"]

LEGEND = ("best/worst: easiest/hardest target by {rank_by}; norms are means over successful "
          "examples; passes/ex and s/ex over all examples")
PAPER_LEGEND = ("convention paper (the authors' code): best/worst chosen per norm, average over "
                "one random target per image, l0 counts |delta| >= 1e-7; passes/ex and s/ex "
                "over all examples")
GROUP_LEGEND = ("; pixel l0: pixels with any channel changed, clusters: 4-connected groups of "
                "them, d20: {patch}x{patch} windows holding one")
IS_LEGEND = ("; IS at the {p:g}th percentile of the ASM at the clean image: ours (eq. 23, ASM "
             "eq. 61, percentile of all scores) and GSE's (ASM dZ_t/dx * |dZ_t0/dx| without "
             "sign conditions, percentile of the non-zero scores)")
IS_COLUMNS = ("IS", "IS (GSE)")


#: Kept as a name of its own for callers; the same result as every table command's.
ReportResult = TableResult


def report(run_dir: Path, rank_by: str = "l2", figures: bool = True, examples: int = 4,
           data_root: Path | None = None, ratios: Sequence[tuple[str, str]] = (),
           out: Path | None = None, convention: str = "ours", *, html: bool = False,
           gallery: int = 4, common: bool = False, patch: int = 8,
           is_percentile: float | None = None) -> ReportResult:
    """Report of ``run_dir``'s store into ``out`` (default: ``run_dir``): report.csv and
    report.json, ratios.json for ``ratios`` (numerator, denominator labels), and with
    ``figures`` l0 histograms and group heatmaps (``examples`` per attack). The store is only
    read. ``convention="paper"``: the authors' case definitions
    (:func:`~strattack.evaluation.report.paper_case_rows`), written as report-paper.csv/json.
    ``html``: also report.html, one self-contained page of the tables, the figures and a
    gallery of the first ``gallery`` examples adversarial under every attack (or of each
    attack's own, when no example is). ``common``: every attack restricted to the examples all
    of them finished (else ratios between attacks with different examples get a note).
    ``patch``: the window side of the d20 column. ``is_percentile``: also the IS columns, ours
    and GSE's, at that percentile (needs the store's model and images)."""
    if gallery < 0:
        raise ConfigError(f"--gallery must be 0 or more examples, got {gallery}")
    if patch < 1:
        raise ConfigError(f"--patch must be 1 or more pixels, got {patch}")
    if is_percentile is not None and not 0 <= is_percentile < 100:
        raise ConfigError(f"--is must be a percentile in [0, 100), got {is_percentile}")
    path = store_path(run_dir)
    out = writable_folder(out or run_dir, "report")
    with read_store(path) as store:
        wants_context = figures or html or is_percentile is not None
        context, notes = _context(store, data_root) if wants_context else (None, [])
        measures = [] if is_percentile is None else [
            _interpretability_measure(context, is_percentile, notes)]
        rows = report_rows(store, rank_by=rank_by, convention=convention, common=common,
                           patch=patch, measures=measures)
        if not rows:
            raise DataError(f"{path} has no finished examples yet"
                            + (" that every attack finished (--common)" if common else ""))
        lines = [_header(store), markdown_table(rows, report_columns(rows)),
                 *_cost_per_device(store, rows)]
        written = write_report(rows, out, "report" if convention == "ours" else "report-paper")
        if ratios:
            table, path = _write_ratios(rows, ratios, out)
            lines.append(table)
            lines += [] if common else ratio_notes(store, ratios)
            written.append(path)
        legend = LEGEND.format(rank_by=rank_by) if convention == "ours" else PAPER_LEGEND
        legend += GROUP_LEGEND.format(patch=patch)
        legend += "" if is_percentile is None else IS_LEGEND.format(p=is_percentile)
        legend += "; only the examples every attack finished (--common)" if common else ""
        lines += notes
        figure_paths = _figures(store, out, examples, context) if figures else []
        written += figure_paths
        if html:
            written.append(_write_html(store, run_dir, out, rows, (legend, *notes),
                                       figure_paths, build_galleries(store, gallery, context)))
    return ReportResult([*lines, legend], rows, written)


def store_path(run_dir: Path) -> Path:
    """``run_dir``'s merged store; DataError if there is none (with the merge command when
    shards are there: `eval --shard` leaves only those)."""
    path = run_dir / STORE_NAME
    if not path.is_file():
        shards = sorted(run_dir.glob("results-shard-*.sqlite"))
        hint = (f"; merge the shards first: strattack merge {run_dir} "
                + " ".join(str(s) for s in shards)) if shards else ""
        raise DataError(f"no store {path}{hint}")
    return path


def _header(store: ResultStore) -> str:
    """What was attacked: the dataset, the model and the weights it ran with (an untrained
    network makes every attack look easy)."""
    meta = store.meta()
    images = " (bundled images)" if meta.get("bundled") is True else ""
    return (f"{meta.get('dataset')}{images}: model {meta.get('model')}, weights "
            f"{weights_used(meta)}\n")


def _cost_per_device(store: ResultStore, rows: list[dict[str, object]]) -> list[str]:
    # s/ex is left out of the main table where devices mix; give it per device instead.
    if not any(str(r["device"]).startswith("mixed") for r in rows):
        return []
    return ["\ncost per device (the attacks' examples ran on more than one):\n"
            + markdown_table(cost_rows(store), COST_COLUMNS)]


def _write_ratios(rows: list[dict[str, object]], ratios: Sequence[tuple[str, str]],
                  out: Path) -> tuple[str, Path]:
    """The ratio table as Markdown, and ratios.json written with it."""
    table = [r for num, den in ratios for r in ratio_rows(rows, num, den)]
    path = out / "ratios.json"
    # NaN (no successful example) is not valid JSON: null
    path.write_text(json.dumps([{k: (None if isinstance(v, float) and v != v else v)
                                 for k, v in r.items()} for r in table], indent=1) + "\n")
    columns = [c for c in RATIO_COLUMNS if all(c in r for r in table)]
    return "\n" + markdown_table(table, ("ratio", "case", *columns)), path


def _context(store: ResultStore, data_root: Path | None
             ) -> tuple[tuple[nn.Module, EvaluationData] | None, list[str]]:
    """The store's model and images, or None and a note if the heatmaps have to do without
    the images (data moved or missing: the figures are still useful)."""
    try:
        return load_store_context(store, data_root), []
    except (FileNotFoundError, ValueError, ImportError) as err:
        return None, [f"note: heatmaps without the images ({err})"]


def _interpretability_measure(context: tuple[nn.Module, EvaluationData] | None,
                              percentile: float, notes: list[str]) -> Measure:
    """The IS columns (ours and GSE's) of targeted examples, on the store's model and clean
    images; DataError without them (the note says why)."""
    if context is None:
        raise DataError("--is needs the model and the images the store was made with: "
                        + "; ".join(notes))
    model, data = context

    def compute(records: Sequence[ExampleRecord], deltas: Tensor) -> dict[str, Tensor]:
        out = {c: torch.full((len(records),), math.nan) for c in IS_COLUMNS}
        # IS is defined for a target class: untargeted examples stay NaN
        targeted = torch.tensor([r.target >= 0 for r in records])
        chosen = [r for r in records if r.target >= 0]
        if chosen:
            images = data.images[data.rows([r.image for r in chosen])]
            scores = asm_interpretability_scores(
                model, images, torch.tensor([r.true_label for r in chosen]),
                torch.tensor([r.target for r in chosen]), deltas[targeted], percentile)
            out["IS"][targeted], out["IS (GSE)"][targeted] = scores["ours"], scores["gse"]
        return out

    return Measure(IS_COLUMNS, compute)


def _figures(store: ResultStore, out: Path, examples: int,
             context: tuple[nn.Module, EvaluationData] | None) -> list[Path]:
    """The l0 histogram and the group heatmaps, written."""
    histogram = plot_l0_histogram(store, out / "l0_histogram.png")
    heatmaps = plot_group_heatmaps(store, out / "group_heatmaps.png", examples, context)
    return [histogram, heatmaps]


def _write_html(store: ResultStore, run_dir: Path, out: Path, rows: list[dict[str, object]],
                notes: tuple[str, ...], figures: list[Path], galleries: list[Gallery]) -> Path:
    """report.html: the case table (with the legend and notes), the cost per attack and
    device, the figures and the gallery."""
    tables = [HtmlTable("Best / average / worst case", report_columns(rows), rows, notes),
              HtmlTable("Cost per attack and device", COST_COLUMNS, cost_rows(store))]
    return write_report_html(out / "report.html", f"strattack report: {run_dir.resolve().name}",
                             store.meta(), tables, figures, galleries)
