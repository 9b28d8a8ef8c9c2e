"""A store's file system failing (full disk, file-size limit, read-only folder) is named as such,
not as a damaged store; another program's SQLite database is never written into; a damaged
record is named (store, attack, image, target)."""
from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import bundled_run
from strattack.cli import main
from strattack.evaluation.store import ResultStore, StoreError
from strattack.evaluation.transfer_store import TransferStore

pytestmark = pytest.mark.usefixtures("one_thread")

EVAL = ["eval", "--bundled", "--targets", "next", "-a", "fgm", "--no-progress", "--threads", "1"]

#: SQLite's messages for a failing disk or folder, and what the error then says.
IO_MESSAGES = [
    ("database or disk is full", "could not write the store {}: the disk is full"),
    ("disk I/O error", "could not read or write the store {}: the disk or the file system"),
    ("attempt to write a readonly database", "could not write the store {}: the file or its "
                                             "folder is read-only"),
    ("unable to open database file", "could not open the store {}: the file or its folder "
                                     "cannot be opened"),
]


def _eval(out: Path, indices: str) -> object:
    return CliRunner().invoke(main, [*EVAL, "--indices", indices, "-o", str(out)])


def _count(path: Path) -> int:
    with ResultStore(path, read_only=True) as store:
        return store.count()


def _failing_sqlite(monkeypatch, statement: str, message: str) -> None:
    """Every SQLite connection from now on fails the statements starting with ``statement``
    with ``message``, as SQLite does when the disk or folder refuses."""
    class Failing(sqlite3.Connection):
        def _check(self, sql: str) -> None:
            if sql.lstrip().startswith(statement):
                raise sqlite3.OperationalError(message)

        def execute(self, sql, *args):
            self._check(sql)
            return super().execute(sql, *args)

        def executemany(self, sql, *args):
            self._check(sql)
            return super().executemany(sql, *args)

    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, factory=Failing, **k))


# ------------------------------------------------------------------ another program's database
def _foreign(path: Path) -> bytes:
    """An SQLite database of another program at ``path``; its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
        db.execute("INSERT INTO songs VALUES ('so what')")
    return path.read_bytes()


def test_eval_leaves_another_programs_database_untouched(tmp_path):
    before = _foreign(tmp_path / "out" / "results.sqlite")
    res = _eval(tmp_path / "out", "0")
    assert res.exit_code == 1, res.output
    assert "results.sqlite is another program's SQLite database (tables ['songs']), not a " \
           "strattack result store" in res.output
    assert (tmp_path / "out" / "results.sqlite").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.sqlite"]


def test_merge_into_another_programs_database_is_refused(tmp_path):
    shard = bundled_run(tmp_path / "shard") / "results.sqlite"
    before = _foreign(tmp_path / "dest" / "results.sqlite")
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "dest"), str(shard)])
    assert res.exit_code == 1 and "another program's SQLite database" in res.output, res.output
    assert (tmp_path / "dest" / "results.sqlite").read_bytes() == before


def test_transfer_leaves_another_programs_database_untouched(tmp_path):
    before = _foreign(tmp_path / "t" / "transfer.sqlite")
    with pytest.raises(StoreError, match="transfer.sqlite is another program's SQLite database "
                                         r"\(tables \['songs'\]\), not a strattack transfer store"):
        TransferStore(tmp_path / "t" / "transfer.sqlite", {})
    assert (tmp_path / "t" / "transfer.sqlite").read_bytes() == before
    run = bundled_run(tmp_path / "run")
    res = CliRunner().invoke(main, ["transfer", str(run), "--model", "mnist", "-o",
                                    str(tmp_path / "t")])
    assert res.exit_code == 1 and "not a strattack transfer store" in res.output, res.output
    assert (tmp_path / "t" / "transfer.sqlite").read_bytes() == before


def test_an_empty_sqlite_file_becomes_a_store(tmp_path):
    """Without tables of its own, the file is nobody's data: the store is made in it."""
    (tmp_path / "empty.sqlite").touch()
    with sqlite3.connect(tmp_path / "blank.sqlite") as db:
        db.execute("PRAGMA user_version = 1")
    for name in ("empty.sqlite", "blank.sqlite"):
        with ResultStore(tmp_path / name, {"model": "mnist"}) as store:
            assert store.meta()["model"] == "mnist"


# ------------------------------------------------------------------ the disk or folder failing
@pytest.mark.parametrize("message, expected", IO_MESSAGES)
def test_a_failing_write_is_named_an_io_error_and_the_store_resumes(tmp_path, monkeypatch,
                                                                    message, expected):
    out = tmp_path / "out"
    assert _eval(out, "0").exit_code == 0
    with monkeypatch.context() as patch:
        _failing_sqlite(patch, "INSERT OR IGNORE INTO examples", message)
        res = _eval(out, "0,1,2")
    store = out / "results.sqlite"
    assert res.exit_code == 1, res.output
    assert expected.format(store) in res.output, res.output
    assert "the finished examples in it are intact" in res.output
    assert "corrupt" not in res.output and "Traceback" not in res.output
    assert _count(store) == 1
    res = _eval(out, "0,1,2")                     # space freed: the run resumes
    assert res.exit_code == 0 and "1 already done" in res.output, res.output
    assert _count(store) == 3


