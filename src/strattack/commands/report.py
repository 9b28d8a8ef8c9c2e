"""Best / average / worst-case tables of a `strattack eval` store, written as files: the library
function behind ``strattack report``."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..evaluation.report import (COST_COLUMNS, REPORT_COLUMNS, cost_rows, ratio_rows,
                                 report_rows, write_report)
from ..evaluation.store import STORE_NAME, ResultStore
from ..evaluation.stored import load_store_context
from ..evaluation.summary import markdown_table
from ..viz.report_figures import plot_group_heatmaps, plot_l0_histogram
from .common import read_store, writable_folder

__all__ = ["ReportResult", "report"]

LEGEND = ("best/worst: easiest/hardest target by {rank_by}; norms are means over successful "
          "examples; passes/ex and s/ex over all examples")
PAPER_LEGEND = ("convention paper (the authors' code): best/worst chosen per norm, average over "
                "one random target per image, l0 counts |delta| >= 1e-7; passes/ex and s/ex "
                "over all examples")


@dataclass
class ReportResult:
    """``lines``: the Markdown tables and notes to print, in order; ``rows``: the report's rows;
    ``written``: the files written."""

    lines: list[str]
    rows: list[dict[str, object]]
    written: list[Path]


def report(run_dir: Path, rank_by: str = "l2", figures: bool = True, examples: int = 4,
           data_root: Path | None = None, ratios: Sequence[tuple[str, str]] = (),
           out: Path | None = None, convention: str = "ours") -> ReportResult:
    """Report of ``run_dir``'s store into ``out`` (default: ``run_dir``): report.csv and
    report.json, ratios.json for ``ratios`` (numerator, denominator labels), and with
    ``figures`` l0 histograms and group heatmaps (``examples`` per attack). The store is only
    read. ``convention="paper"``: the authors' case definitions
    (:func:`~strattack.evaluation.report.paper_case_rows`), written as report-paper.csv/json."""
    path = store_path(run_dir)
    out = writable_folder(out or run_dir, "report")
    with read_store(path) as store:
        rows = report_rows(store, rank_by=rank_by, convention=convention)
        if not rows:
            raise DataError(f"{path} has no finished examples yet")
        lines = [markdown_table(rows, REPORT_COLUMNS), *_cost_per_device(store, rows)]
        written = write_report(rows, out, "report" if convention == "ours" else "report-paper")
        if ratios:
            table, path = _write_ratios(rows, ratios, out)
            lines.append(table)
            written.append(path)
        if figures:
            paths, notes = _figures(store, out, examples, data_root)
            lines += notes
            written += paths
    legend = LEGEND.format(rank_by=rank_by) if convention == "ours" else PAPER_LEGEND
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
    return "\n" + markdown_table(table, ("ratio", "case", "l0", "l2")), path


def _figures(store: ResultStore, out: Path, examples: int,
             data_root: Path | None) -> tuple[list[Path], list[str]]:
    """The l0 histogram and the group heatmaps written, and a note if the heatmaps have to do
    without the images (data moved or missing: the figure is still useful)."""
    histogram = plot_l0_histogram(store, out / "l0_histogram.png")
    try:
        context = load_store_context(store, data_root)
    except (FileNotFoundError, ValueError, ImportError) as err:
        context, notes = None, [f"note: heatmaps without the images ({err})"]
    else:
        notes = []
    heatmaps = plot_group_heatmaps(store, out / "group_heatmaps.png", examples, context)
    return [histogram, heatmaps], notes
