"""A run in which one attack fooled nothing (FGM held to epsilon 1e-4) and the other fooled
every example: `report --html` and its heatmap figure show each attack's own examples,
`transfer` and `export` say that the attack has nothing to transfer or export, and nothing is
written for it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import bundled_run
from strattack.commands.export import ExportOptions, export
from strattack.commands.report import report
from strattack.commands.transfer import transfer
from strattack.evaluation.finished_run import shown_successes
from strattack.evaluation.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = [(0, 8), (1, 3), (2, 2)]         # bundled MNIST images 0-2, next targets


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = bundled_run(tmp_path_factory.mktemp("run"), settings=("fgm.epsilon=1e-4",))
    with ResultStore(out / "results.sqlite", read_only=True) as store:
        success = {label: [r.success for r in store.records(key)]
                   for key, (label, _) in store.attacks().items()}
    assert success == {"fgm": [False] * 3, "ifgsm": [True] * 3}
    return out


def test_each_attack_shows_its_own_examples_when_none_is_common(run):
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        fgm, ifgsm = shown_successes(store, 2)
    assert (fgm.labels, fgm.pairs) == (["fgm"], [])
    assert (ifgsm.labels, ifgsm.pairs) == (["ifgsm"], EXAMPLES[:2])
    assert ifgsm.deltas["ifgsm"].shape == (2, 1, 28, 28)


def test_report_html_gallery_shows_each_attacks_own_examples(run, tmp_path):
    report(run, out=tmp_path, html=True, gallery=3)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "no example is adversarial under every attack (fgm: none adversarial)" in page
    assert "<h3>fgm</h3>\n<p class=\"note\">fgm: no adversarial example</p>" in page
    assert "<h3>ifgsm</h3>" in page
    # ifgsm's 3 examples: original, adversarial image and heatmap each; + the 2 figures
    assert page.count("<img ") == 2 + 3 * 3
    assert (tmp_path / "group_heatmaps.png").read_bytes()[:4] == b"\x89PNG"


def test_transfer_says_an_attack_has_nothing_to_transfer(run, tmp_path):
    result = transfer(run, ["mnist"], out=tmp_path)
    assert ("fgm: none of its 3 stored examples succeeded on mnist: nothing to transfer, so it "
            "has no row") in result.lines
    assert [row["attack"] for row in result.rows] == ["ifgsm"]
    sources = json.loads((tmp_path / "transfer.json").read_text())["sources"]
    assert sources == {"fgm": {"stored": 3, "transferred": 0},
                       "ifgsm": {"stored": 3, "transferred": 3}}


@pytest.mark.parametrize("form", ["png", "npz"])
def test_export_says_an_attack_has_nothing_to_export_and_makes_no_folder(run, tmp_path, form):
    result = export(ExportOptions(run, format=form, out=tmp_path))
    assert result.lines[0] == "fgm: no successful example to export"
    assert [e.label for e in result.exported] == ["ifgsm"]
    if form == "png":
        assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["ifgsm", "index.csv"]
    else:
        assert set(np.load(tmp_path / "adversarial.npz")["attack"]) == {"ifgsm"}
