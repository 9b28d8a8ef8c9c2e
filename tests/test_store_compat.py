"""Stores written by strattack 0.1.0 (tests/data, see its README) open, resume and merge; the
schema migrations and typed metadata of :mod:`strattack.evaluation.sqlite_store`."""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from strattack import __version__
from strattack.cli import main
from strattack.errors import ConfigError
from strattack.evaluation.config import EvalConfig
from strattack.evaluation.evaluate import store_meta
from strattack.evaluation.store import ResultStore, StoreError, merge_stores
from strattack.evaluation.transfer_store import TransferStore

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).parent / "data"
RESULTS_0_1_0 = DATA / "store_0_1_0" / "results.sqlite"
TRANSFER_0_1_0 = DATA / "transfer_0_1_0" / "transfer.sqlite"

#: The two commands that wrote the 0.1.0 results store (tests/data/README.md), less ``-o``.
EVAL_COMMANDS = (
    ["eval", "--bundled", "-n", "2", "--targets", "1,2", "-a", "str_attack", "-a",
     "str_attack_linf", "-a", "cw_l2", "-a", "fgm",
     "--set", "str_attack.max_iterations=10", "--set", "str_attack.binary_search_steps=1",
     "--set", "str_attack.refine_iterations=5", "--set", "str_attack_linf.epsilon=0.3",
     "--set", "str_attack_linf.max_iterations=10", "--set", "str_attack_linf.binary_search_steps=1",
     "--set", "str_attack_linf.refine_iterations=5", "--set", "cw_l2.max_iterations=10",
     "--set", "cw_l2.binary_search_steps=1", "--threads", "1", "--no-progress"],
    ["eval", "--config", str(DATA / "store_0_1_0" / "authors.toml"), "--bundled", "-n", "2",
     "--targets", "1,2", "--threads", "1", "--no-progress"],
)

#: The metadata 0.1.0 wrote as text, as the current version reads it.
TYPED_META_0_1_0 = {"schema": 4, "dataset": "mnist", "bundled": True, "model": "mnist",
                    "weights": None, "group_size": 2}


def _rows(path: Path, sql: str) -> list[tuple]:
    """What ``sql`` reads from ``path`` with plain sqlite3 (no migration)."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


#: The columns of the 0.1.0 store's examples (migrations add others after them).
COLUMNS_0_1_0 = ", ".join(row[1] for row in _rows(RESULTS_0_1_0, "PRAGMA table_info(examples)"))


def _examples(path: Path) -> list[tuple]:
    """The examples of ``path`` in the columns 0.1.0 wrote."""
    return _rows(path, f"SELECT {COLUMNS_0_1_0} FROM examples ORDER BY attack, image, target")


@pytest.fixture
def run_0_1_0(tmp_path: Path) -> Path:
    """A run folder holding a copy of the 0.1.0 results store."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(RESULTS_0_1_0, run / "results.sqlite")
    return run


# ------------------------------------------------------------------ the 0.1.0 results store
def test_a_0_1_0_store_opens_with_typed_metadata(run_0_1_0):
    with ResultStore(run_0_1_0 / "results.sqlite") as store:
        assert store.typed_meta() == store.meta() == TYPED_META_0_1_0
        assert store.count() == 15 and len(store.attacks()) == 5
    assert _rows(run_0_1_0 / "results.sqlite", "SELECT value FROM meta WHERE key = 'bundled'") \
        == [("true",)]                                      # migrated on disk: JSON


def test_a_0_1_0_store_opened_read_only_is_read_typed_and_left_as_it_is(run_0_1_0):
    path = run_0_1_0 / "results.sqlite"
    before = path.read_bytes()
    with ResultStore(path, read_only=True) as store:
        assert store.typed_meta() == TYPED_META_0_1_0
        assert store.count() == 15
    assert path.read_bytes() == before


def test_settings_and_labels_of_a_0_1_0_store_read_back_unchanged(run_0_1_0):
    raw = _rows(RESULTS_0_1_0, "SELECT key, label, settings FROM attacks")
    for read_only in (True, False):
        with ResultStore(run_0_1_0 / "results.sqlite", read_only=read_only) as store:
            assert store.labels() == {k: label for k, label, _ in raw if label is not None}
            assert store.settings() == {k: json.loads(s) for k, _, s in raw}
    assert _examples(run_0_1_0 / "results.sqlite") == _examples(RESULTS_0_1_0)


