"""Resumable store of transfer results: ``OUT/transfer.sqlite``, one row per (source attack,
receiving model, image, target), beside the `strattack eval` store whose examples it transfers.

Same guarantees as :mod:`.store`: each batch is one transaction (a killed run leaves whole
batches), and the primary key makes a rerun skip what is done and never duplicate a row.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .store import StoreError

__all__ = ["TRANSFER_STORE_NAME", "TransferRecord", "TransferStore"]

TRANSFER_STORE_NAME = "transfer.sqlite"

#: meta keys that say where things are, not what they are: a moved run folder is the same run.
_LOCATION_KEYS = frozenset({"source_run"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    attack TEXT PRIMARY KEY,       -- attack key in the source store
    label TEXT NOT NULL,
    examples INTEGER NOT NULL,     -- stored examples of the attack
    successes INTEGER NOT NULL);   -- of which succeeded on the source model (the transferred)
CREATE TABLE IF NOT EXISTS transfers (
    attack TEXT NOT NULL, model TEXT NOT NULL, image INTEGER NOT NULL, target INTEGER NOT NULL,
    true_label INTEGER NOT NULL,
    top1 INTEGER NOT NULL,         -- targeted: target is the argmax; untargeted: misclassified
    top5 INTEGER,                  -- targeted: target in the top 5; untargeted: NULL
    clean_top1 INTEGER NOT NULL,   -- the same on the clean image (the chance baseline)
    clean_top5 INTEGER,
    PRIMARY KEY (attack, model, image, target));
"""


@dataclass(frozen=True)
class TransferRecord:
    """One transferred example on one receiving model (``top5`` None: untargeted)."""

    image: int
    target: int
    true_label: int
    top1: bool
    top5: bool | None
    clean_top1: bool
    clean_top5: bool | None


class TransferStore:
    """The SQLite file at ``path`` (created if missing). ``meta`` (source run, dataset, model,
    ``model <name>`` -> spec per receiving model) must agree with what the file holds: a
    receiving model name reused for another model would mix two models' rows."""

    def __init__(self, path: str | Path, meta: Mapping[str, str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        except sqlite3.DatabaseError as err:
            raise _store_error(self.path, err) from err
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._check_meta(meta)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise _store_error(self.path, err) from err
        except BaseException:
            self._db.close()
            raise

    def _check_meta(self, meta: Mapping[str, str]) -> None:
        stored = self.meta()
        clash = [f"{k}: the store has {stored[k]!r}, this run {v!r}" for k, v in meta.items()
                 if stored.get(k, v) != v and k not in _LOCATION_KEYS]
        if clash:
            raise ConfigError(f"{self.path} holds other transfer results ({'; '.join(clash)}); "
                              "use another output folder (-o) or another model name")
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """All of the block's writes or none (a batch is never half-written)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TransferStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def set_source(self, key: str, label: str, examples: int, successes: int) -> None:
        """Record how many of the attack's stored examples succeeded on the source model."""
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?)",
                             (key, label, examples, successes))

    def sources(self) -> dict[str, tuple[str, int, int]]:
        """attack key -> (label, stored examples, successes on the source)."""
        rows = self._db.execute("SELECT attack, label, examples, successes FROM sources "
                                "ORDER BY rowid")
        return {k: (lab, n, s) for k, lab, n, s in rows}

    def done(self, key: str, model: str) -> set[tuple[int, int]]:
        """(image, target) pairs of attack ``key`` already transferred to ``model``."""
        rows = self._db.execute("SELECT image, target FROM transfers WHERE attack = ? AND "
                                "model = ?", (key, model))
        return {(i, t) for i, t in rows}

    def write(self, key: str, model: str, records: Iterable[TransferRecord]) -> int:
        """Write one batch in one transaction; returns rows added (present ones are kept)."""
        rows = [(key, model, r.image, r.target, r.true_label, int(r.top1), _int(r.top5),
                 int(r.clean_top1), _int(r.clean_top5)) for r in records]
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO transfers VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return self._db.total_changes - before

    def rates(self, key: str, model: str, pairs: set[tuple[int, int]]) -> dict[str, float]:
        """Examples and percentages (top-1, top-5, clean top-1, clean top-5) over ``pairs``,
        the examples that are now successful on the source (NaN where undefined)."""
        rows = self._db.execute("SELECT image, target, top1, top5, clean_top1, clean_top5 FROM "
                                "transfers WHERE attack = ? AND model = ?", (key, model))
        kept = [r[2:] for r in rows if (r[0], r[1]) in pairs]
        names = ("top-1 %", "top-5 %", "clean top-1 %", "clean top-5 %")
        return {"examples": len(kept),
                **{n: _percent([r[j] for r in kept]) for j, n in enumerate(names)}}


def _store_error(path: Path, err: BaseException) -> StoreError:
    return StoreError(f"{path} is not a readable transfer store ({err}): it may be truncated "
                      "or another kind of file; delete it or choose another folder with -o")


def _int(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


def _percent(flags: list[int | None]) -> float:
    """100 x the mean of the defined flags; NaN if none is defined (untargeted top-5)."""
    defined = [f for f in flags if f is not None]
    return 100.0 * sum(defined) / len(defined) if defined else float("nan")
