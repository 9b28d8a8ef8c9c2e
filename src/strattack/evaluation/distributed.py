"""An evaluation on a Ray cluster: the library function behind ``strattack eval --ray ADDRESS``.

The run is cut into hash shards (:func:`~.tasks.shard_of`, the split of ``--shard i/N``), one Ray
task each. A task attacks its shard into a store on its worker's own disk and returns the file;
the driver alone writes ``OUT/results.sqlite``, merging each shard as it arrives with the
idempotent :func:`~.store.merge_stores` (SQLite is not safe with several writers on a shared
filesystem, and workers need not share one).

Faults: a task whose worker dies is run again by Ray (``max_retries``) from scratch into a new
store, and only a finished task's store is merged, so no example is recorded twice. The driver
reads the store before it schedules anything, so a driver killed and restarted with the same
command schedules only the examples still missing.

One first task chooses the images and examples on a worker, so the driver needs neither the data
nor the device (a laptop may send work to GPU nodes); each shard task then loads only its own
images. Data and weights reach workers by path (the same absolute path on every node: shared
storage) or from the installed package (bundled models and images). ``ray`` (the ``[ray]``
extra) is imported only when a run uses it.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..errors import ConfigError
from ..models.loading import load_model
from .config import EvalConfig, check_device, shard_store_name
from .evaluate import Say, images_by_id, prepare, run_header, store_meta
from .runner import AttackSpec, RunSummary, device_description, run_evaluation
from .store import ExampleRecord, ResultStore, merge_stores
from .tasks import shard_of

__all__ = ["FAULT_ENV", "RayOptions", "TASKS_PER_SLOT", "evaluate_on_ray"]

#: Default tasks per task the cluster runs at once: examples differ a lot in cost and hash
#: shards are fixed in advance, so smaller shards keep every worker busy to the end.
TASKS_PER_SLOT = 4

#: Test-only fault hook: the path of a file. The first shard task to delete it (after writing
#: a batch) exits hard, like a worker killed mid-task; deleting is atomic, so it fires once.
FAULT_ENV = "STRATTACK_TEST_RAY_CRASH_ONCE"

_SPECIAL_ADDRESSES = ("local", "auto")
_POLL_SECONDS = 0.5          # how often the driver's progress bar asks the workers' counts
_CONNECT_SECONDS = 5.0

Examples = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RayOptions:
    """Where and how an evaluation runs on Ray.

    ``address``: ``local`` (start Ray on this machine), ``auto`` (the cluster this machine
    joined with ``ray start``), ``HOST:PORT`` (a head node, port 6379 by default) or
    ``ray://HOST:PORT`` (Ray Client, port 10001 by default). ``tasks``: shards (default:
    :data:`TASKS_PER_SLOT` x the tasks the cluster runs at once). ``cpus_per_task`` is also each
    task's torch threads; ``gpus_per_task`` may be a fraction (0.25: four tasks share a GPU).
    """

    address: str
    tasks: int | None = None
    gpus_per_task: float = 0.0
    cpus_per_task: int = 1
    max_retries: int = 3

    def __post_init__(self) -> None:
        _endpoint(self.address)
        if self.tasks is not None and self.tasks < 1:
            raise ConfigError(f"--ray-tasks must be >= 1, got {self.tasks}")
        if self.gpus_per_task < 0:
            raise ConfigError(f"--gpus-per-task must be >= 0, got {self.gpus_per_task}")
        if self.cpus_per_task < 1:
            raise ConfigError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")


def evaluate_on_ray(config: EvalConfig, options: RayOptions, log: Say = print,
                    warn: Say = print) -> RunSummary:
    """:func:`~.evaluate.evaluate` on a Ray cluster: the same store, written by this process
    only, and the same summary. Bad options, a missing ``ray`` and an unreachable address are
    ConfigErrors before any work."""
    _check_compatible(config, options)
    ray = _import_ray()
    endpoint = _endpoint(options.address)
    if endpoint is not None:
        _check_reachable(options.address, *endpoint)
    started = _connect(ray, options.address)
    try:
        return _evaluate(ray, config, options, log, warn)
    finally:
        if started:
            ray.shutdown()


# --- checks before any work ----------------------------------------------------------------

def _check_compatible(config: EvalConfig, options: RayOptions) -> None:
    if config.shard != (0, 1):
        raise ConfigError("--shard with --ray: Ray splits the run into its own shards "
                          "(--ray-tasks); leave --shard out")
    if config.threads is not None:
        raise ConfigError("--threads with --ray: give each task's torch threads with "
                          "--cpus-per-task")
    device = torch.device(config.device)
    if device.type == "cuda" and device.index is not None:
        raise ConfigError(f"--device {config.device} with --ray: use --device cuda; Ray gives "
                          "each task its GPU")
    if device.type == "cuda" and not options.gpus_per_task:
        raise ConfigError("--device cuda with --ray needs --gpus-per-task (e.g. 1, or 0.25 for "
                          "four tasks per GPU); Ray hides the GPUs from tasks without one")
    if device.type != "cuda" and options.gpus_per_task:
        raise ConfigError(f"--gpus-per-task with --device {config.device}: the tasks would hold "
                          "GPUs and compute elsewhere; add --device cuda")


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as err:
        raise ConfigError("--ray needs Ray, which is not installed: "
                          "pip install 'strattack[ray]'") from err
    return ray


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address, None for ``local`` and ``auto``."""
    if address in _SPECIAL_ADDRESSES:
        return None
    rest = address.removeprefix("ray://")
    host, colon, port = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")          # [::1]:6379
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536) or "/" in rest:
        raise ConfigError(f"--ray {address!r}: expected local, auto, HOST:PORT (a head node, "
                          "e.g. head:6379) or ray://HOST:PORT (Ray Client, e.g. "
                          "ray://head:10001)")
    return host, int(port)


