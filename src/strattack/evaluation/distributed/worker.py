"""What runs on the Ray workers: choosing the run's examples, and attacking one shard into a
store of its own that goes back to the driver as one file."""
from __future__ import annotations

import socket
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...models.loading import load_model
from ..config import EvalConfig, check_device, shard_store_name
from ..evaluate import images_by_id, prepare, set_up
from ..examples import Example
from ..runner import AttackSpec, RunSummary, device_description, run_evaluation
from ..store import ExampleRecord, ResultStore

__all__ = ["Chosen", "Report", "Shard", "ShardResult", "choose", "run_shard"]

#: Where a shard task says how many examples its store holds (after each batch).
Report = Callable[[int], None]


@dataclass(frozen=True)
class Chosen:
    """What a worker chose (as a local run would): the examples and what the log says."""

    dataset: str
    images: int
    examples: list[Example]
    group_size: int
    device: str
    warnings: list[str]


@dataclass(frozen=True)
class Shard:
    """One Ray task's work: per attack, its examples of shard ``index`` of ``count`` still
    missing from the store."""

    index: int
    count: int
    todo: tuple[tuple[AttackSpec, tuple[Example, ...]], ...]

    @property
    def examples(self) -> int:
        return sum(len(examples) for _, examples in self.todo)

    @property
    def image_ids(self) -> list[int]:
        return sorted({image for _, examples in self.todo for image, _ in examples})


@dataclass(frozen=True)
class ShardResult:
    """What a finished task sends back: its store, whole, and what it did."""

    index: int
    store: bytes              # the shard's SQLite file
    summary: RunSummary


def choose(config: EvalConfig) -> Chosen:
    """Check the device where the work will run, then choose the images and examples."""
    try:
        check_device(config.device)
    except ConfigError as err:
        raise ConfigError(f"--device on the Ray node {socket.gethostname()}: {err}") from err
    warnings: list[str] = []
    run = prepare(config, warnings.append)
    return Chosen(run.data.name, len(run.data.ids), run.examples, run.data.group_size,
                  device_description(run.device), warnings)


def run_shard(config: EvalConfig, shard: Shard, meta: Mapping[str, str],
              report: Report) -> ShardResult:
    """Attack the shard's examples into a store in a temporary folder; return the file."""
    with tempfile.TemporaryDirectory(prefix="strattack-shard-") as folder:
        path = Path(folder) / shard_store_name((shard.index, shard.count))
        with _ReportingStore(path, meta, report) as store:
            summary = _attack(config, shard, store)
        return ShardResult(shard.index, _single_file(path), summary)


def _attack(config: EvalConfig, shard: Shard, store: ResultStore) -> RunSummary:
    """Each attack of the shard on its examples, as a local run attacks them."""
    device = set_up(config)
    model = load_model(config.model_spec, config.weights, device=device)
    data = images_by_id(config, model, shard.image_ids)
    inputs, summary = data.images.to(device), RunSummary()
    for spec, examples in shard.todo:
        part = run_evaluation(model, inputs, data.labels, examples, [spec], store,
                              batch_size=config.batch_size, shard=(shard.index, shard.count),
                              group_size=data.group_size, progress=False,
                              ids=data.ids.tolist(), seed=config.seed)
        summary.attacked.update(part.attacked)
        summary.successes.update(part.successes)
    return summary


class _ReportingStore(ResultStore):
    """A shard's store that reports the examples it holds after each batch (the driver's
    progress bar)."""

    def __init__(self, path: Path, meta: Mapping[str, str], report: Report) -> None:
        super().__init__(path, meta)
        self._report, self._written = report, 0
        report(0)

    def write(self, key: str, records: Iterable[ExampleRecord]) -> int:
        records = list(records)
        added = super().write(key, records)
        self._written += len(records)
        self._report(self._written)
        return added


def _single_file(path: Path) -> bytes:
    """The store as one self-contained file (in WAL mode recent pages may still be in the
    -wal file beside it)."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    return path.read_bytes()
