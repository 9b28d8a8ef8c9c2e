"""What the result store and the transfer store share: opening an SQLite file (for writing, or
read-only without ever touching it), all-or-nothing transactions, typed metadata and schema
migrations keyed on a version number.

Metadata (the ``meta`` table) holds JSON values, so ``True``, ``None`` and ``2`` read back as
themselves. Each store lists its schema changes as :class:`Migration` steps: the n-th step takes
a file from version n to n + 1, and the version reached is recorded under ``meta['schema']``
in the same transaction as the step, so a run killed mid-migration resumes from the last
finished step. A store opened read-only is never written: its pending steps rewrite only this
connection's private (TEMP) copy of ``meta``, and its other tables are read by column name.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, Union

from ..errors import DataError

__all__ = ["META_VERSION_KEY", "MetaValue", "Migration", "SQLiteStore", "StoreError",
           "io_error", "optional_text", "truth_text"]

#: The ``meta`` key under which a store records its schema version.
META_VERSION_KEY = "schema"

#: A metadata value: what JSON holds without nesting.
MetaValue = Union[str, int, float, bool, None]

Self = TypeVar("Self", bound="SQLiteStore")

#: Reads a value from the text a version before typed metadata wrote for it (``str(value)``).
TextParser = Callable[[str], MetaValue]


class StoreError(DataError):
    """A file that cannot serve as a store: not SQLite, truncated, corrupt, another program's
    database, or written by a newer strattack."""


@dataclass(frozen=True)
class IOFailure:
    """A failure of the disk or the file system, not of the file: SQLite's message (and error
    name prefix) or the OSError numbers that mean it, what could not be done, what happened, and
    what to do."""

    messages: tuple[str, ...]
    names: tuple[str, ...]
    errnos: tuple[int, ...]
    action: str
    what: str
    remedy: str


#: What SQLite and the OS report when the disk or the folder, not the store, is at fault. SQLite
#: turns a write past a file-size limit (EFBIG) into a disk I/O error.
IO_FAILURES = (
    IOFailure(("database or disk is full",), ("SQLITE_FULL",), (errno.ENOSPC,), "write",
              "the disk is full", "free space and rerun to resume"),
    IOFailure(("disk I/O error",), ("SQLITE_IOERR",), (errno.EFBIG, errno.EIO),
              "read or write", "the disk or the file system refused a read or write (a full disk, a file-size "
              "limit such as `ulimit -f`, a failing drive)",
              "free space or raise the limit and rerun to resume"),
    IOFailure(("attempt to write a readonly database",), ("SQLITE_READONLY",),
              (errno.EROFS, errno.EACCES, errno.EPERM), "write",
              "the file or its folder is read-only",
              "make them writable (or copy the run folder somewhere writable) and rerun to resume"),
    IOFailure(("unable to open database file",), ("SQLITE_CANTOPEN",), (), "open",
              "the file or its folder cannot be opened (missing, read-only or not permitted)",
              "make the folder writable (or copy the run folder somewhere writable) and rerun"),
)


def io_failure(err: BaseException) -> IOFailure | None:
    """The I/O failure ``err`` reports (None: something else, e.g. a corrupt file)."""
    if isinstance(err, OSError):
        return next((f for f in IO_FAILURES if err.errno in f.errnos), None)
    if not isinstance(err, sqlite3.OperationalError):
        return None
    name = getattr(err, "sqlite_errorname", "")      # Python >= 3.11
    text = str(err)
    return next((f for f in IO_FAILURES if any(m in text for m in f.messages)
                 or any(name.startswith(n) for n in f.names)), None)


def io_error(path: Path, err: BaseException) -> StoreError | None:
    """The StoreError saying that the disk or folder of the store ``path`` failed with ``err``
    (its finished rows are intact: every write is one transaction), or None if ``err`` is no
    I/O failure."""
    failure = io_failure(err)
    if failure is None:
        return None
    return StoreError(f"could not {failure.action} the store {path}: {failure.what} ({err}); "
                      f"the finished examples in it are intact; {failure.remedy}")


def truth_text(text: str) -> bool:
    """The bool that ``str(value)`` wrote as ``text``."""
    if text not in ("True", "False"):
        raise ValueError(f"{text!r} is neither 'True' nor 'False'")
    return text == "True"


def optional_text(text: str) -> str | None:
    """The text, or None where ``str(None)`` wrote ``'None'``."""
    return None if text == "None" else text


@dataclass(frozen=True)
class Migration:
    """One schema change, from version n to n + 1. ``tables``: ``CREATE TABLE IF NOT EXISTS``
    statements; ``columns``: (table, column definition) pairs added where the table lacks the
    column; ``meta_as_json``: the metadata's text values become JSON, each key's text read by
    its parser in ``text_parsers`` (text by default)."""

    tables: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()
    meta_as_json: bool = False
    text_parsers: Mapping[str, TextParser] = field(default_factory=dict)


class SQLiteStore:
    """An SQLite file with a ``meta`` table whose schema follows ``MIGRATIONS``. ``TEXT_PARSERS``
    names the metadata entries that are not text and how their text form reads; a caller may
    give such a value as its text form (``'True'``, ``'None'``, ``'2'``) or as itself."""

    #: What the store is called in errors ("result store").
    KIND = "store"
    MIGRATIONS: tuple[Migration, ...] = ()
    #: The tables a file must have to be read without migrating it.
    TABLES: frozenset[str] = frozenset()
    TEXT_PARSERS: Mapping[str, TextParser] = {}
    #: Entries that say where things are, not what they are: never compared, the latest kept.
    LOCATION_KEYS: frozenset[str] = frozenset()

    def __init__(self, path: str | Path, meta: Mapping[str, object] | None = None, *,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise FileNotFoundError(f"no store {self.path}")
        try:
            self._db = self._connect()
        except (sqlite3.DatabaseError, OSError) as err:
            if isinstance(err, OSError) and io_failure(err) is None:
                raise
            raise self.unreadable(err) from err
        try:
            self._check_meta(meta or {})
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise self.unreadable(err) from err
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------- to give per store
    def unreadable(self, err: BaseException) -> StoreError:
        """The error for a file SQLite (or the OS) refused with ``err``: the disk or folder named
        as such, anything else as a damaged file."""
        return io_error(self.path, err) or self.damaged(err)

    def damaged(self, err: BaseException) -> StoreError:
        """The error for a file that is not SQLite, truncated or corrupt (``err`` says how)."""
        return StoreError(f"{self.path} is not a readable {self.KIND} ({err})")

    def foreign(self, tables: set[str]) -> StoreError:
        """The error for another program's SQLite database, which has ``tables``."""
        return StoreError(f"{self.path} is another program's SQLite database (tables "
                          f"{sorted(tables)}), not a strattack {self.KIND}; strattack leaves it "
                          "untouched: use another folder, or move the file away")

    @contextmanager
    def named_errors(self) -> Iterator[None]:
        """SQLite failures of the block as this store's StoreError (a full disk named as
        such), not as those of another store the caller reports on."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise self.unreadable(err) from err

    def meta_clash(self, detail: str) -> ValueError:
        """The error for metadata that disagrees with the file's (``detail`` says how)."""
        return ValueError(f"{self.path} holds other results ({detail})")

    # ------------------------------------------------------------- opening
    def _connect(self) -> sqlite3.Connection:
        """A connection to ``path`` at the current schema version."""
        return self._connect_read_only() if self.read_only else self._connect_writable()

    def _connect_read_only(self) -> sqlite3.Connection:
        """The file as it is, its metadata migrated in this connection's view only."""
        db = open_read_only(self.path)
        try:
            self._check_own(db)
            check_tables(db, self.TABLES)
            migrate_view(db, self.MIGRATIONS, self.path)
        except BaseException:
            db.close()
            raise
        return db

    def _connect_writable(self) -> sqlite3.Connection:
        """The file (created with its folder if missing), migrated on disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are opened here (BEGIN IMMEDIATE ... COMMIT).
        db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        try:
            self._check_own(db)         # before WAL mode, which rewrites the file's header
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            migrate(db, self.MIGRATIONS, self.path)
        except BaseException:
            db.close()
            raise
        return db

    def _check_own(self, db: sqlite3.Connection) -> None:
        """Refuse, untouched, a file with tables of its own but not the store's: writing the
        store's tables into another program's database would damage it."""
        found = user_tables(db)
        if found and not self.TABLES <= found:
            raise self.foreign(found)

    def close(self) -> None:
        self._db.close()

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self):
        """All of the block's writes or none (a batch is never half-written)."""
        if self.read_only:
            raise ValueError(f"{self.path} was opened read-only")
        return transaction(self._db)

    # ------------------------------------------------------------- metadata
    def typed_meta(self) -> dict[str, MetaValue]:
        """The metadata, each value as itself (``True``, ``None``, ``2``, text)."""
        return {k: json_value(k, v) for k, v in
                self._db.execute("SELECT key, value FROM meta").fetchall()}

    def meta(self) -> dict[str, MetaValue]:
        """The metadata, typed: the same as :meth:`typed_meta`, under the name readers use."""
        return self.typed_meta()

    def _check_meta(self, given: Mapping[str, object]) -> None:
        """Refuse ``given`` metadata that disagrees with the file's; record what is new (and,
        for location keys, the latest value)."""
        typed = {k: self.typed_value(k, v) for k, v in given.items()}
        stored = {k: json.dumps(v) for k, v in self.typed_meta().items()}
        clash = [f"{k}: store has {json.loads(stored[k])!r}, this run {v!r}"
                 for k, v in typed.items() if k in stored and stored[k] != json.dumps(v)
                 and k not in self.LOCATION_KEYS]
        if clash:
            raise self.meta_clash("; ".join(clash))
        if self.read_only:
            return
        rows = [(k, json.dumps(v)) for k, v in typed.items()]
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                 [r for r in rows if r[0] not in self.LOCATION_KEYS])
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [r for r in rows if r[0] in self.LOCATION_KEYS])

    def typed_value(self, key: str, value: object) -> MetaValue:
        """``value`` as the metadata entry ``key`` holds it: a text form of a typed entry read by
        its parser; anything that is no JSON scalar, or that its parser refuses, a ValueError.
        (The schema version, a number, is compared like any entry: a store's metadata copied
        into a new store agrees with it.)"""
        parse = int if key == META_VERSION_KEY else self.TEXT_PARSERS.get(key)
        if parse is not None and isinstance(value, str):
            try:
                return parse(value)
            except ValueError as err:
                raise ValueError(f"meta {key!r}: {value!r} is not a valid value ({err})") from err
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"meta {key!r}: {value!r} is a {type(value).__name__}; metadata "
                             "values are text, numbers, booleans or None")
        return value