def _check_reachable(address: str, host: str, port: int) -> None:
    """A quick TCP connection first: Ray itself retries an unreachable address for a minute
    before it fails."""
    try:
        socket.create_connection((host, port), timeout=_CONNECT_SECONDS).close()
    except OSError as err:
        raise ConfigError(f"--ray {address}: nothing answers at {host}:{port} "
                          f"({err.strerror or err}); start a cluster with `ray start --head` "
                          "(a ray:// address needs its Ray Client port, 10001 by default) or use "
                          "--ray local") from err


def _connect(ray: ModuleType, address: str) -> bool:
    """Connect to (or start) the Ray runtime; True if this call did, so it must shut it down.
    A process already connected (a Python caller's own ray.init) keeps its runtime."""
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address in _SPECIAL_ADDRESSES or address == current:
            return False
        raise ConfigError(f"--ray {address}: this process is already connected to the Ray "
                          f"cluster at {current}; use address 'auto' for it or call "
                          "ray.shutdown() first")
    kwargs: dict[str, Any] = {}
    if not address.startswith("ray://"):         # Ray Client takes fewer options
        kwargs["logging_level"] = logging.WARNING
    if address == "local":
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        raise ConfigError(f"--ray {address}: {err} (start a cluster with `ray start --head`, "
                          "or use --ray local)") from err
    return True


