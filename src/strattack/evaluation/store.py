"""Resumable result store: one SQLite file per evaluation, one row per finished example.

Why SQLite: each batch of finished examples is written in one transaction, so a run killed at
any moment (Ctrl-C, ``kill -9``, power loss) leaves either the whole batch or none of it; the
primary key (attack, image, target) makes re-running the same command skip what is done and
makes merging shard stores idempotent.

An *attack key* names one attack configuration: the attack's name plus its parameters as
canonical JSON. Two runs with different parameters never mix their rows.

Each example also records the device it ran on (e.g. ``cpu (1 thread)`` or
``cuda:0 NVIDIA H100 80GB HBM3``): shards may run on different machines, and a mean of seconds
over a CPU and a GPU means nothing. Each example records the strattack version that computed
it, so that results of two releases are never mixed unnoticed. Stores written before either
column have NULL there.

Schema versions (``meta['schema']``, see :mod:`.sqlite_store`): 1 is the layout below with text
metadata (0.1.0; earlier files may lack ``label``, ``settings`` or ``device``); 2 has every
column of 0.1.0; 3 holds metadata as JSON (``bundled`` a bool, ``weights`` None or a path,
``group_size`` a number); 4 adds ``examples.version``.
"""
from __future__ import annotations

import json
import math
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .sqlite_store import (Migration, MetaValue, SQLiteStore, StoreError, io_error,
                           optional_text, table_columns, truth_text)

__all__ = ["ExampleRecord", "ResultStore", "StoreError", "attack_key", "merge_stores",
           "LOCATION_KEYS", "STORE_NAME"]

#: The store of a run folder (a shard writes its own, see ``config.shard_store_name``).
STORE_NAME = "results.sqlite"

#: Columns of ``examples`` in table order (``device`` and ``version`` last: older stores gain
#: them by migrations).
EXAMPLE_COLUMNS = ("attack", "image", "target", "true_label", "success", "l0", "l1", "l2", "linf",
                   "groups", "forward_passes", "backward_passes", "seconds", "batch_size",
                   "shape", "perturbation", "device", "version")

#: ``meta`` entries that say where things were found, not what they are (e.g. the data folder):
#: they may differ between runs and shards (another machine, a moved folder), so they are not
#: compared when a store is reopened; the latest run's value is kept.
LOCATION_KEYS = frozenset({"data_root"})

def store_error(path: str | Path, err: BaseException) -> StoreError:
    """The StoreError for ``path`` that SQLite (or the OS) refused with ``err``: a full disk or
    a read-only folder named as such, anything else as a damaged file."""
    return io_error(Path(path), err) or damaged_error(path, err)


def damaged_error(path: str | Path, err: BaseException) -> StoreError:
    """The StoreError for a ``path`` that is not SQLite, truncated or corrupt."""
    return StoreError(f"{path} is not a readable strattack result store ({err}): it may be "
                      "truncated, corrupt or another kind of file. Restore it from a copy, or "
                      "run `strattack eval` into another output folder")


_TABLES_V1 = ("""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""", """
CREATE TABLE IF NOT EXISTS attacks (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, params TEXT NOT NULL,
    label TEXT,                    -- display name given by the run (e.g. from a config file)
    settings TEXT)                 -- JSON of every keyword the attack ran with, defaults included
""", """
CREATE TABLE IF NOT EXISTS examples (
    attack TEXT NOT NULL REFERENCES attacks(key),
    image INTEGER NOT NULL,        -- index of the image in the dataset
    target INTEGER NOT NULL,       -- target class (targeted) or -1 (untargeted)
    true_label INTEGER NOT NULL,
    success INTEGER NOT NULL,
    l0 REAL, l1 REAL, l2 REAL, linf REAL, groups REAL,
    forward_passes INTEGER, backward_passes INTEGER,
    seconds REAL,                  -- the batch's wall time divided by its size
    batch_size INTEGER,
    shape TEXT NOT NULL,           -- JSON shape of the perturbation
    perturbation BLOB NOT NULL,    -- zlib-compressed float32, C order
    device TEXT,                   -- where it ran, e.g. 'cpu (2 threads)'; NULL: not recorded
    PRIMARY KEY (attack, image, target))""")

