"""Resumable store of transfer results: ``OUT/transfer.sqlite``, one row per (source attack,
receiving model, image, target), beside the `strattack eval` store whose examples it transfers.

Same guarantees as :mod:`.store`: each batch is one transaction (a killed run leaves whole
batches), and the primary key makes a rerun skip what is done and never duplicate a row.

Schema versions (``meta['schema']``, see :mod:`.sqlite_store`): 0 is the layout below with text
metadata and no recorded version (0.1.0); 1 the same with its version; 2 holds metadata as JSON
(``source_weights`` None or a path).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .sqlite_store import MetaValue, Migration, SQLiteStore, StoreError, optional_text

__all__ = ["TRANSFER_STORE_NAME", "TransferRecord", "TransferStore"]

TRANSFER_STORE_NAME = "transfer.sqlite"

#: meta keys that say where things are, not what they are: a moved run folder is the same run.
_LOCATION_KEYS = frozenset({"source_run"})

_TABLES_V1 = ("""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""", """
CREATE TABLE IF NOT EXISTS sources (
    attack TEXT PRIMARY KEY,       -- attack key in the source store
    label TEXT NOT NULL,
    examples INTEGER NOT NULL,     -- stored examples of the attack
    successes INTEGER NOT NULL)    -- of which succeeded on the source model (the transferred)
""", """
CREATE TABLE IF NOT EXISTS transfers (
    attack TEXT NOT NULL, model TEXT NOT NULL, image INTEGER NOT NULL, target INTEGER NOT NULL,
    true_label INTEGER NOT NULL,
    top1 INTEGER NOT NULL,         -- targeted: target is the argmax; untargeted: misclassified
    top5 INTEGER,                  -- targeted: target in the top 5; untargeted: NULL
    clean_top1 INTEGER NOT NULL,   -- the same on the clean image (the chance baseline)
    clean_top5 INTEGER,
    PRIMARY KEY (attack, model, image, target))""")

#: How the metadata entries that are not text read from their text form (schema 1 and callers
#: that give text).
_TEXT_PARSERS = {"source_weights": optional_text}

#: Schema changes, the n-th from version n to n + 1 (see the module's docstring).
_MIGRATIONS = (
    Migration(tables=_TABLES_V1),
    Migration(meta_as_json=True, text_parsers=_TEXT_PARSERS),
)


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


class TransferStore(SQLiteStore):
    """The SQLite file at ``path`` (created if missing). ``meta`` (source run, dataset, model,
    ``model <name>`` -> spec per receiving model) must agree with what the file holds: a
    receiving model name reused for another model would mix two models' rows."""

    KIND = "transfer store"
    MIGRATIONS = _MIGRATIONS
    TABLES = frozenset({"meta", "sources", "transfers"})
    TEXT_PARSERS = _TEXT_PARSERS
    LOCATION_KEYS = _LOCATION_KEYS

    def __init__(self, path: str | Path, meta: Mapping[str, MetaValue]) -> None:
        super().__init__(path, meta)

    def damaged(self, err: BaseException) -> StoreError:
        return StoreError(f"{self.path} is not a readable transfer store ({err}): it may be "
                          "truncated or another kind of file; delete it or choose another folder "
                          "with -o")

    def meta_clash(self, detail: str) -> ValueError:
        return ConfigError(f"{self.path} holds other transfer results ({detail}); use another "
                           "output folder (-o) or another model name")

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


def _int(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


def _percent(flags: list[int | None]) -> float:
    """100 x the mean of the defined flags; NaN if none is defined (untargeted top-5)."""
    defined = [f for f in flags if f is not None]
    return 100.0 * sum(defined) / len(defined) if defined else float("nan")