def _slots(ray: ModuleType, options: RayOptions) -> int:
    """Tasks the cluster runs at once: per live node, as many as its CPUs and GPUs hold."""
    slots = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fit = int(have.get("CPU", 0) // options.cpus_per_task)
        if options.gpus_per_task:
            fit = min(fit, int(have.get("GPU", 0) / options.gpus_per_task + 1e-6))
        slots += fit
    if not slots:
        total = ray.cluster_resources()
        raise ConfigError(f"no node of the Ray cluster can hold one task "
                          f"({_task_size(options)}; the cluster: {total.get('CPU', 0):g} CPU, "
                          f"{total.get('GPU', 0):g} GPU); lower --cpus-per-task or "
                          "--gpus-per-task")
    return slots


# --- the driver ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    """What a worker chose (as a local run would): the examples and what the log says."""

    dataset: str
    images: int
    tasks: list[tuple[int, int]]
    group_size: int
    device: str
    warnings: list[str]


@dataclass(frozen=True)
class _Shard:
    """One task's work: per attack, its examples of shard ``index`` of ``count`` still missing
    from the store."""

    index: int
    count: int
    todo: tuple[tuple[AttackSpec, Examples], ...]

    @property
    def examples(self) -> int:
        return sum(len(examples) for _, examples in self.todo)


@dataclass(frozen=True)
class _ShardResult:
    """What a finished task sends back: its store, whole, and what it did."""

    index: int
    store: bytes              # the shard's SQLite file
    summary: RunSummary


def _evaluate(ray: ModuleType, config: EvalConfig, options: RayOptions, log: Say,
              warn: Say) -> RunSummary:
    """Choose the examples on a worker, then attack those the store lacks, shard by shard."""
    slots = _slots(ray, options)
    count = options.tasks or TASKS_PER_SLOT * slots
    remote = _remote(ray, options)
    sent = _for_workers(config, options)
    plan: _Plan = _result(ray, remote(_plan).remote(sent))
    for line in plan.warnings:
        warn(line)
    log(run_header(config, plan.dataset, plan.images, len(plan.tasks),
                   f"ray {options.address}: {count} tasks, {slots} at once "
                   f"({_task_size(options)} each); device {plan.device}"))
    meta = store_meta(config, plan.group_size)
    summary, shards = _missing(config, meta, plan.tasks, count)
    left = sum(shard.examples for shard in shards)
    log(f"ray: {len(shards)} of {count} shards have examples to attack ({left}; "
        f"{sum(summary.skipped.values())} already in the store)")
    start = time.perf_counter()
    try:
        _run_shards(ray, remote, sent, meta, shards, summary, show_progress=config.progress)
    finally:
        summary.seconds = time.perf_counter() - start
    return summary


def _task_size(options: RayOptions) -> str:
    size = f"{options.cpus_per_task} CPU"
    return size + (f", {options.gpus_per_task:g} GPU" if options.gpus_per_task else "")


def _remote(ray: ModuleType, options: RayOptions) -> Callable[[Callable], Any]:
    """``fn`` as a Ray task holding one task's CPUs and GPUs, retried if its worker dies."""
    def remote(fn: Callable) -> Any:
        return ray.remote(fn).options(num_cpus=options.cpus_per_task,
                                      num_gpus=options.gpus_per_task,
                                      max_retries=options.max_retries)
    return remote


def _for_workers(config: EvalConfig, options: RayOptions) -> EvalConfig:
    """The configuration as workers get it: paths absolute (workers run in other folders, on
    other nodes), torch threads = the task's CPUs, no progress bar of their own."""
    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(path).absolute()

    dataset = config.dataset if config.named_dataset else str(Path(config.dataset).absolute())
    return replace(config, dataset=dataset, data_root=absolute(config.data_root),
                   weights=absolute(config.weights), threads=options.cpus_per_task,
                   progress=False)


def _missing(config: EvalConfig, meta: Mapping[str, str], tasks: list[tuple[int, int]],
             count: int) -> tuple[RunSummary, list[_Shard]]:
    """The store's attacks registered (in the configured order, as a local run does), what it
    lacks grouped by shard, and a summary that counts what it has as already done."""
    summary = RunSummary()
    todo: dict[int, list[tuple[AttackSpec, Examples]]] = {i: [] for i in range(count)}
    with ResultStore(config.store_path, meta) as store:
        for spec in config.attacks:
            done = store.done(store.add_attack(spec.name, dict(spec.params), spec.label,
                                               spec.settings))
            by_shard: dict[int, list[tuple[int, int]]] = {}
            for example in tasks:
                if example not in done:
                    by_shard.setdefault(shard_of(*example, count), []).append(example)
            for i, examples in by_shard.items():
                todo[i].append((spec, tuple(examples)))
            summary.attacked[spec.display] = summary.successes[spec.display] = 0
            summary.skipped[spec.display] = len(tasks) - sum(map(len, by_shard.values()))
    return summary, [_Shard(i, count, tuple(work)) for i, work in todo.items() if work]


def _run_shards(ray: ModuleType, remote: Callable[[Callable], Any], config: EvalConfig,
                meta: Mapping[str, str], shards: list[_Shard], summary: RunSummary, *,
                show_progress: bool) -> None:
    """Run every shard; merge each into the store as soon as it is back."""
    progress = ray.remote(num_cpus=0)(_Progress).remote() if show_progress else None
    task = remote(_run_shard)
    pending = {task.remote(config, shard, meta, progress): shard for shard in shards}
    bar = _bar(sum(shard.examples for shard in shards)) if progress is not None else None
    merged = 0
    try:
        with tempfile.TemporaryDirectory(prefix="strattack-ray-") as folder:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS)
                for ref in ready:
                    pending.pop(ref)
                    result: _ShardResult = _result(ray, ref)
                    _merge(config.store_path, Path(folder), result)
                    _add(summary, result.summary)
                    merged += sum(result.summary.attacked.values())
                if bar is not None:
                    running = [shard.index for shard in pending.values()]
                    bar.n = merged + ray.get(progress.examples.remote(running))
                    bar.refresh()
    except BaseException:       # an error or Ctrl-C: merged shards stay, the rest stops
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="example", dynamic_ncols=True)


