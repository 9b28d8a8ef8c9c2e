"""Which images an evaluation attacks: those the model classifies correctly (the paper attacks
only those; an attack on a misclassified image "succeeds" for free)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..data.evaluation_data import EvaluationData, load_evaluation_data
from ..data.image_folder import read_labels
from ..data.registry import DATASETS
from ..errors import ModelError
from ..validation import check_logits

__all__ = ["correctly_classified", "first_correct", "drop_misclassified"]


@torch.no_grad()
def correctly_classified(model: Callable[[Tensor], Tensor], inputs: Tensor, labels: Tensor,
                         limit: int | None = None, batch_size: int = 256) -> list[int]:
    """Indices (in order) of the first ``limit`` inputs the model classifies correctly.

    Scans in batches and stops as soon as enough are found, so choosing 100 images of a large
    dataset costs about 100 forward passes, not one per dataset image."""
    found: list[int] = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        logits = _first_logits(model, batch) if start == 0 else model(batch)
        ok = logits.argmax(1).cpu() == labels[start : start + batch_size].cpu()
        found += (ok.nonzero().squeeze(1) + start).tolist()
        if limit is not None and len(found) >= limit:
            return found[:limit]
    return found


def _first_logits(model: Callable[[Tensor], Tensor], batch: Tensor) -> Tensor:
    """The model's first call, checked as the attacks check it: a model that does not fit the
    images (e.g. CIFAR-10's on MNIST) is named with their shape and a hint, not torch's "mat1
    and mat2 shapes cannot be multiplied"; a tuple or non-tensor output is the model's fault."""
    try:
        return check_logits(model, batch)
    except TypeError as err:
        raise ModelError(str(err)) from err


def first_correct(model: Callable[[Tensor], Tensor], dataset: str, limit: int | None,
                  data_root: str | Path | None = None, bundled: bool = False,
                  download: bool = False, chunk: int = 64,
                  device: str | torch.device = "cpu", split: str = "test",
                  image_size: int = 224) -> EvaluationData:
    """The first ``limit`` images of ``dataset`` that ``model`` classifies correctly (all of
    them for ``None``); ``image_size``: the crop of an image folder. An image folder is decoded ``chunk`` images at a time and only as far
    as needed; a named dataset is loaded whole (it is already in memory-friendly arrays)."""
    if dataset in DATASETS or bundled or limit is None:
        data = load_evaluation_data(dataset, data_root, bundled, download, split=split,
                                    image_size=image_size)
        rows = correctly_classified(model, data.images.to(device), data.labels, limit)
        return data.subset(torch.tensor(rows, dtype=torch.long))

    size = len(read_labels(dataset)[0])
    parts: list[EvaluationData] = []
    found = 0
    for start in range(0, size, chunk):
        part = load_evaluation_data(dataset, ids=range(start, min(start + chunk, size)),
                                    image_size=image_size)
        rows = correctly_classified(model, part.images.to(device), part.labels, limit - found)
        parts.append(part.subset(torch.tensor(rows, dtype=torch.long)))
        found += len(rows)
        if found >= limit:
            break
    first = parts[0]
    return EvaluationData(first.name, torch.cat([p.images for p in parts]),
                          torch.cat([p.labels for p in parts]), torch.cat([p.ids for p in parts]),
                          first.class_names, first.group_size)


def drop_misclassified(model: Callable[[Tensor], Tensor], data: EvaluationData,
                       device: str | torch.device = "cpu") -> tuple[EvaluationData, list[int]]:
    """``data`` without the images ``model`` already misclassifies, and the ids of those.

    An attack on a misclassified image "succeeds" with a zero perturbation (untargeted) or
    measures something else than the paper's tables (targeted), so such images must not enter
    the statistics: the paper attacks correctly classified images only."""
    rows = correctly_classified(model, data.images.to(device), data.labels)
    kept = set(rows)
    dropped = [int(data.ids[r]) for r in range(len(data.ids)) if r not in kept]
    return data.subset(torch.tensor(rows, dtype=torch.long)), dropped
