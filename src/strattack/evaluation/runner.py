"""Run attacks over many (image, target) examples, batch by batch, into a resumable store.

Every batch is one batched attack call; its examples are written in one transaction as soon as
it finishes (see :mod:`.store`). Re-running the same evaluation skips finished examples, so an
interrupted run resumes where it stopped and n shards (``shard=(i, n)``) can share the work.

Progress is counted in model passes (one image through the model), reported by every attack
from inside a batch (:mod:`strattack.progress`), so a batch of minutes still moves the bar. The
expected passes and seconds per example come from the examples of the same attack already in
the store (:class:`CostTally`), including the batches this run has just finished; an attack with
none yet is guessed at the passes per example of the others, so the bar has a total and an ETA
from the first finished batch on.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .. import __version__
from ..progress import PassHook, report_passes
from ..result import AttackResult
from ..solver.groups import GroupSpec
from . import defaults
from .metrics import perturbation_metrics
from .planning import AttackWork, finished_examples, work_left
from .attack_spec import ATTACKS, AttackSpec
from .store import ExampleRecord, ResultStore
from .examples import UNTARGETED, Example, in_shard

__all__ = ["ATTACKS", "AttackSpec", "CostTally", "RunSummary", "estimate_line", "run_evaluation"]

@dataclass
class RunSummary:
    """What one call did: examples newly attacked / skipped as finished, per attack label."""

    attacked: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    successes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def before(cls, work: Sequence[AttackWork]) -> "RunSummary":
        """The summary before any attack: what the stores have finished counts as skipped."""
        labels = [w.spec.display for w in work]
        return cls(attacked=dict.fromkeys(labels, 0), successes=dict.fromkeys(labels, 0),
                   skipped={w.spec.display: w.finished for w in work})

    def line(self) -> str:
        parts = [f"{k}: {self.attacked[k]} attacked ({self.successes[k]} adversarial), "
                 f"{self.skipped[k]} already done" for k in self.attacked]
        return "; ".join(parts) + f" in {self.seconds:.1f} s"


@dataclass
class CostTally:
    """What the finished examples of one attack cost: running sums of model forward passes
    (any device: the passes an example needs do not depend on where it ran) and of seconds
    (only examples run on ``device``, where a time says something about this run)."""

    device: str
    examples: int = 0
    passes: int = 0
    timed: int = 0
    seconds: float = 0.0

    def add(self, records: Iterable[ExampleRecord]) -> None:
        for r in records:
            self.examples += 1
            self.passes += r.forward_passes
            if r.device == self.device:
                self.timed += 1
                self.seconds += r.seconds

    @classmethod
    def from_stores(cls, stores: Iterable[ResultStore], key: str, device: str) -> "CostTally":
        tally = cls(device)
        for store in stores:
            tally.add(store.records(key))
        return tally

    @property
    def passes_per_example(self) -> float | None:
        return self.passes / self.examples if self.examples else None

    @property
    def seconds_per_example(self) -> float | None:
        return self.seconds / self.timed if self.timed else None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_line(left: Mapping[str, tuple[int, CostTally]]) -> str | None:
    """``"estimated time: ~12 min (from 40 finished examples of cw_l2)"``: seconds per example
    of the earlier examples on the same device times the examples left, per attack (``left``:
    attack label -> (examples to attack, its tally)); None when no attack with work left has
    timed examples."""
    total, known, unknown = 0.0, [], []
    for label, (count, tally) in left.items():
        if count == 0:
            continue
        per = tally.seconds_per_example
        if per is None:
            unknown.append(label)
            continue
        total += per * count
        known.append(f"{tally.timed} of {label}" if known else
                     f"{tally.timed} finished examples of {label}")
    if not known:
        return None
    line = f"estimated time: ~{_duration(total)} (from {', '.join(known)} on this device)"
    if unknown:
        line += f", plus {', '.join(unknown)}: no finished examples on this device yet"
    return line


def device_description(device: torch.device) -> str:
    """What a store records as the device of an example: the GPU's name, or the CPU threads
    torch uses (a run's seconds depend on both)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return str(device)


def _records(batch: Sequence[tuple[int, int]], true_labels: Tensor, result: AttackResult,
             groups: GroupSpec | None, seconds: float, device: str) -> list[ExampleRecord]:
    delta = result.perturbation.detach()
    metrics = {k: v.cpu() for k, v in perturbation_metrics(delta, groups).items()}
    delta_np = delta.float().cpu().numpy()
    n = len(batch)
    fwd = result.forward_passes.cpu() if result.forward_passes is not None else torch.zeros(n)
    bwd = result.backward_passes.cpu() if result.backward_passes is not None else torch.zeros(n)
    success = result.success.cpu()
    out = []
    for j, (image, target) in enumerate(batch):
        out.append(ExampleRecord(
            image=image, target=target, true_label=int(true_labels[j]),
            success=bool(success[j]), l0=float(metrics["l0"][j]), l1=float(metrics["l1"][j]),
            l2=float(metrics["l2"][j]), linf=float(metrics["linf"][j]),
            groups=float(metrics["groups"][j]) if "groups" in metrics else float("nan"),
            forward_passes=int(fwd[j]), backward_passes=int(bwd[j]), seconds=seconds / n,
            batch_size=n, perturbation=delta_np[j], device=device, version=__version__))
    return out


def run_evaluation(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    labels: Tensor,
    examples: Sequence[Example],
    specs: Sequence[AttackSpec],
    store: ResultStore,
    *,
    batch_size: int = defaults.BATCH_SIZE,
    shard: tuple[int, int] = defaults.SHARD,
    group_size: int | None = 2,
    stride: int | None = None,
    progress: bool = True,
    ids: Sequence[int] | None = None,
    finished_elsewhere: Sequence[ResultStore] = (),
    log: Callable[[str], None] | None = None,
    seed: int = defaults.SEED,
) -> RunSummary:
    """Attack every example of ``examples`` in this shard with every spec, skipping finished
    ones.

    Args:
        inputs, labels: the dataset (or the part of it the examples refer to), on the device the
            attack should run on.
        ids: the image identifier of each row of ``inputs`` (e.g. its test-set index), used in
            examples and in the store; default ``0..N-1``.
        examples: (image index, target class or ``UNTARGETED``) pairs, e.g. from
            :func:`~strattack.evaluation.examples.make_examples`.
        store: where finished examples go (written per batch, atomically).
        group_size, stride: the groups used to count nonzero groups (``None``: not counted).
        finished_elsewhere: other stores of the same evaluation (read only); examples finished
            there are skipped too. A shard run uses it to skip what an earlier unsharded run
            in the same folder already did, so a run can be split into shards part-way.
        progress: show a bar of model passes (with the examples done, of the current attack
            and of the run), with an ETA once any example is finished (in the store or by this
            run); "estimating…" before.
        log: where to say up front how long the run should take (see :func:`estimate_line`),
            when earlier examples in the store tell.
        seed: the run's seed. An attack with random draws (a ``seeds`` keyword, e.g. ifgsm's
            random start) gets one seed per example from (seed, image, target)
            (:func:`~strattack.evaluation.examples.example_seed`), so an example's result does
            not depend on the batch size, the shard or the Ray task it runs in.
    """
    groups = (GroupSpec(*inputs.shape[-3:], group_size, stride or group_size)
              if group_size else None)
    mine = [t for t in examples if in_shard(*t, shard)]
    # Checked before anything is written to the store.
    row_of = {int(i): r for r, i in enumerate(ids if ids is not None else range(len(inputs)))}
    missing = sorted({i for i, _ in mine if i not in row_of})
    if missing:
        raise ValueError(f"examples refer to images {missing[:10]} that are not in the inputs")
    work = work_left(store, specs, mine, finished_elsewhere)
    summary = RunSummary.before(work)
    keys = [w.key for w in work]
    todo = {w.key: w.left for w in work}
    device = inputs.device
    device_name = device_description(device)
    labels = labels.to(device)
    stores = [store, *finished_elsewhere]
    costs = {key: CostTally.from_stores(stores, key, device_name) for key in keys}
    left = {key: len(todo[key]) for key in keys}
    if log is not None:
        line = estimate_line({s.display: (left[k], costs[k]) for s, k in zip(specs, keys)})
        if line:
            log(line)
    start_all = time.perf_counter()
    bar = _progress(progress, _expected_passes(left, costs))
    try:
        for spec, key in zip(specs, keys):
            pending, pos = todo[key], 0
            while pos < len(pending):
                # Another process writing the same store (e.g. a helper run for one attack)
                # may have finished some of these meanwhile: never attack them twice.
                finished = finished_examples(key, stores)
                batch, pos, skipped = _next_batch(pending, pos, finished, batch_size)
                summary.skipped[spec.display] += skipped
                left[key] -= skipped
                if bar is not None:
                    _show_progress(bar, spec.display, key, todo, left, costs)
                if not batch:
                    continue
                rows = torch.tensor([row_of[i] for i, _ in batch], device=device)
                records = _attack_batch(model, inputs[rows], labels[rows], batch, spec, bar,
                                        groups, device_name, seed)
                store.write(key, records)
                costs[key].add(records)          # later batches' estimates learn from it
                left[key] -= len(batch)
                summary.attacked[spec.display] += len(batch)
                summary.successes[spec.display] += sum(r.success for r in records)
            if bar is not None:
                _show_progress(bar, spec.display, key, todo, left, costs)
    finally:
        if bar is not None:
            bar.close()
        summary.seconds = time.perf_counter() - start_all
    return summary


def _next_batch(pending: Sequence[tuple[int, int]], pos: int, finished: set[tuple[int, int]],
                batch_size: int) -> tuple[list[tuple[int, int]], int, int]:
    """Up to ``batch_size`` examples of ``pending`` from ``pos`` on that are not ``finished``:
    (batch, next position, examples skipped as finished on the way)."""
    batch, skipped = [], 0
    while pos < len(pending) and len(batch) < batch_size:
        if pending[pos] in finished:
            skipped += 1
        else:
            batch.append(pending[pos])
        pos += 1
    return batch, pos, skipped


def _attack_batch(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                  batch: Sequence[tuple[int, int]], spec: AttackSpec, bar: Any,
                  groups: GroupSpec | None, device_name: str, seed: int) -> list[ExampleRecord]:
    """One batched attack call on the examples ``batch`` (images x, true labels y), timed, as
    store records."""
    target = torch.tensor([t for _, t in batch], device=x.device)
    untargeted = bool((target == UNTARGETED).all())
    if not untargeted and (target == UNTARGETED).any():
        raise ValueError("a batch mixes targeted and untargeted examples")
    seeds = spec.seeds(batch, seed)
    start = time.perf_counter()
    # Every model pass inside the attack moves the bar (bar.update is cheap and redraws at most
    # ~10 times a second). Without a bar, a caller's hook stays.
    with report_passes(_advance(bar)) if bar is not None else nullcontext():
        if untargeted:
            result = spec.attack.run(model, x, y, spec.config, targeted=False, **seeds)
        else:
            result = spec.attack.run(model, x, target, spec.config, targeted=True,
                                     true_labels=y, **seeds)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)  # the seconds must include queued GPU work
    seconds = time.perf_counter() - start
    return _records(batch, y.cpu(), result, groups, seconds, device_name)


