"""The driver of an evaluation on Ray: it connects, sends the work out shard by shard and alone
writes the run's store, merging each finished shard as it arrives."""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import ConfigError
from ..config import EvalConfig
from ..evaluate import Say, run_header, store_meta
from ..examples import Example, shard_of
from ..planning import AttackWork, work_left
from ..runner import AttackSpec, RunSummary
from ..store import ResultStore, merge_stores
from .options import (SPECIAL_ADDRESSES, TASKS_PER_SLOT, RayOptions, check_compatible,
                      check_reachable, import_ray, task_size)
from .worker import Chosen, Report, Shard, ShardResult, choose, run_shard

__all__ = ["evaluate_on_ray", "progress_reporter"]

_POLL_SECONDS = 0.5          # how often the driver's progress bar asks the workers' counts

Remote = Callable[[Callable], Any]


def evaluate_on_ray(config: EvalConfig, options: RayOptions, log: Say = print,
                    warn: Say = print) -> RunSummary:
    """:func:`~..evaluate.evaluate` on a Ray cluster: the same store, written by this process
    only, and the same summary. Bad options, a missing ``ray`` and an unreachable address are
    ConfigErrors before any work."""
    check_compatible(config, options)
    ray = import_ray()
    check_reachable(options.address)
    started = _connect(ray, options.address)
    try:
        return _evaluate(ray, config, options, log, warn)
    finally:
        if started:
            ray.shutdown()


def _connect(ray: ModuleType, address: str) -> bool:
    """Connect to (or start) the Ray runtime; True if this call did, so it must shut it down.
    A process already connected (a Python caller's own ray.init) keeps its runtime."""
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address in SPECIAL_ADDRESSES or address == current:
            return False
        raise ConfigError(f"--ray {address}: this process is already connected to the Ray "
                          f"cluster at {current}; use address 'auto' for it or call "
                          "ray.shutdown() first")
    try:
        ray.init(address=address, **_init_options(address))
    except ConnectionError as err:
        raise ConfigError(f"--ray {address}: {err} (start a cluster with `ray start --head`, "
                          "or use --ray local)") from err
    return True


def _init_options(address: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if not address.startswith("ray://"):         # Ray Client takes fewer options
        options["logging_level"] = logging.WARNING
    if address == "local":
        options["include_dashboard"] = False
    return options


def _slots(ray: ModuleType, options: RayOptions) -> int:
    """Tasks the cluster runs at once: per live node, as many as its CPUs and GPUs hold."""
    slots = sum(_fit(node.get("Resources", {}), options) for node in ray.nodes()
                if node.get("Alive"))
    if not slots:
        total = ray.cluster_resources()
        raise ConfigError(f"no node of the Ray cluster can hold one task "
                          f"({task_size(options)}; the cluster: {total.get('CPU', 0):g} CPU, "
                          f"{total.get('GPU', 0):g} GPU); lower --cpus-per-task or "
                          "--gpus-per-task")
    return slots


def _fit(resources: Mapping[str, float], options: RayOptions) -> int:
    """Tasks one node with ``resources`` holds at once."""
    fit = int(resources.get("CPU", 0) // options.cpus_per_task)
    if options.gpus_per_task:
        fit = min(fit, int(resources.get("GPU", 0) / options.gpus_per_task + 1e-6))
    return fit


def _evaluate(ray: ModuleType, config: EvalConfig, options: RayOptions, log: Say,
              warn: Say) -> RunSummary:
    """Choose the examples on a worker, then attack those the store lacks, shard by shard."""
    slots = _slots(ray, options)
    count = options.tasks or TASKS_PER_SLOT * slots
    remote = _remote(ray, options)
    sent = _for_workers(config, options)
    chosen: Chosen = _result(ray, remote(choose).remote(sent))
    for line in chosen.warnings:
        warn(line)
    log(run_header(config, chosen.dataset, chosen.images, len(chosen.examples),
                   f"ray {options.address}: {count} tasks, {slots} at once "
                   f"({task_size(options)} each); device {chosen.device}"))
    meta = store_meta(config, chosen.group_size)
    summary, shards = _shards_left(config, meta, chosen.examples, count)
    log(f"ray: {len(shards)} of {count} shards have examples to attack "
        f"({sum(shard.examples for shard in shards)}; "
        f"{sum(summary.skipped.values())} already in the store)")
    start = time.perf_counter()
    try:
        _run_shards(ray, remote, sent, meta, shards, summary, show_progress=config.progress)
    finally:
        summary.seconds = time.perf_counter() - start
    return summary


def _remote(ray: ModuleType, options: RayOptions) -> Remote:
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


def _shards_left(config: EvalConfig, meta: Mapping[str, str], examples: list[Example],
                 count: int) -> tuple[RunSummary, list[Shard]]:
    """What the store lacks (planned as a local run plans), grouped by shard, and a summary
    that counts what it has as already done."""
    with ResultStore(config.store_path, meta) as store:
        work = work_left(store, config.attacks, examples)
    return RunSummary.before(work), _by_shard(work, count)


def _by_shard(work: list[AttackWork], count: int) -> list[Shard]:
    """The shards with examples left: per attack, the examples left of each."""
    todo: dict[int, list[tuple[AttackSpec, tuple[Example, ...]]]] = {i: [] for i in range(count)}
    for attack in work:
        by_shard: dict[int, list[Example]] = {}
        for example in attack.left:
            by_shard.setdefault(shard_of(*example, count), []).append(example)
        for i, examples in by_shard.items():
            todo[i].append((attack.spec, tuple(examples)))
    return [Shard(i, count, tuple(part)) for i, part in todo.items() if part]


def _run_shards(ray: ModuleType, remote: Remote, config: EvalConfig, meta: Mapping[str, str],
                shards: list[Shard], summary: RunSummary, *, show_progress: bool) -> None:
    """Run every shard; merge each into the store as soon as it is back."""
    progress = ray.remote(num_cpus=0)(_Progress).remote() if show_progress else None
    task = remote(run_shard)
    pending = {task.remote(config, shard, meta, progress_reporter(progress, shard.index)): shard
               for shard in shards}
    bar = _bar(sum(shard.examples for shard in shards)) if progress is not None else None
    try:
        _collect(ray, pending, config.store_path, summary, bar, progress)
    except BaseException:       # an error or Ctrl-C: merged shards stay, the rest stops
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if bar is not None:
            bar.close()


def _collect(ray: ModuleType, pending: dict[Any, Shard], store: Path, summary: RunSummary,
             bar: Any, progress: Any) -> None:
    """Merge each shard as it finishes (``pending`` shrinks as they do); move the bar."""
    merged = 0
    with tempfile.TemporaryDirectory(prefix="strattack-ray-") as folder:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS)
            for ref in ready:
                pending.pop(ref)
                result: ShardResult = _result(ray, ref)
                _merge(store, Path(folder), result)
                _add(summary, result.summary)
                merged += sum(result.summary.attacked.values())
            if bar is not None:
                running = [shard.index for shard in pending.values()]
                bar.n = merged + ray.get(progress.examples.remote(running))
                # As the local bar: no rate, so no ETA, before the first example is back.
                bar.set_postfix_str("" if bar.n else "estimating…", refresh=False)
                bar.refresh()


def progress_reporter(progress: Any, shard: int) -> Report:
    """How the task of ``shard`` tells the driver's progress actor (None: no bar) its count."""
    if progress is None:
        return lambda examples: None
    return lambda examples: progress.report.remote(shard, examples)


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


def _merge(dest: Path, folder: Path, result: ShardResult) -> None:
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
