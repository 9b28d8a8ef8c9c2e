"""What several commands share: an output folder checked before any work, and a store opened
for reading whose SQLite failures name the file."""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..evaluation.store import ResultStore, store_error

__all__ = ["Say", "TableResult", "read_store", "store_errors", "writable_folder"]


@dataclass
class TableResult:
    """What a table-printing command returns: ``lines``, the Markdown tables and notes to print
    in order; ``rows``, the table's rows; ``written``, the files written."""

    lines: list[str]
    rows: list[dict[str, object]]
    written: list[Path]

Say = Callable[[str], None]


def writable_folder(folder: Path, what: str) -> Path:
    """``folder``, created if needed; DataError if it cannot be written (e.g. a run folder copied
    read-only), so that the command fails before any work rather than after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {folder} for the {what} ({err.strerror}); "
                        "choose another folder with -o/--out") from err
    if not os.access(folder, os.W_OK):
        raise DataError(f"{folder} is not writable, so the {what} cannot go there; "
                        "choose another folder with -o/--out")
    return folder


@contextmanager
def store_errors(path: Path) -> Iterator[None]:
    """SQLite failures of the block as a StoreError naming the store ``path`` (not SQLite,
    truncated, corrupt), instead of a bare sqlite3 one."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        raise store_error(path, err) from err


@contextmanager
def read_store(path: Path) -> Iterator[ResultStore]:
    """The store at ``path``, read-only (its folder may be read-only). A file SQLite cannot read
    fails on the first query, so the errors of the whole block go through
    :func:`store_errors`."""
    with store_errors(path), ResultStore(path, read_only=True) as store:
        yield store