def json_value(key: str, text: str) -> MetaValue:
    """The value of a metadata entry as the current schema holds it; text that is not JSON (a
    hand-edited file) makes the file unreadable, as a corrupt file would be."""
    try:
        return json.loads(text)
    except ValueError:
        raise sqlite3.DatabaseError(f"meta {key!r} holds {text!r}, which is not JSON") from None


# ------------------------------------------------------------------ connections
def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write (``mode=ro``), so reading works in a read-only folder and
    never migrates or otherwise touches a store that only a reader looks at. Where SQLite cannot
    create the WAL index next to it (a read-only folder), nobody can be writing the store, so it
    is opened as immutable."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=60)
    try:
        db.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.OperationalError:
        db.close()
        if os.access(path.parent, os.W_OK):
            raise
        db = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All of the block's writes or none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may have rolled back already (a full disk does), and a failing ROLLBACK must
        # not hide the error that caused it.
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def check_tables(db: sqlite3.Connection, tables: frozenset[str]) -> None:
    """An SQLite file without the store's ``tables`` (another program's database): refused."""
    found = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if not tables <= found:
        raise sqlite3.DatabaseError(f"an SQLite file without the tables {sorted(tables - found)}")


def user_tables(db: sqlite3.Connection) -> set[str]:
    """The tables of the file, SQLite's own (``sqlite_...``) left out."""
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")}