def _result(ray: ModuleType, ref: Any) -> Any:
    """A task's return value; the library's own error if the task raised one."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, Exception):
            raise err.cause from None
        raise
    except ray.exceptions.RayError as err:      # e.g. a worker died more often than retried
        raise RuntimeError(f"a Ray task failed ({type(err).__name__}: {err}); the shards "
                           "merged so far are in the store: re-run the same command to "
                           "resume") from err


def _merge(dest: Path, folder: Path, result: _ShardResult) -> None:
    path = folder / f"shard-{result.index}.sqlite"
    path.write_bytes(result.store)
    try:
        merge_stores(dest, [path])
    finally:
        path.unlink()


def _add(total: RunSummary, part: RunSummary) -> None:
    for label, attacked in part.attacked.items():
        total.attacked[label] += attacked
        total.successes[label] += part.successes[label]


class _Progress:
    """Ray actor: the examples each running shard has finished (a retried shard counts again
    from 0, so the driver's bar never counts an example twice)."""

    def __init__(self) -> None:
        self._done: dict[int, int] = {}

    def report(self, shard: int, examples: int) -> None:
        self._done[shard] = examples

    def examples(self, shards: list[int]) -> int:
        return sum(self._done.get(shard, 0) for shard in shards)


# --- on the workers --------------------------------------------------------------------------

def _plan(config: EvalConfig) -> _Plan:
    """Check the device where the work will run, then choose the images and examples."""
    try:
        check_device(config.device)
    except ConfigError as err:
        raise ConfigError(f"--device on the Ray node {socket.gethostname()}: {err}") from err
    warnings: list[str] = []
    run = prepare(config, warnings.append)
    return _Plan(run.data.name, len(run.data.ids), run.tasks, run.data.group_size,
                 device_description(torch.device(config.device)), warnings)


def _run_shard(config: EvalConfig, shard: _Shard, meta: Mapping[str, str],
               progress: Any) -> _ShardResult:
    """Attack the shard's examples into a store in a temporary folder; return the file."""
    torch.set_num_threads(config.threads or 1)
    torch.manual_seed(config.seed)
    model = load_model(config.model_spec, config.weights, device=config.device)
    data = images_by_id(config, model, sorted({i for _, examples in shard.todo
                                               for i, _ in examples}))
    inputs = data.images.to(config.device)
    summary = RunSummary()
    with tempfile.TemporaryDirectory(prefix="strattack-shard-") as folder:
        path = Path(folder) / shard_store_name((shard.index, shard.count))
        with _ReportingStore(path, meta, _reporter(progress, shard.index)) as store:
            for spec, examples in shard.todo:
                part = run_evaluation(model, inputs, data.labels, examples, [spec], store,
                                      batch_size=config.batch_size,
                                      shard=(shard.index, shard.count),
                                      group_size=data.group_size, progress=False,
                                      ids=data.ids.tolist(), seed=config.seed)
                summary.attacked.update(part.attacked)
                summary.successes.update(part.successes)
        return _ShardResult(shard.index, _single_file(path), summary)


def _reporter(progress: Any, shard: int) -> Callable[[int], None]:
    if progress is None:
        return lambda examples: None
    return lambda examples: progress.report.remote(shard, examples)


class _ReportingStore(ResultStore):
    """A shard's store that reports the examples it holds after each batch (the driver's
    progress bar), where the test-only fault hook may end the worker."""

    def __init__(self, path: Path, meta: Mapping[str, str],
                 report: Callable[[int], None]) -> None:
        super().__init__(path, meta)
        self._report, self._written = report, 0
        report(0)

    def write(self, key: str, records: Iterable[ExampleRecord]) -> int:
        records = list(records)
        added = super().write(key, records)
        self._written += len(records)
        self._report(self._written)
        _fault_hook()
        return added


def _fault_hook() -> None:
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    try:
        os.unlink(marker)
    except FileNotFoundError:
        return
    os._exit(1)


def _single_file(path: Path) -> bytes:
    """The store as one self-contained file (in WAL mode recent pages may still be in the
    -wal file beside it)."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    return path.read_bytes()