#: How the metadata entries that are not text read from their text form (schema 1 and callers
#: that give text).
_TEXT_PARSERS = {"bundled": truth_text, "weights": optional_text, "group_size": int}

#: Schema changes, the n-th from version n to n + 1 (see the module's docstring).
MIGRATIONS = (
    Migration(tables=_TABLES_V1),
    # Files written before labels, settings and devices were kept.
    Migration(columns=(("attacks", "label TEXT"), ("attacks", "settings TEXT"),
                       ("examples", "device TEXT"))),
    Migration(meta_as_json=True, text_parsers=_TEXT_PARSERS),
    # The strattack version that computed each example; NULL: not recorded.
    Migration(columns=(("examples", "version TEXT"),)),
)


def attack_key(name: str, params: Mapping[str, Any]) -> str:
    """Canonical identifier of an attack configuration: ``name`` + sorted-key JSON params."""
    return f"{name} {json.dumps(dict(params), sort_keys=True, separators=(',', ':'))}"


@dataclass(frozen=True)
class ExampleRecord:
    """One finished (image, target) example of one attack."""

    image: int
    target: int
    true_label: int
    success: bool
    l0: float
    l1: float
    l2: float
    linf: float
    groups: float
    forward_passes: int
    backward_passes: int
    seconds: float
    batch_size: int
    perturbation: np.ndarray
    device: str | None = None      # where it ran; None in stores that did not record it
    version: str | None = None     # the strattack that computed it; None: not recorded


def _real(value: float | None) -> float:
    """SQLite stores a NaN (e.g. ``groups`` without a group size) as NULL: read it back as NaN."""
    return math.nan if value is None else float(value)


def _pack(delta: np.ndarray) -> tuple[str, bytes]:
    arr = np.ascontiguousarray(delta, dtype=np.float32)
    return json.dumps(list(arr.shape)), zlib.compress(arr.tobytes(), 6)


def _unpack(shape: str, blob: bytes) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), dtype=np.float32).reshape(json.loads(shape)).copy()