def _advance(bar: Any) -> PassHook:
    """``bar.update``; a total the passes outrun (a first guess from another attack was too
    low) is dropped until the batch ends and re-estimates it, instead of showing over 100 %."""
    def hook(images: int) -> None:
        bar.update(images)
        if bar.total is not None and bar.n > bar.total:
            bar.total = None
    return hook


def _expected_passes(left: Mapping[str, int], costs: Mapping[str, CostTally]) -> float | None:
    """Model passes the examples still to attack should take (including the batch about to
    start), or None while no attack has a finished example to go by. An attack without finished
    examples of its own is guessed at the passes per example of all finished examples, so the
    bar has a total from the first finished batch on; its own batches then replace the guess."""
    guess = _pooled_passes_per_example(costs.values())
    total = 0.0
    for key, count in left.items():
        if count == 0:
            continue
        own = costs[key].passes_per_example
        per = own if own is not None else guess
        if per is None:
            return None
        total += per * count
    return total


def _pooled_passes_per_example(tallies: Iterable[CostTally]) -> float | None:
    """Passes per example over the finished examples of every attack; None without any."""
    examples = passes = 0
    for tally in tallies:
        examples += tally.examples
        passes += tally.passes
    return passes / examples if examples else None


def _show_progress(bar: Any, label: str, key: str, todo: Mapping[str, Sequence[Example]],
                   left: Mapping[str, int], costs: Mapping[str, CostTally]) -> None:
    """At a batch boundary: the bar's total re-estimated as the passes made so far plus those
    expected for the rest (None: no estimate yet, so the bar counts without one), and the
    examples done of the current attack (``key``, named ``label``) and of the whole run."""
    passes_left = _expected_passes(left, costs)
    bar.total = None if passes_left is None else bar.n + round(passes_left)
    of, everything = len(todo[key]), sum(len(examples) for examples in todo.values())
    note = (f"{label}: {of - left[key]}/{of} examples, "
            f"{everything - sum(left.values())}/{everything} in all")
    bar.set_postfix_str(note + (", estimating…" if passes_left is None else ""), refresh=False)
    bar.refresh()


def _progress(enabled: bool, total: float | None) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # Unit: one image through the model (the unit of the store's forward_passes).
    return tqdm(total=None if total is None else round(total), unit="pass", unit_scale=True,
                dynamic_ncols=True, smoothing=0.1)
