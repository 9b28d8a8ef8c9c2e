"""StrAttack against a dense l2 baseline on a few bundled images, as a table and a Fig. 2-style
figure: the library function behind ``strattack demo``."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import admm_attack
from ..data import load_samples
from ..data.registry import DATASETS
from ..evaluation import markdown_table, summarize
from ..models import load_pretrained
from ..solver.groups import GroupSpec
from ..viz import plot_attack_comparison

__all__ = ["DemoResult", "demo"]

#: The compared runs: label -> admm_attack keywords (tau = 0 leaves only the dense l2 term).
RUNS: dict[str, dict[str, Any]] = {
    "StrAttack": dict(group_size=2, stride=2),
    "dense l2 (ADMM, tau=0)": dict(tau=0.0, refine=False),
}
LEGEND = ("norms: means over successful examples; l0 counts changed entries; groups = nonzero "
          "2x2 groups; passes = model forward + backward passes per example")


@dataclass
class DemoResult:
    """``lines``: what the images are, the comparison table and its legend, to print;
    ``rows``: the table's rows; ``figure``: the PNG written."""

    lines: list[str]
    rows: list[dict[str, Any]]
    figure: Path


def demo(dataset: str = "mnist", num_images: int = 5, target_offset: int = 1,
         output: Path = Path("strattack-demo.png"), device: str = "cpu",
         threads: int | None = None) -> DemoResult:
    """Attack the first ``num_images`` correctly classified bundled test images of ``dataset``
    toward (label + ``target_offset``) mod 10 with both runs; write the figure to ``output``.
    ``threads``: torch CPU threads (None: torch's default)."""
    if threads:
        torch.set_num_threads(threads)  # beside other jobs, oversubscribed threads spin
    torch.manual_seed(0)
    info = DATASETS[dataset]
    model = load_pretrained(dataset, device=device)
    x, y, ids = _correct_samples(model, dataset, num_images, device)
    targets = (y + target_offset) % info.num_classes
    groups = GroupSpec.for_inputs(x, 2, 2)
    rows, figure_inputs = [], {}
    for name, kwargs in RUNS.items():
        row, adv = _run(model, x, y, targets, groups, name, initial_const=info.initial_const,
                        **kwargs)
        rows.append(row)
        figure_inputs[name.split(" ")[0]] = (adv, _class_names(model, adv, info.class_names))
    captions = [f"{info.class_names[a]} -> {info.class_names[b]}"
                for a, b in zip(y.tolist(), targets.tolist())]
    figure = plot_attack_comparison(x, captions, figure_inputs, groups, output,
                                    title=f"StrAttack vs dense l2 on {dataset} (2x2 groups)")
    header = (f"{dataset}: attacking {len(x)} bundled test images (test-set indices {ids}) "
              f"toward target = label + {target_offset}")
    return DemoResult([header, markdown_table(rows), LEGEND], rows, figure)


def _correct_samples(model: nn.Module, dataset: str, num: int,
                     device: str) -> tuple[Tensor, Tensor, list[int]]:
    """The first ``num`` bundled images the model classifies correctly, their labels and
    test-set indices (an attack on a misclassified one succeeds for free)."""
    images, labels, indices = load_samples(dataset)
    images, labels = images.to(device), labels.to(device)
    with torch.no_grad():
        correct = (model(images).argmax(1) == labels).nonzero().squeeze(1)[:num]
    return images[correct], labels[correct], indices[correct.cpu()].tolist()


def _run(model: nn.Module, x: Tensor, y: Tensor, targets: Tensor, groups: GroupSpec, name: str,
         **kwargs: Any) -> tuple[dict[str, Any], Tensor]:
    """One targeted ADMM run: its summary row (timed) and adversarial examples."""
    start = time.perf_counter()
    res = admm_attack(model, x, targets, targeted=True, true_labels=y, **kwargs)
    return summarize(name, res, groups, time.perf_counter() - start), res.adv


def _class_names(model: nn.Module, x: Tensor, names: tuple[str, ...]) -> list[str]:
    with torch.no_grad():
        return [names[p] for p in model(x).argmax(1).tolist()]