class ResultStore(SQLiteStore):
    """The SQLite file at ``path`` (created with its folder if missing).

    ``meta`` records what the examples refer to (dataset, model, ...). Opening an existing
    store with different ``meta`` raises instead of silently mixing two evaluations.
    ``read_only``: open an existing store without ever writing to it (reports, merges' sources,
    a shard's view of the unsharded store); it works in a read-only folder.
    A file that is not a usable store raises :class:`StoreError` naming it.
    """

    KIND = "result store"
    MIGRATIONS = MIGRATIONS
    TABLES = frozenset({"meta", "attacks", "examples"})
    TEXT_PARSERS = _TEXT_PARSERS
    LOCATION_KEYS = LOCATION_KEYS

    def __init__(self, path: str | Path, meta: Mapping[str, MetaValue] | None = None, *,
                 read_only: bool = False) -> None:
        super().__init__(path, meta, read_only=read_only)
        # A read-only store keeps the columns its version had: reads name only those.
        self._columns = {t: table_columns(self._db, t) for t in ("attacks", "examples")}

    def damaged(self, err: BaseException) -> StoreError:
        return damaged_error(self.path, err)

    def meta_clash(self, detail: str) -> ValueError:
        return ValueError(f"{self.path} holds a different evaluation ({detail}); "
                          "use another output directory")

    # ---------------------------------------------------------------- reading
    def attacks(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """attack key -> (name, params), in insertion order."""
        rows = self._db.execute("SELECT key, name, params FROM attacks ORDER BY rowid")
        return {k: (n, json.loads(p)) for k, n, p in rows}

    def settings(self) -> dict[str, dict[str, Any]]:
        """attack key -> every keyword it ran with (attacks registered before settings were
        kept are left out)."""
        if "settings" not in self._columns["attacks"]:    # an old store opened read-only
            return {}
        rows = self._db.execute("SELECT key, settings FROM attacks WHERE settings IS NOT NULL")
        return {k: json.loads(v) for k, v in rows}

    def labels(self) -> dict[str, str]:
        """attack key -> the label a run gave it (attacks without one are left out)."""
        if "label" not in self._columns["attacks"]:       # an old store opened read-only
            return {}
        rows = self._db.execute("SELECT key, label FROM attacks WHERE label IS NOT NULL")
        return dict(rows.fetchall())

    def example_columns(self) -> frozenset[str]:
        """Columns of ``examples`` in this file (a read-only store written by another version or
        program may lack some, e.g. ``perturbation``)."""
        return frozenset(self._columns["examples"])

    def done(self, key: str) -> set[tuple[int, int]]:
        """(image, target) pairs already finished for the attack ``key``."""
        rows = self._db.execute("SELECT image, target FROM examples WHERE attack = ?", (key,))
        return {(i, t) for i, t in rows}

    def count(self, key: str | None = None) -> int:
        if key is None:
            return self._db.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM examples WHERE attack = ?",
                                (key,)).fetchone()[0]

    def records(self, key: str, with_perturbation: bool = False) -> Iterator[ExampleRecord]:
        """The finished examples of ``key`` ordered by (image, target)."""
        device, version = (c if c in self._columns["examples"] else "NULL"
                           for c in ("device", "version"))
        cols = ("image, target, true_label, success, l0, l1, l2, linf, groups, forward_passes, "
                f"backward_passes, seconds, batch_size, {device}, {version}, shape, "
                + ("perturbation" if with_perturbation else "NULL"))
        rows = self._db.execute(f"SELECT {cols} FROM examples WHERE attack = ? "
                                "ORDER BY image, target", (key,))
        for *vals, device, version, shape, blob in rows:
            delta = (self._perturbation(key, int(vals[0]), int(vals[1]), shape, blob)
                     if with_perturbation else np.empty(0, np.float32))
            yield ExampleRecord(int(vals[0]), int(vals[1]), int(vals[2]), bool(vals[3]),
                                *map(_real, vals[4:9]), int(vals[9]), int(vals[10]),
                                _real(vals[11]), int(vals[12]), delta, device, version)

    def _perturbation(self, key: str, image: int, target: int, shape: str,
                      blob: bytes) -> np.ndarray:
        """The perturbation of one record; one that does not decode (damaged bytes) is a
        StoreError naming the record, so that the user can drop just that row."""
        try:
            return _unpack(shape, blob)
        except (zlib.error, ValueError, TypeError) as err:
            label = self.labels().get(key, key.split(" ", 1)[0])
            raise StoreError(
                f"{self.path} is damaged at the record of attack {label!r}, image {image}, "
                f"target {target}: its perturbation cannot be decoded ({err}). "
                "Restore the store from a copy, or delete that row of its examples "
                f"table (attack key {key!r}) and rerun the same `strattack eval` to redo "
                "it") from err

    # ---------------------------------------------------------------- writing
    def add_attack(self, name: str, params: Mapping[str, Any], label: str | None = None,
                   settings: Mapping[str, Any] | None = None) -> str:
        """Register an attack configuration (idempotent) and return its key; a ``label``
        replaces the one stored before. ``settings``: every keyword the attack runs with, its
        defaults included; if the store already holds this attack with other settings (the
        library's defaults changed between two runs of the same command), :class:`StoreError`,
        before anything is written: resuming would mix two configurations under one key. An
        attack whose examples were stored before settings were kept is left unverified."""
        key = attack_key(name, params)
        encoded = None if settings is None else json.dumps(dict(settings), sort_keys=True)
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO attacks (key, name, params) VALUES (?, ?, ?)",
                             (key, name, json.dumps(dict(params), sort_keys=True)))
            if encoded is not None:
                stored = self._db.execute("SELECT settings FROM attacks WHERE key = ?",
                                          (key,)).fetchone()[0]
                if stored is not None and stored != encoded:
                    raise StoreError(settings_clash(self.path, key, stored, encoded))
                # Examples computed before settings were kept: their settings are unknown, and
                # recording today's would vouch for them; the key stays unverified.
                if stored is None and not self._has_examples(key):
                    self._db.execute("UPDATE attacks SET settings = ? WHERE key = ?",
                                     (encoded, key))
            if label is not None:
                self._db.execute("UPDATE attacks SET label = ? WHERE key = ?", (label, key))
        return key

    def _has_examples(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM examples WHERE attack = ? LIMIT 1",
                                (key,)).fetchone() is not None

    def write(self, key: str, records: Iterable[ExampleRecord]) -> int:
        """Write finished examples in one transaction (all or nothing). Returns rows added;
        examples already present are left as they are."""
        rows = []
        for r in records:
            shape, blob = _pack(r.perturbation)
            rows.append((key, r.image, r.target, r.true_label, int(r.success), r.l0, r.l1, r.l2,
                         r.linf, r.groups, r.forward_passes, r.backward_passes, r.seconds,
                         r.batch_size, shape, blob, r.device, r.version))
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                f"INSERT OR IGNORE INTO examples ({', '.join(EXAMPLE_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(EXAMPLE_COLUMNS))})", rows)
            return self._db.total_changes - before