def table_columns(db: sqlite3.Connection, table: str, schema: str | None = None) -> set[str]:
    """The column names of ``table`` (empty if there is no such table) in the attached database
    ``schema`` (default: the first that has it, TEMP before the file)."""
    prefix = "" if schema is None else f"{schema}."
    return {row[1] for row in db.execute(f"PRAGMA {prefix}table_info({table})")}


# ------------------------------------------------------------------ migrations
def schema_version(db: sqlite3.Connection) -> int:
    """The version recorded in ``meta`` (0: no ``meta`` table, or no version in it). Its text is
    the same in both encodings of metadata (``'2'``)."""
    if not table_columns(db, "meta"):
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = ?", (META_VERSION_KEY,)).fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except ValueError:
        raise sqlite3.DatabaseError(f"its schema version {row[0]!r} is no number") from None


def check_not_newer(version: int, migrations: tuple[Migration, ...], path: Path) -> None:
    """A file of a schema this version does not know: a StoreError (reading it would guess)."""
    if version > len(migrations):
        raise StoreError(f"{path} has schema version {version}, newer than this strattack's "
                         f"{len(migrations)}: upgrade strattack to read it")


def migrate(db: sqlite3.Connection, migrations: tuple[Migration, ...], path: Path) -> None:
    """Apply the steps the file has not had, in order, each with its version in one transaction.
    The version is read again inside each transaction: two processes opening a file at once
    apply each step once."""
    check_not_newer(schema_version(db), migrations, path)
    while True:
        with transaction(db):
            version = schema_version(db)
            if version >= len(migrations):
                return
            apply_migration(db, migrations[version])
            record_version(db, version + 1)


