"""Transferability (Table 3 of the StrAttack paper): the adversarial examples a `strattack eval`
run stored, evaluated on other models with forward passes only.

Definitions:

* **What is transferred.** Only the examples that succeeded on the source model (an example
  that did not fool its own model is no adversarial example); how many of each attack's stored
  examples that is goes into the transfer store (``sources``) and the printed notes.
* **Adversarial image.** ``clamp(x0 + delta, 0, 1)`` with ``delta`` the stored perturbation.
* **Success.** Targeted (target >= 0): *top-1* = the target is the receiving model's argmax,
  *top-5* = the target is among its ``min(5, classes)`` largest logits. Untargeted
  (target = -1): success = the prediction differs from the true label; top-5 is undefined (NaN).
* **Clean baseline.** The same criteria on the clean images of the same examples: how often
  the target already is the top-1 / in the top-5 (untargeted: the image already misclassified),
  so that transfer rates are read against chance (10 classes: a target is in the top 5 of a
  correctly classified image about 4 times in 9 by chance).
* **Another input size.** A receiving model with ``input_size`` (H, W) other than the stored
  images' gets ``x0 + delta`` resized with bilinear interpolation (``antialias=True``,
  ``align_corners=False``) and then clamped to [0, 1]. Resizing is linear, so the model sees
  ``resize(x0) + resize(delta)`` before the clamp: the perturbation is low-pass filtered (a
  downscale averages neighbouring pixels, fine structure and single-pixel changes are smeared
  out) and is no longer exactly the stored delta. A ``transform`` (e.g. grey to RGB) applies
  after the resize and clamp.
* **Resumable.** Results go to ``OUT/transfer.sqlite`` per batch, one transaction each, keyed
  by (attack, model, image, target): a rerun skips what is done and adds no duplicate.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.evaluation_data import EvaluationData
from ..errors import ConfigError, DataError
from .report import interval_text, store_labels
from .sqlite_store import MetaValue
from .store import ResultStore
from .finished_run import load_store_context
from .examples import UNTARGETED
from .transfer_store import TRANSFER_STORE_NAME, TransferRecord, TransferStore

__all__ = ["COLUMNS", "Receiver", "SourceExamples", "TransferSummary", "successful_examples",
           "transfer"]

COLUMNS = ("attack", "model", "examples", "top-1 %", "top-1 95% CI", "top-5 %", "top-5 95% CI",
           "clean top-1 %", "clean top-5 %")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Receiver:
    """A receiving model: any ``nn.Module`` taking [0, 1] images (on ``transfer``'s device).
    ``input_size``: its (H, W) when it differs from the stored images' (they are then resized,
    see the module docstring); ``transform``: applied after resize and clamp (e.g. grey to RGB);
    ``spec``: what it is, recorded in the store (default: its class)."""

    name: str
    model: nn.Module
    input_size: tuple[int, int] | None = None
    transform: Callable[[Tensor], Tensor] | None = None
    spec: str | None = None

    def description(self) -> str:
        kind = self.spec or f"{type(self.model).__module__}.{type(self.model).__qualname__}"
        return kind + (f" @ {self.input_size[0]}x{self.input_size[1]}" if self.input_size else "")

    def prepare(self, x: Tensor) -> Tensor:
        """``x`` (N, C, H, W) in [0, 1] as this model takes it."""
        if self.input_size is not None and tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(x, size=tuple(self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = x.clamp(0, 1)     # bilinear with antialiasing can overshoot [0, 1] at edges
        return self.transform(x) if self.transform is not None else x


@dataclass
class SourceExamples:
    """One attack's examples that succeeded on the source: (image, target) ``pairs``, their
    true labels and (N, C, H, W) perturbations; ``stored``: all its stored examples."""

    key: str
    label: str
    pairs: list[tuple[int, int]]
    true_labels: list[int]
    deltas: Tensor
    stored: int


@dataclass
class TransferSummary:
    """``rows``: one per source attack x receiving model (:data:`COLUMNS`); ``sources``: per
    attack label (stored examples, successes on the source); ``added``: rows written now."""

    rows: list[dict[str, object]]
    sources: dict[str, tuple[int, int]]
    added: int
    store: Path
    notes: list[str] = field(default_factory=list)


def successful_examples(store: ResultStore) -> list[SourceExamples]:
    """Per attack with stored examples, those that succeeded on the source model, with
    perturbations (none, for an attack that fooled nothing). DataError if the store has no
    perturbations or no successful example at all."""
    if "perturbation" not in store.example_columns():
        raise DataError(f"{store.path} stores no perturbations, so its adversarial examples "
                        "cannot be rebuilt; run `strattack eval` again into a new folder")
    found = [_successes(store, key, label) for key, label in store_labels(store).items()
             if store.count(key)]
    if not any(s.pairs for s in found):
        raise DataError(f"{store.path} has no example that succeeded on its model: nothing "
                        "to transfer")
    return found


def _successes(store: ResultStore, key: str, label: str) -> SourceExamples:
    records = list(store.records(key, with_perturbation=True))
    good = [r for r in records if r.success]
    deltas = (torch.stack([torch.from_numpy(r.perturbation) for r in good]) if good
              else torch.empty(0))
    return SourceExamples(key, label, [(r.image, r.target) for r in good],
                          [r.true_label for r in good], deltas, len(records))


def transfer(store: ResultStore, receivers: Sequence[Receiver], out: str | Path | None = None,
             *, batch_size: int = 64, device: str | torch.device = "cpu",
             data_root: str | Path | None = None, log: Log | None = None) -> TransferSummary:
    """Evaluate the successful examples of ``store`` on every receiver; results go to
    ``out``/transfer.sqlite (default: the store's folder), resumably. Everything that can fail
    (no perturbations, no successes, a model rejecting the input) fails before any work."""
    sources = successful_examples(store)
    _check_names(receivers)
    _, data = load_store_context(store, data_root)
    for receiver in receivers:
        validate_receiver(receiver, data, device)
    path = Path(out or store.path.parent) / TRANSFER_STORE_NAME
    with TransferStore(path, _meta(store, receivers)) as results, results.named_errors():
        transferable = [s for s in sources if s.pairs]
        added = sum(_run_source(results, src, receivers, data, batch_size, device, log)
                    for src in transferable)
        rows = [with_intervals({"attack": s.label, "model": r.name,
                                **results.rates(s.key, r.name, set(s.pairs))})
                for s in transferable for r in receivers]
    counts = {s.label: (s.stored, len(s.pairs)) for s in sources}
    return TransferSummary(rows, counts, added, path, _notes(counts, store))


def with_intervals(row: dict[str, object]) -> dict[str, object]:
    """``row`` plus the 95% Wilson intervals of its top-1 and top-5 rates over its examples
    (the transferred examples are the units), in percent; "n/a" where a rate is undefined."""
    n = int(row["examples"])  # type: ignore[call-overload]
    for name in ("top-1", "top-5"):
        rate = float(row[f"{name} %"]) / 100  # type: ignore[arg-type]
        row[f"{name} 95% CI"] = interval_text(rate, n)
    return row


def _check_names(receivers: Sequence[Receiver]) -> None:
    names = [r.name for r in receivers]
    if not names:
        raise ConfigError("give at least one receiving model")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"receiving models {twice} are given more than once")


def validate_receiver(receiver: Receiver, data: EvaluationData,
                      device: str | torch.device) -> None:
    """One forward pass on one clean image: a model that rejects the input (channels, size) or
    answers with another number of classes is a ConfigError naming it, before any work."""
    x = data.images[:1].to(device)
    try:
        with torch.no_grad():
            logits = receiver.model(receiver.prepare(x))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ConfigError(f"receiving model {receiver.name} rejects the {data.name} images "
                          f"{tuple(x.shape[1:])} ({type(err).__name__}: {err}); give its input "
                          "size or a transform") from err
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (1, data.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ConfigError(f"receiving model {receiver.name} returns {shape} for one image, not "
                          f"(1, {data.num_classes}) logits of the {data.name} classes")


def _meta(store: ResultStore, receivers: Sequence[Receiver]) -> dict[str, MetaValue]:
    """What the transfer store records: the source run and each receiving model's spec."""
    source = store.typed_meta()
    meta: dict[str, MetaValue] = {
        "source_run": str(store.path.parent.resolve()), "source_dataset": source.get("dataset", ""),
        "source_model": source.get("model", ""), "source_weights": source.get("weights")}
    return meta | {f"model {r.name}": r.description() for r in receivers}


def _run_source(results: TransferStore, src: SourceExamples, receivers: Sequence[Receiver],
                data: EvaluationData, batch_size: int, device: str | torch.device,
                log: Log | None) -> int:
    """Transfer one attack's examples to every receiver, batch by batch; rows added."""
    results.set_source(src.key, src.label, src.stored, len(src.pairs))
    added = 0
    for receiver in receivers:
        done = results.done(src.key, receiver.name)
        todo = [j for j, pair in enumerate(src.pairs) if pair not in done]
        if log is not None:
            log(f"{src.label} -> {receiver.name}: {len(todo)} of {len(src.pairs)} examples "
                "to evaluate")
        for start in range(0, len(todo), batch_size):
            records = _batch(src, todo[start : start + batch_size], receiver, data, device)
            added += results.write(src.key, receiver.name, records)
    return added


def _batch(src: SourceExamples, idx: list[int], receiver: Receiver, data: EvaluationData,
           device: str | torch.device) -> list[TransferRecord]:
    """Forward passes of one batch, adversarial and clean."""
    x0 = data.images[data.rows([src.pairs[j][0] for j in idx])].to(device)
    delta = src.deltas[idx].to(x0)
    if delta.shape != x0.shape:
        raise DataError(f"stored perturbations of {src.label} have shape "
                        f"{tuple(delta.shape[1:])}, the images {tuple(x0.shape[1:])}")
    targets = torch.tensor([src.pairs[j][1] for j in idx], device=device)
    labels = torch.tensor([src.true_labels[j] for j in idx], device=device)
    adv = _hits(receiver, (x0 + delta).clamp(0, 1), targets, labels)
    clean = _hits(receiver, x0, targets, labels)
    return [TransferRecord(src.pairs[j][0], src.pairs[j][1], src.true_labels[j], *adv[n],
                           *clean[n]) for n, j in enumerate(idx)]


def _hits(receiver: Receiver, x: Tensor, targets: Tensor,
          labels: Tensor) -> list[tuple[bool, bool | None]]:
    """Per example (top-1 success, top-5 success or None for untargeted) on ``x``."""
    with torch.no_grad():
        logits = receiver.model(receiver.prepare(x))
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    untargeted = targets == UNTARGETED
    top1 = torch.where(untargeted, top[:, 0] != labels, top[:, 0] == targets)
    top5 = (top == targets[:, None]).any(1)
    return [(bool(a), None if bool(u) else bool(b))
            for a, b, u in zip(top1.tolist(), top5.tolist(), untargeted.tolist())]


def _notes(counts: dict[str, tuple[int, int]], store: ResultStore) -> list[str]:
    model = store.typed_meta().get("model", "the source model")
    return [f"{label}: {ok} of {n} stored examples succeeded on {model}; only those are "
            "transferred" if ok else
            f"{label}: none of its {n} stored examples succeeded on {model}: nothing to "
            "transfer, so it has no row" for label, (n, ok) in counts.items()]