def settings_clash(path: Path, key: str, stored: str, new: str) -> str:
    """The error for one attack key run with two different settings."""
    old, now = json.loads(stored), json.loads(new)
    diff = ", ".join(f"{k}: {old.get(k, '(absent)')!r} -> {now.get(k, '(absent)')!r}"
                     for k in sorted(set(old) | set(now)) if old.get(k) != now.get(k))
    return (f"{path}: attack {key!r} was run with other settings than now ({diff}); the "
            "library's defaults probably changed since. Pin the old values in the config (or "
            "--set) to resume, or write to a new output folder.")


def _check_merged_settings(out: "ResultStore", src: Path, settings: str) -> None:
    """A shard whose attack ran with other settings than the destination's same key: error."""
    if settings == "NULL":
        return
    rows = out._db.execute("SELECT d.key, d.settings, s.settings FROM attacks d JOIN src.attacks s "
                           "ON d.key = s.key WHERE d.settings IS NOT NULL AND s.settings IS NOT "
                           "NULL AND d.settings != s.settings").fetchall()
    if rows:
        key, stored, new = rows[0]
        raise StoreError(settings_clash(src, key, stored, new) + f" (merging into {out.path})")


def merge_stores(dest: str | Path, sources: Iterable[str | Path]) -> dict[str, int]:
    """Copy every example of ``sources`` into ``dest`` (created from the first source's meta if
    missing). Idempotent: examples already in ``dest`` are kept. Returns rows added per source;
    a source listed twice (or under two spellings of its path) is merged once and appears once,
    so its count is what it added, not the 0 of a redundant second pass."""
    added: dict[str, int] = {}
    seen: set[Path] = set()
    for src in sources:
        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"store {src} not found")
        if src.resolve() == Path(dest).resolve():
            raise ValueError(f"{src} is the destination store itself; list only the shards")
        if src.resolve() in seen:
            continue
        seen.add(src.resolve())
        with ResultStore(src, read_only=True) as source:   # StoreError if it is none
            meta = source.typed_meta()
        with ResultStore(dest, meta) as out:
            out._db.execute("ATTACH DATABASE ? AS src", (str(src),))
            try:
                with out._transaction():
                    before = out._db.total_changes
                    src_cols = table_columns(out._db, "attacks", "src")
                    label = "label" if "label" in src_cols else "NULL"
                    settings = "settings" if "settings" in src_cols else "NULL"
                    _check_merged_settings(out, src, settings)
                    out._db.execute("INSERT OR IGNORE INTO attacks (key, name, params, label, "
                                    f"settings) SELECT key, name, params, {label}, {settings} "
                                    "FROM src.attacks")
                    if settings != "NULL":      # a new key, or one that had no examples
                        out._db.execute("UPDATE attacks SET settings = (SELECT s.settings FROM "
                                        "src.attacks s WHERE s.key = attacks.key) WHERE "
                                        "settings IS NULL AND NOT EXISTS (SELECT 1 FROM "
                                        "examples e WHERE e.attack = attacks.key)")
                    n_attacks = out._db.total_changes - before
                    # By column name: a source written before a column existed gives NULL.
                    have = table_columns(out._db, "examples", "src")
                    picked = ", ".join(c if c in have else "NULL" for c in EXAMPLE_COLUMNS)
                    out._db.execute(f"INSERT OR IGNORE INTO examples ({', '.join(EXAMPLE_COLUMNS)}) "
                                    f"SELECT {picked} FROM src.examples")
                    added[str(src)] = out._db.total_changes - before - n_attacks
            except sqlite3.DatabaseError as err:
                # A full disk or read-only folder fails the destination's writes; anything else
                # is the source's damage (e.g. a truncated shard: pages missing).
                raise (io_error(out.path, err) or damaged_error(src, err)) from err
            finally:
                out._db.execute("DETACH DATABASE src")
    return added
