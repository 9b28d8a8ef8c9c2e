"""Helpers shared by the dataset loaders."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

__all__ = ["default_data_root", "download_url", "first_dir_with"]

#: Environment variable naming the directory that holds the datasets.
DATA_ENV_VAR = "STRATTACK_DATA"


def default_data_root() -> Path:
    """Return the data root: ``$STRATTACK_DATA`` if set, else ``./data``.

    An environment variable lets scripts, the CLI and benchmarks share one data
    location without passing ``--data-root`` everywhere.
    """
    return Path(os.environ.get(DATA_ENV_VAR) or "./data")


def first_dir_with(candidates: list[Path], names: tuple[str, ...]) -> Path | None:
    """The first directory among ``candidates`` that holds every file in ``names``."""
    for d in candidates:
        if all((d / n).is_file() for n in names):
            return d
    return None


def download_url(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` atomically (write to a ``.part`` file, then rename).

    The atomic rename keeps an interrupted download from leaving a truncated
    file that a later run would mistake for a complete one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    req = urllib.request.Request(url, headers={"User-Agent": "strattack"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as f:
        shutil.copyfileobj(resp, f)
    tmp.replace(dest)