def test_eval_with_the_same_commands_resumes_a_0_1_0_store_with_nothing_attacked(run_0_1_0):
    for command in EVAL_COMMANDS:
        res = CliRunner().invoke(main, [*command, "-o", str(run_0_1_0)])
        assert res.exit_code == 0, res.output
        attacked = re.findall(r"(\d+) attacked", res.output)
        assert attacked and set(attacked) == {"0"}, res.output
    assert _examples(run_0_1_0 / "results.sqlite") == _examples(RESULTS_0_1_0)
    assert _rows(run_0_1_0 / "results.sqlite", "SELECT key, label, settings FROM attacks") == \
        _rows(RESULTS_0_1_0, "SELECT key, label, settings FROM attacks")


def test_a_0_1_0_store_merges_with_a_fresh_store(run_0_1_0, tmp_path):
    fresh = tmp_path / "fresh.sqlite"
    meta = {k: v for k, v in TYPED_META_0_1_0.items() if k != "schema"}
    with ResultStore(fresh, meta) as store:
        key = store.add_attack("ifgsm", {"steps": 3}, label="I-FGSM", settings={"steps": 3})
    added = merge_stores(fresh, [run_0_1_0 / "results.sqlite"])
    assert list(added.values()) == [15]
    with ResultStore(fresh, read_only=True) as merged, \
            ResultStore(RESULTS_0_1_0, read_only=True) as old:
        assert merged.typed_meta() == TYPED_META_0_1_0
        assert merged.count() == 15 and set(merged.attacks()) == set(old.attacks()) | {key}
        assert merged.labels() == old.labels() | {key: "I-FGSM"}
        assert merged.settings() == old.settings() | {key: {"steps": 3}}
    # into a store that does not exist yet: made from the 0.1.0 store's metadata
    assert list(merge_stores(tmp_path / "new.sqlite", [RESULTS_0_1_0]).values()) == [15]
    with ResultStore(tmp_path / "new.sqlite", read_only=True) as new:
        assert new.typed_meta() == TYPED_META_0_1_0


@pytest.mark.parametrize("read_only", [False, True])
def test_the_examples_of_a_0_1_0_store_have_no_version(run_0_1_0, read_only):
    with ResultStore(run_0_1_0 / "results.sqlite", read_only=read_only) as store:
        versions = {r.version for key in store.attacks() for r in store.records(key)}
    assert versions == {None}


