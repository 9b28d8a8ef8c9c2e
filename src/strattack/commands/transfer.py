"""Transferability of a stored evaluation's adversarial examples to other models (Table 3 of
the paper): the library function behind ``strattack transfer``."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..evaluation.summary import markdown_table
from ..evaluation.transfer import COLUMNS, Receiver, TransferSummary
from ..evaluation.transfer import transfer as transfer_examples
from ..models.loading import is_user_model, load_model
from ..viz.transfer import plot_transfer
from .common import Say, TableResult, read_store, writable_folder
from .report import store_path

__all__ = ["TransferResult", "transfer"]

LEGEND = ("top-1: the target is the model's prediction (untargeted: the prediction is not the "
          "true label); top-5: the target is among its 5 largest logits; clean: the same on the "
          "clean images (chance)")


#: Kept as a name of its own for callers; the same result as every table command's.
TransferResult = TableResult


def transfer(run_dir: Path, models: Sequence[str], weights: Sequence[str] = (),
             out: Path | None = None, batch_size: int = 64, device: str = "cpu",
             threads: int | None = None, data_root: Path | None = None,
             log: Say | None = None, no_weights: bool = False) -> TransferResult:
    """Evaluate the successful examples of ``run_dir``'s store on the ``models`` (bundled names
    or ``module:callable``; ``weights``: ``FILE`` for a single model or ``SPEC=FILE``), store the
    results in ``out`` (default ``run_dir``)/transfer.sqlite and write transfer.csv,
    transfer.json and transfer.png there. A ``module:callable`` without weights is a
    ConfigError unless ``no_weights`` says that the network as the callable builds it is meant
    (as in eval)."""
    paired = _pair_weights(models, weights, no_weights)
    if threads:
        torch.set_num_threads(threads)   # beside other jobs, oversubscribed threads spin
    path = store_path(run_dir)
    out = writable_folder(out or run_dir, "transfer results")
    receivers = [_receiver(spec, w, device) for spec, w in paired]
    with read_store(path) as store:
        summary = transfer_examples(store, receivers, out, batch_size=batch_size,
                                    device=device, data_root=data_root, log=log)
    written = [*_write_table(summary, out, receivers, run_dir),
               plot_transfer(summary.rows, out / "transfer.png")]
    lines = [*summary.notes, markdown_table(summary.rows, COLUMNS), LEGEND]
    return TransferResult(lines, summary.rows, written)


def _pair_weights(models: Sequence[str], weights: Sequence[str],
                  no_weights: bool = False) -> list[tuple[str, str | None]]:
    """Each model spec with its weights file: ``SPEC=FILE``, or a bare ``FILE`` when only one
    model is given (as in `eval`). ConfigError for a module:callable without weights unless
    ``no_weights``, and for ``no_weights`` where no model is one (it would be ignored)."""
    found: dict[str, str] = {}
    for item in weights:
        spec, sep, file = item.partition("=")
        if sep and spec in models:
            found[spec] = file
        elif len(models) == 1:
            found[models[0]] = item
        else:
            raise ConfigError(f"--weights {item!r}: with several models write SPEC=FILE, SPEC "
                              f"one of {list(models)}")
    unweighted = [m for m in models if is_user_model(m) and m not in found]
    if unweighted and not no_weights:
        named = ", ".join(f"--model {m!r}" for m in unweighted)
        network = ("the network as the callable builds it, randomly initialised unless it "
                   "loads weights itself" if len(unweighted) == 1 else "the networks as the "
                   "callables build them, randomly initialised unless they load weights")
        raise ConfigError(f"{named} without --weights would transfer to {network}: give "
                          "--weights [SPEC=]FILE (.safetensors or a state dict), or "
                          "--no-weights if that is what you mean")
    if no_weights and not unweighted:
        raise ConfigError("--no-weights applies to a module:callable --model without --weights; "
                          "here there is none (a bundled model loads its own weights)")
    return [(m, found.get(m)) for m in models]


def _receiver(spec: str, weights: str | None, device: str) -> Receiver:
    """The model of ``spec`` as eval loads it; a model may declare the (H, W) it takes with an
    ``input_size`` attribute (the stored images are then resized to it)."""
    model = load_model(spec, weights, device=device)
    size = getattr(model, "input_size", None)
    name = spec if weights is None else f"{spec}@{Path(weights).name}"
    if weights is not None:
        described = f"{spec} weights={Path(weights).resolve()}"
    elif is_user_model(spec):   # --no-weights: say so wherever the receiver is named with its spec
        described = f"{spec} weights=none (the network as the callable builds it)"
    else:
        described = spec
    return Receiver(name, model, tuple(size) if size is not None else None, spec=described)


def _write_table(summary: TransferSummary, out: Path, receivers: Sequence[Receiver],
                 run_dir: Path) -> list[Path]:
    """transfer.csv (the table) and transfer.json (the table, the source counts and the
    models' specs; NaN as null)."""
    csv_path, json_path = out / "transfer.csv", out / "transfer.json"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(summary.rows)
    rows = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in summary.rows]
    sources = {a: {"stored": n, "transferred": ok} for a, (n, ok) in summary.sources.items()}
    doc = {"source_run": str(run_dir.resolve()), "sources": sources,
           "models": {r.name: r.description() for r in receivers}, "rows": rows}
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    return [csv_path, json_path, summary.store]
