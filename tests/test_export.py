"""strattack export: the store's adversarial examples as float32 npz or 8-bit PNGs, checked
against the store and the bundled images computed independently here; the 8-bit re-check
against the model run on the decoded PNGs; bad requests fail before anything is written."""
from __future__ import annotations

import csv
import os
import shutil
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import bundled_run
from PIL import Image

from strattack.cli import main
from strattack.commands.export import ExportOptions, attack_slugs, export
from strattack.data import load_samples
from strattack.errors import ConfigError, DataError
from strattack.evaluation.report import store_labels
from strattack.evaluation.store import ResultStore
from strattack.models import load_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")


def _store_run(out, targets):
    """MNIST images 0, 4, 8, 9, FGM and 3-step I-FGSM: with next targets, I-FGSM fools the
    model on three of them and 8-bit rounding undoes one; FGM fails on three."""
    return bundled_run(out, targets, indices="0,4,8,9")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    return _store_run(tmp_path_factory.mktemp("run"), "next")


@pytest.fixture(scope="module")
def stored(run):
    """Every stored example as (attack label, image, target, true label, success, x0 + delta
    clamped), computed here from the store and the bundled images."""
    images, _, ids = load_samples("mnist")
    row_of = {int(i): r for r, i in enumerate(ids)}
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        return [(label, r.image, r.target, r.true_label, r.success,
                 np.clip(images[row_of[r.image]].numpy() + r.perturbation, 0, 1))
                for key, label in store_labels(store).items()
                for r in store.records(key, with_perturbation=True)]


def _index(folder):
    with open(folder / "png" / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ npz
@pytest.mark.parametrize("only_successful", [True, False])
def test_npz_round_trip_is_x0_plus_delta(run, stored, tmp_path, only_successful):
    result = export(ExportOptions(run, "npz", only_successful=only_successful, out=tmp_path))
    assert result.written == [tmp_path / "adversarial.npz"]
    expected = [s for s in stored if s[4] or not only_successful]
    with np.load(tmp_path / "adversarial.npz") as z:
        assert z["adv"].dtype == np.float32 and z["adv"].shape == (len(expected), 1, 28, 28)
        np.testing.assert_array_equal(z["adv"], np.stack([s[5] for s in expected]))
        assert z["attack"].tolist() == [s[0] for s in expected]
        for j, name in enumerate(("image", "target", "label", "success"), start=1):
            assert z[name].tolist() == [s[j] for s in expected], name
    assert (len(expected) < len(stored)) == only_successful     # the store has failures


def test_npz_only_the_attacks_asked_for(run, tmp_path):
    export(ExportOptions(run, "npz", attacks=("ifgsm",), out=tmp_path))
    with np.load(tmp_path / "adversarial.npz") as z:
        assert set(z["attack"].tolist()) == {"ifgsm"} and z["success"].all()


# ------------------------------------------------------------------ png
def test_png_files_are_the_8bit_rounding_of_x0_plus_delta(run, stored, tmp_path):
    export(ExportOptions(run, "png", out=tmp_path))
    rows = _index(tmp_path)
    successes = [s for s in stored if s[4]]
    assert [(r["attack"], int(r["image"]), int(r["target"])) for r in rows] == \
        [(s[0], s[1], s[2]) for s in successes]
    for row, s in zip(rows, successes):
        assert row["file"] == f"{s[0]}/{s[1]}_{s[2]}.png"
        decoded = np.asarray(Image.open(tmp_path / "png" / row["file"]))
        assert decoded.dtype == np.uint8 and decoded.shape == (28, 28)
        np.testing.assert_array_equal(decoded, np.round(s[5][0] * 255).astype(np.uint8))


def test_recheck_counts_what_the_model_says_on_the_decoded_pngs(run, tmp_path):
    result = export(ExportOptions(run, "png", out=tmp_path))
    model = load_pretrained("mnist")
    rows = _index(tmp_path)
    pixels = np.stack([np.asarray(Image.open(tmp_path / "png" / r["file"])) for r in rows])
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels).float()[:, None] / 255)
    targets = torch.tensor([int(r["target"]) for r in rows])
    others = logits.scatter(1, targets[:, None], float("-inf")).amax(1)
    kept = (logits.gather(1, targets[:, None]).squeeze(1) > others).tolist()
    assert [r["adversarial_8bit"] == "1" for r in rows] == kept
    for label in ("fgm", "ifgsm"):
        mine = [k for r, k in zip(rows, kept) if r["attack"] == label]
        assert f"{label}: {sum(mine)} of {len(mine)} stay adversarial after 8-bit rounding " \
               f"({len(mine)} of {len(mine)} as float32)" in result.lines
    assert not all(kept)                    # the rounding undid one I-FGSM example here