def apply_migration(db: sqlite3.Connection, step: Migration) -> None:
    """One step on a writable file."""
    for statement in step.tables:
        db.execute(statement)
    for table, definition in step.columns:
        if definition.split()[0] not in table_columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")
    if step.meta_as_json:
        meta_as_json(db, step.text_parsers)


def meta_as_json(db: sqlite3.Connection, parsers: Mapping[str, TextParser]) -> None:
    """Each metadata text becomes the JSON of the value its key's parser reads from it (the
    version is recorded after the step)."""
    rows = db.execute("SELECT key, value FROM meta WHERE key != ?", (META_VERSION_KEY,)).fetchall()
    db.executemany("UPDATE meta SET value = ? WHERE key = ?",
                   [(json.dumps(parsed_text(parsers, k, v)), k) for k, v in rows])


def parsed_text(parsers: Mapping[str, TextParser], key: str, text: str) -> MetaValue:
    """The value the text form ``text`` of entry ``key`` stands for (text by default); a text
    its parser refuses makes the file unreadable, as a corrupt file would be."""
    try:
        return parsers.get(key, str)(text)
    except ValueError as err:
        raise sqlite3.DatabaseError(f"meta {key!r} holds {text!r}: {err}") from None


def record_version(db: sqlite3.Connection, version: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (META_VERSION_KEY, json.dumps(version)))


def migrate_view(db: sqlite3.Connection, migrations: tuple[Migration, ...], path: Path) -> None:
    """Migrate a read-only file's metadata in a TEMP copy of ``meta`` that shadows the file's
    (unqualified names find TEMP tables first): readers see current metadata, the file stays
    as it is. Tables and columns are not added; readers name only the columns the file has."""
    version = schema_version(db)
    check_not_newer(version, migrations, path)
    if version == len(migrations):
        return
    db.execute("CREATE TEMP TABLE meta AS SELECT key, value FROM main.meta")
    for n in range(version, len(migrations)):
        if migrations[n].meta_as_json:
            meta_as_json(db, migrations[n].text_parsers)
        record_version(db, n + 1)
