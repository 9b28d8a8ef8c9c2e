"""A finished evaluation read back from its store: the examples that several attacks all got
right, with their perturbations, and the model and images the store refers to (from its
``meta``)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.evaluation_data import EvaluationData, load_evaluation_data
from ..models.loading import load_model
from .report import store_labels
from .store import ResultStore

__all__ = ["CommonExamples", "common_successes", "load_store_context", "load_store_data",
           "load_store_model", "shown_successes"]


class CommonExamples:
    """(image id, target) pairs adversarial under every chosen attack, sorted, and per attack
    label the (N, C, H, W) perturbations of those pairs."""

    def __init__(self, labels: list[str], pairs: list[tuple[int, int]],
                 deltas: dict[str, Tensor]) -> None:
        self.labels, self.pairs, self.deltas = labels, pairs, deltas

    def rows(self, data: EvaluationData) -> Tensor:
        """Row of every pair's image in ``data``."""
        return data.rows([i for i, _ in self.pairs])

    @property
    def targets(self) -> Tensor:
        return torch.tensor([t for _, t in self.pairs], dtype=torch.long)


def common_successes(store: ResultStore, labels: Sequence[str] | None = None,
                     limit: int | None = None) -> CommonExamples:
    """The first ``limit`` examples adversarial under all attacks ``labels`` (default: every
    attack with stored examples). Raises ValueError naming the available labels for an unknown
    one."""
    by_label = {v: k for k, v in store_labels(store).items()}
    chosen = list(labels) if labels else [a for a, k in by_label.items() if store.count(k)]
    unknown = [a for a in chosen if a not in by_label]
    if unknown:
        raise ValueError(f"attacks {unknown} not in {store.path}; it has {list(by_label)}")
    records = {a: {(r.image, r.target): r for r in
                   store.records(by_label[a], with_perturbation=True) if r.success}
               for a in chosen}
    pairs = sorted(set.intersection(*(set(v) for v in records.values()))) if records else []
    pairs = pairs[:limit] if limit is not None else pairs
    deltas = {a: (torch.stack([torch.from_numpy(records[a][k].perturbation) for k in pairs])
                  if pairs else torch.empty(0)) for a in chosen}
    return CommonExamples(chosen, pairs, deltas)


def shown_successes(store: ResultStore, limit: int) -> list[CommonExamples]:
    """What a report shows of ``store``'s adversarial examples: ``[the first limit adversarial
    under every attack]``; when there is none but several attacks (one fooled nothing, or they
    fooled different examples), one set per attack of its own first ``limit`` (empty for an
    attack without a successful example), so that each attack still shows its examples."""
    common = common_successes(store, limit=limit)
    if common.pairs or len(common.labels) < 2 or limit == 0:
        return [common]
    return [common_successes(store, [label], limit) for label in common.labels]


def load_store_context(store: ResultStore, data_root: str | Path | None = None,
                       device: str | torch.device = "cpu") -> tuple[nn.Module, EvaluationData]:
    """The model and the evaluation images a store was made with (per its ``meta``): only the
    images that have stored examples. ``data_root`` (default: the data folder `strattack eval`
    recorded in the store) is where the dataset files are."""
    data = load_store_data(store, data_root)
    return load_store_model(store, device), data


def load_store_data(store: ResultStore, data_root: str | Path | None = None) -> EvaluationData:
    """The images of :func:`load_store_context` alone, for a reader that needs no model (which
    may be a user's module that is not importable here)."""
    meta = store.typed_meta()
    # Only the images the store refers to (an image folder then decodes just those files).
    ids = sorted({i for key in store.attacks() for i, _ in store.done(key)})
    recorded = meta.get("data_root")
    try:
        root = data_root if data_root is not None else recorded
        return load_evaluation_data(meta["dataset"], root, meta.get("bundled") is True,
                                    ids=ids, split=meta.get("split", "test"),
                                    image_size=_stored_image_size(store))
    except FileNotFoundError as err:
        if data_root is not None or recorded is None:
            raise
        raise FileNotFoundError(f"{err} (that is where the evaluation found its data; give "
                                "--data-root where it is now)") from err


def _stored_image_size(store: ResultStore) -> int:
    """The side of the stored perturbations (an image folder is cropped to the model's input
    size by eval: 240 for EfficientNet-Lite1), 224 for an empty store."""
    for key in store.attacks():
        for record in store.records(key, with_perturbation=True):
            return int(record.perturbation.shape[-1])
    return 224


def load_store_model(store: ResultStore, device: str | torch.device = "cpu") -> nn.Module:
    """The model a store's examples were made on (its ``meta``: model spec and weights)."""
    meta = store.typed_meta()
    return load_model(meta["model"], meta.get("weights"), device=device)