@pytest.mark.parametrize("message, expected", IO_MESSAGES)
def test_a_store_that_cannot_be_opened_for_writing_is_an_io_error(tmp_path, monkeypatch,
                                                                  message, expected):
    """A read-only run folder fails as SQLite turns on its write-ahead log (tests run as root,
    whom chmod does not stop, so SQLite's answer is simulated)."""
    out = tmp_path / "out"
    assert _eval(out, "0").exit_code == 0
    _failing_sqlite(monkeypatch, "PRAGMA journal_mode", message)
    res = _eval(out, "0,1")
    assert res.exit_code == 1, res.output
    assert expected.format(out / "results.sqlite") in res.output, res.output
    assert "corrupt" not in res.output


def test_a_folder_that_cannot_be_made_is_an_io_error(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(StoreError, match="could not write the store .*s.sqlite: the file or its "
                                         "folder is read-only"):
        ResultStore(tmp_path / "new" / "s.sqlite")


def test_merge_names_the_destination_when_its_disk_is_full(tmp_path, monkeypatch):
    shard = bundled_run(tmp_path / "shard") / "results.sqlite"
    _failing_sqlite(monkeypatch, "INSERT OR IGNORE INTO examples", "database or disk is full")
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "dest"), str(shard)])
    assert res.exit_code == 1, res.output
    assert f"could not write the store {tmp_path / 'dest' / 'results.sqlite'}: the disk is " \
           "full" in res.output, res.output
    assert str(shard) not in res.output


def test_transfer_names_its_own_store_when_the_disk_is_full(tmp_path, monkeypatch):
    run = bundled_run(tmp_path / "run")
    _failing_sqlite(monkeypatch, "INSERT OR IGNORE INTO transfers", "database or disk is full")
    res = CliRunner().invoke(main, ["transfer", str(run), "--model", "mnist", "-o",
                                    str(tmp_path / "t")])
    assert res.exit_code == 1, res.output
    assert f"could not write the store {tmp_path / 't' / 'transfer.sqlite'}: the disk is full" \
        in res.output, res.output


def test_a_file_size_limit_is_an_io_error(tmp_path):
    """A real limit (``ulimit -f``): SQLite's write fails with EFBIG mid-run; the finished
    examples stay and a rerun without the limit completes the store."""
    out = tmp_path / "out"
    assert _eval(out, "0").exit_code == 0
    # No bytecode: a .pyc written under the limit would be cut short, breaking later imports.
    script = ("import resource, sys\n"
              "sys.dont_write_bytecode = True\n"
              "from strattack.cli import main\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "main(sys.argv[1:])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([sys.executable, "-c", script, *EVAL, "--indices", "0,1,2", "-o",
                          str(out)], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert f"could not read or write the store {out / 'results.sqlite'}: the disk or the file " \
           "system refused" in res.stderr and "file-size limit" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert _count(out / "results.sqlite") == 1
    res = _eval(out, "0,1,2")
    assert res.exit_code == 0 and _count(out / "results.sqlite") == 3, res.output


# ------------------------------------------------------------------ a damaged perturbation
def _damage_first_record(run: Path, blob: bytes) -> tuple[str, int, int]:
    """Replace the perturbation of the store's first record (of its first attack) by ``blob``;
    that record's (attack label, image, target)."""
    with sqlite3.connect(run / "results.sqlite") as db:
        rowid, image, target = db.execute(
            "SELECT e.rowid, image, target FROM examples e JOIN attacks a ON e.attack = a.key "
            "ORDER BY a.rowid, image, target LIMIT 1").fetchone()
        db.execute("UPDATE examples SET perturbation = ? WHERE rowid = ?", (blob, rowid))
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        first = next(iter(store.attacks().values()))[0]
    return first, image, target


@pytest.mark.parametrize("blob", [b"not zlib at all", zlib.compress(b"\0" * 12)],
                         ids=["not zlib", "wrong size"])
@pytest.mark.parametrize("command", ["explain", "transfer", "export"])
def test_a_damaged_perturbation_names_the_store_and_the_record(tmp_path, blob, command):
    run = bundled_run(tmp_path / "run")
    attack, image, target = _damage_first_record(run, blob)
    args = {"explain": ["explain", str(run)],
            "transfer": ["transfer", str(run), "--model", "mnist", "-o", str(tmp_path / "t")],
            "export": ["export", str(run), "-o", str(tmp_path / "e")]}[command]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert f"{run / 'results.sqlite'} is damaged at the record of attack {attack!r}, image " \
           f"{image}, target {target}: its perturbation cannot be decoded" in res.output, \
        res.output
    assert "Traceback" not in res.output