def test_report_shows_the_version_that_computed_each_attack(run_0_1_0):
    """0.1.0's examples are 'unknown'; an attack this version extends is 'mixed' with counts."""
    more_fgm = ["eval", "--bundled", "-n", "3", "--targets", "1,2", "-a", "fgm", "--threads", "1",
                "--no-progress", "-o", str(run_0_1_0)]
    res = CliRunner().invoke(main, more_fgm)
    assert res.exit_code == 0, res.output
    with ResultStore(run_0_1_0 / "results.sqlite", read_only=True) as store:
        new = [r for key, (name, _) in store.attacks().items() if name == "fgm"
               for r in store.records(key) if r.version is not None]
    assert new and {r.version for r in new} == {__version__} and {r.image for r in new} == {2}
    res = CliRunner().invoke(main, ["report", str(run_0_1_0), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "| device | version |" in res.output
    rows = json.loads((run_0_1_0 / "report.json").read_text())
    versions = {row["attack"]: row["version"] for row in rows}
    assert versions.pop("fgm") == f"mixed: {__version__} x{len(new)}, unknown x3"
    assert set(versions.values()) == {"unknown"}


# ------------------------------------------------------------------ the 0.1.0 transfer store
def _transfer_meta(weights: object) -> dict[str, object]:
    """The metadata `strattack transfer` gives for the fixture's source run (its folder is
    a location: not compared)."""
    return {"source_run": "/elsewhere/run", "source_dataset": "mnist", "source_model": "mnist",
            "source_weights": weights, "model mnist": "mnist"}


def test_a_0_1_0_transfer_store_opens_and_reads_the_same(tmp_path):
    path = tmp_path / "transfer.sqlite"
    shutil.copy(TRANSFER_0_1_0, path)
    sources = _rows(TRANSFER_0_1_0, "SELECT attack, label, examples, successes FROM sources")
    transfers = _rows(TRANSFER_0_1_0, "SELECT * FROM transfers")
    for weights in ("None", None):          # as text, as callers gave it, or as itself
        with TransferStore(path, _transfer_meta(weights)) as store:
            assert store.typed_meta()["source_weights"] is None
            assert store.typed_meta()["source_run"] == "/elsewhere/run"   # the latest kept
            assert store.sources() == {k: (lab, n, s) for k, lab, n, s in sources}
            key, model = transfers[0][:2]
            assert store.done(key, model) == {(r[2], r[3]) for r in transfers}
            rates = store.rates(key, model, {(r[2], r[3]) for r in transfers})
            assert rates["examples"] == len(transfers) and rates["top-1 %"] == 100.0
    assert _rows(path, "SELECT * FROM transfers") == transfers


def test_transfer_resumes_a_0_1_0_transfer_store_with_nothing_transferred_again(run_0_1_0,
                                                                                tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(TRANSFER_0_1_0, out / "transfer.sqlite")
    res = CliRunner().invoke(main, ["transfer", str(run_0_1_0), "--model", "mnist",
                                    "--threads", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "-> mnist: 0 of 1 examples to evaluate" in res.output, res.output
    assert _rows(out / "transfer.sqlite", "SELECT * FROM transfers") == \
        _rows(TRANSFER_0_1_0, "SELECT * FROM transfers")


def test_a_transfer_store_refuses_another_receiving_model_under_the_same_name(tmp_path):
    path = tmp_path / "transfer.sqlite"
    shutil.copy(TRANSFER_0_1_0, path)
    with pytest.raises(ConfigError, match="model mnist: store has 'mnist', this run 'lenet'"):
        TransferStore(path, _transfer_meta(None) | {"model mnist": "lenet"})


# ------------------------------------------------------------------ typed metadata
def test_metadata_reads_back_as_the_values_given(tmp_path):
    meta = {"dataset": "mnist", "bundled": False, "weights": "w.pt", "group_size": 3,
            "scale": 0.5}
    with ResultStore(tmp_path / "s.sqlite", meta) as store:
        assert {k: store.typed_meta()[k] for k in meta} == meta
    with ResultStore(tmp_path / "s.sqlite", meta) as store:       # the same run resumes
        assert store.count() == 0


def test_an_evaluation_gives_its_metadata_typed(tmp_path):
    options = {"bundled": True, "out": tmp_path, "attacks": ("fgm",)}
    meta = store_meta(EvalConfig.from_sources(None, options), 2)
    assert meta["bundled"] is True and meta["weights"] is None and meta["group_size"] == 2
    weighted = store_meta(EvalConfig.from_sources(None, options | {"weights": "w.pt"}), 2)
    assert weighted["weights"] == "w.pt"


def test_a_typed_entry_given_as_its_text_is_the_same_value(tmp_path):
    with ResultStore(tmp_path / "s.sqlite", {"bundled": True, "weights": None}) as store:
        assert store.typed_meta()["bundled"] is True
    with ResultStore(tmp_path / "s.sqlite", {"bundled": "True", "weights": "None"}) as store:
        assert store.typed_meta()["weights"] is None
    with pytest.raises(ValueError, match="holds a different evaluation.*bundled: store has True, "
                                         "this run False"):
        ResultStore(tmp_path / "s.sqlite", {"bundled": "False"})


def test_a_bool_is_not_the_number_one(tmp_path):
    with ResultStore(tmp_path / "s.sqlite", {"flag": True}):
        pass
    with pytest.raises(ValueError, match="flag: store has True, this run 1"):
        ResultStore(tmp_path / "s.sqlite", {"flag": 1})


@pytest.mark.parametrize("meta, message", [
    ({"bundled": "yes"}, "'bundled': 'yes' is not a valid value"),
    ({"group_size": "two"}, "'group_size': 'two' is not a valid value"),
    ({"dataset": Path("mnist")}, "'dataset': .* is a PosixPath|'dataset': .* is a WindowsPath"),
    ({"dataset": ["mnist"]}, "metadata values are text, numbers, booleans or None"),
])
def test_bad_metadata_is_refused_before_anything_is_written(tmp_path, meta, message):
    with pytest.raises(ValueError, match=message):
        ResultStore(tmp_path / "s.sqlite", meta)
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert set(store.typed_meta()) == {"schema"}


# ------------------------------------------------------------------ migrations
def _version_1_store(path: Path, meta: dict[str, str], *, with_columns: bool = True) -> None:
    """A store as version 1 wrote it: text metadata; without ``with_columns``, as written
    before labels, settings and devices were kept."""
    extra = ", label TEXT, settings TEXT" if with_columns else ""
    device = ", device TEXT" if with_columns else ""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            f"CREATE TABLE attacks (key TEXT PRIMARY KEY, name TEXT NOT NULL, params TEXT NOT NULL"
            f"{extra});"
            "CREATE TABLE examples (attack TEXT NOT NULL, image INTEGER NOT NULL,"
            " target INTEGER NOT NULL, true_label INTEGER NOT NULL, success INTEGER NOT NULL,"
            " l0 REAL, l1 REAL, l2 REAL, linf REAL, groups REAL, forward_passes INTEGER,"
            " backward_passes INTEGER, seconds REAL, batch_size INTEGER, shape TEXT NOT NULL,"
            f" perturbation BLOB NOT NULL{device}, PRIMARY KEY (attack, image, target));")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", "1"), *meta.items()])


def test_each_migration_step_records_its_version(tmp_path):
    path = tmp_path / "s.sqlite"
    _version_1_store(path, {"bundled": "False", "weights": "w.pt"}, with_columns=False)
    with ResultStore(path) as store:
        assert store.typed_meta() == {"schema": 4, "bundled": False, "weights": "w.pt"}
        assert store.labels() == {} and store.settings() == {}
    assert {"label", "settings"} <= {r[1] for r in _rows(path, "PRAGMA table_info(attacks)")}
    assert {"device", "version"} <= {r[1] for r in _rows(path, "PRAGMA table_info(examples)")}


def test_a_store_left_between_two_steps_migrates_on(tmp_path):
    path = tmp_path / "s.sqlite"
    _version_1_store(path, {"bundled": "True"})
    with closing(sqlite3.connect(path)) as db, db:           # as if killed after step 1 -> 2
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    with ResultStore(path, {"bundled": True}) as store:
        assert store.typed_meta() == {"schema": 4, "bundled": True}


def test_a_fresh_store_is_at_the_current_version(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.typed_meta() == {"schema": 4}
    with TransferStore(tmp_path / "t.sqlite", {}) as store:
        assert store.typed_meta() == {"schema": 2}


@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_of_a_newer_version_is_refused(tmp_path, read_only):
    path = tmp_path / "s.sqlite"
    with ResultStore(path):
        pass
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="schema version 5, newer than this strattack's 4"):
        ResultStore(path, read_only=read_only)
    assert path.read_bytes() == before


@pytest.mark.parametrize("schema, bundled, message", [
    ("1", "maybe", "meta 'bundled' holds 'maybe'"),
    ("one", "True", "its schema version 'one' is no number"),
])
def test_a_store_with_unreadable_metadata_is_a_store_error(tmp_path, schema, bundled, message):
    path = tmp_path / "s.sqlite"
    _version_1_store(path, {"bundled": bundled})
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (schema,))
    for read_only in (False, True):
        with pytest.raises(StoreError, match=f"not a readable strattack result store.*{message}"):
            ResultStore(path, read_only=read_only)


def test_metadata_that_is_not_json_in_a_current_store_is_a_store_error(tmp_path):
    path = tmp_path / "s.sqlite"
    with ResultStore(path, {"model": "mnist"}):
        pass
    with closing(sqlite3.connect(path)) as db, db:               # edited by hand, as text
        db.execute("UPDATE meta SET value = 'pkg.module:build' WHERE key = 'model'")
    for read_only in (False, True):
        with pytest.raises(StoreError, match="meta 'model' holds 'pkg.module:build', which is "
                                             "not JSON"):
            ResultStore(path, read_only=read_only)
