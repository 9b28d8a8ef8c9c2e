"""`strattack report RUN --html`: the page parsed back with the standard library's html.parser,
against the store it was made from: the tables hold the report rows' values, the page embeds
exactly the report figures and the gallery (original + per attack adversarial image and
heatmap per example) as data URIs that decode to PNGs, and it references nothing outside."""
from __future__ import annotations

import base64
import math
from html.parser import HTMLParser

import pytest
import torch

from helpers import bundled_run
from strattack.commands.report import report
from strattack.errors import ConfigError
from strattack.evaluation.report import COST_COLUMNS, REPORT_COLUMNS, cost_rows
from strattack.evaluation.store import ResultStore
from strattack.evaluation.finished_run import common_successes
from strattack.evaluation.summary import format_cell
from strattack.viz.report_html import HtmlTable, report_html

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What the tests read from a page: its tables (rows of (text, data-value) cells, header
    rows apart), the src of every img, and every src/href attribute anywhere."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[dict[str, list]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self._cell: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = ["", attrs.get("data-value"), tag]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text, value, kind = self._cell
            self.tables[-1]["rows"][-1].append((text.strip(), value, kind))
            self._cell = None

    def body_rows(self, index: int) -> list[list[tuple[str, str | None, str]]]:
        return [r for r in self.tables[index]["rows"] if r and r[0][2] == "td"]

    def header(self, index: int) -> list[str]:
        return [c[0] for r in self.tables[index]["rows"] if r and r[0][2] == "th" for c in r]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """3 bundled MNIST images x next target, FGM and 3-step I-FGSM (under a second)."""
    torch.set_num_threads(1)
    return bundled_run(tmp_path_factory.mktemp("run"))


def _png_bytes(src: str) -> bytes:
    head, _, data = src.partition(",")
    assert head == "data:image/png;base64"
    return base64.b64decode(data, validate=True)


def _is_valid_png(data: bytes) -> bool:
    """Signature, IHDR first, IEND last (what a browser needs to start and finish decoding)."""
    return data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"


def _gallery_examples(run, limit: int) -> int:
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        return len(common_successes(store, limit=limit).pairs)


def test_report_html_tables_figures_and_gallery_match_the_store(run, tmp_path):
    result = report(run, out=tmp_path, html=True, gallery=3)
    path = tmp_path / "report.html"
    assert path in result.written
    page = Page(path.read_text(encoding="utf-8"))
    # the case table: every report row, every column, exact values and the printed format
    assert page.header(0) == list(REPORT_COLUMNS)
    cells = page.body_rows(0)
    assert len(cells) == len(result.rows) == 6
    for row, shown in zip(result.rows, cells):
        for column, (text, value, _) in zip(REPORT_COLUMNS, shown):
            assert text == format_cell(row[column])
            if isinstance(row[column], (int, float)):
                want = float(row[column])
                assert (math.isnan(want) and value == "nan") or float(value) == want
    # the cost table: per attack and device
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        costs = cost_rows(store)
    assert page.header(1) == list(COST_COLUMNS)
    assert [[c[0] for c in r] for r in page.body_rows(1)] == [
        [format_cell(r[c]) for c in COST_COLUMNS] for r in costs]
    # images: the 2 report figures + per gallery example the original and 2 per attack
    examples = _gallery_examples(run, 3)
    assert examples >= 1
    assert len(page.images) == 2 + examples * (1 + 2 * 2)
    assert all(_is_valid_png(_png_bytes(src)) for src in page.images)
    assert _png_bytes(page.images[0]) == (tmp_path / "l0_histogram.png").read_bytes()
    assert _png_bytes(page.images[1]) == (tmp_path / "group_heatmaps.png").read_bytes()
    gallery = page.body_rows(2)
    assert len(gallery) == examples
    assert gallery[0][0][0].startswith("image ") and "predicted: " in gallery[0][2][0]
    # offline: nothing outside the page, no script
    assert all(link.startswith("data:") for link in page.links)
    assert "script" not in page.tags and "link" not in page.tags


def test_report_html_without_figures_or_gallery_embeds_nothing(run, tmp_path):
    report(run, out=tmp_path, figures=False, html=True, gallery=0)
    page = Page((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert page.images == [] and len(page.body_rows(0)) == 6
    assert not (tmp_path / "l0_histogram.png").exists()


def test_report_html_without_the_images_shows_the_heatmaps(run, tmp_path, monkeypatch):
    import strattack.commands.report as command

    def missing(*_args, **_kwargs):
        raise FileNotFoundError("no data here")

    monkeypatch.setattr(command, "load_store_context", missing)
    result = report(run, out=tmp_path, html=True, gallery=1)
    assert "note: heatmaps without the images (no data here)" in result.lines
    page = Page((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert len(page.images) == 2 + _gallery_examples(run, 1) * 2      # a heatmap per attack
    assert all(_is_valid_png(_png_bytes(src)) for src in page.images)


def test_report_html_rejects_a_negative_gallery_before_any_work(run, tmp_path):
    with pytest.raises(ConfigError, match="--gallery must be 0 or more"):
        report(run, out=tmp_path / "new", html=True, gallery=-1)
    assert not (tmp_path / "new").exists()


def test_report_html_escapes_text_from_the_store():
    label = '<script>alert("x")</script> & C&W'
    page_text = report_html(f"run {label}", {"model": label},
                            [HtmlTable("cases", ("attack", "l2"), [{"attack": label, "l2": 1.5}],
                                       (label,))], [], [])
    assert "<script>" not in page_text
    page = Page(page_text)
    assert "script" not in page.tags
    assert page.body_rows(0)[0][0][0] == label and page.body_rows(0)[0][1][1] == "1.5"


def test_cli_report_html_writes_the_page(run, tmp_path):
    from click.testing import CliRunner

    from strattack.cli import main

    res = CliRunner().invoke(main, ["report", str(run), "--html", "--gallery", "1",
                                    "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / "report.html") in res.output.splitlines()[-1]
    assert len(Page((tmp_path / "report.html").read_text()).images) == 2 + 5 * _gallery_examples(
        run, 1)
    bad = CliRunner().invoke(main, ["report", str(run), "--html", "--gallery", "-1"])
    assert bad.exit_code == 2 and "--gallery" in bad.output


def test_report_html_calls_untargeted_examples_so(tmp_path):
    """Target -1 (untargeted) must not be read as the last class name."""
    run = bundled_run(tmp_path / "run", targets="untargeted")
    report(run, figures=False, html=True, gallery=2)
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    captions = [row[0][0] for row in page.body_rows(2)]
    assert captions and all(c.endswith("\u2192 untargeted") for c in captions)