def test_png_untargeted_names_and_no_recheck(tmp_path):
    run = _store_run(tmp_path / "run", "untargeted")
    result = export(ExportOptions(run, "png", attacks=("ifgsm",), recheck=False))
    rows = _index(run)
    assert rows and all(r["file"] == f"ifgsm/{r['image']}_untargeted.png" for r in rows)
    assert all(r["adversarial_8bit"] == "" for r in rows)
    assert result.lines == [f"ifgsm: {len(rows)} PNGs ({len(rows)} successful), not re-checked"]


def test_a_model_that_does_not_load(run, tmp_path):
    """Re-check by default only where the store's model loads; asked for, it is an error."""
    copy = tmp_path / "run"
    copy.mkdir()
    shutil.copy(run / "results.sqlite", copy / "results.sqlite")
    with sqlite3.connect(copy / "results.sqlite") as db:
        db.execute("UPDATE meta SET value = '\"nopackage.nomodule:build\"' WHERE key = 'model'")
    result = export(ExportOptions(copy, "png"))
    assert result.lines[0].startswith("note: 8-bit images not re-checked: the store's model "
                                      "does not load")
    with pytest.raises(DataError, match="cannot load the store's model to re-check"):
        export(ExportOptions(copy, "png", recheck=True, out=tmp_path / "out"))
    assert not list((tmp_path / "out").iterdir())    # checked writable, nothing written


def test_attack_slugs_are_folder_names_and_distinct():
    assert attack_slugs(["C&W-l2", "StrAttack", "C&W l2", "../x", "&"]) == \
        ["C_W-l2", "StrAttack", "C_W_l2", "x", "attack"]
    assert attack_slugs(["a&b", "a b", "a_b"]) == ["a_b", "a_b-2", "a_b-3"]


# ------------------------------------------------------------------ bad requests
def test_bad_requests_fail_before_any_work(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no store .*results.sqlite"):
        export(ExportOptions(tmp_path, "npz", out=out))
    with pytest.raises(ConfigError, match=r"attacks \['pgd'\] are not in .*; it has \["):
        export(ExportOptions(run, "png", attacks=("pgd",), out=out))
    with pytest.raises(ConfigError, match="--recheck applies to --format png"):
        export(ExportOptions(run, "npz", recheck=True, out=out))
    with pytest.raises(ConfigError, match="--format must be one of npz, png"):
        export(ExportOptions(run, "jpg", out=out))
    assert not out.exists()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and access(p, mode))
    with pytest.raises(DataError, match="is not writable, so the export cannot go there"):
        export(ExportOptions(run, "png", out=out))
    assert not list(out.iterdir())


def test_cli(run, tmp_path):
    result = CliRunner().invoke(main, ["export", str(run), "--format", "png", "-a", "ifgsm",
                                       "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ifgsm: 2 of 3 stay adversarial after 8-bit rounding (3 of 3 as float32)" \
        in result.output
    assert f"wrote {tmp_path / 'png' / 'index.csv'}" in result.output
    wrong = CliRunner().invoke(main, ["export", str(run), "-a", "pgd", "-o", str(tmp_path)])
    assert wrong.exit_code == 2 and "are not in" in wrong.output
