"""Two attacks of one result store compared example by example: on the examples both fooled,
the mean of pixel l0, l2, 4-connected clusters and d20 (8 x 8) for each, their ratio, and a 95%
bootstrap interval of the ratio over images (examples of an image resampled together); then
the worst case (each image's largest l2 over its targets, as Table 1) on the images both attacks
fooled at every target.

    python benchmarks/paired_compare.py runs/gse_cifar10 'StrAttack (clustered)' GSE [SKIP]

SKIP (default 0): leave out the store's first SKIP images (e.g. 20: the images the settings were
chosen on), to check that a result holds on the others.

`strattack report --ratio` divides each attack's mean over its own successes; where one attack
fails on hard examples its mean leaves them out, and this paired view does not.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from strattack.evaluation.report import (GROUP_COLUMNS, group_sparsity_measure, measure_records,
                                         store_labels)
from strattack.commands.common import read_store
from strattack.evaluation.store import STORE_NAME

MEASURES = ("pixel l0", "l2", "clusters", "d20")


def attack_key(store, label: str) -> str:
    """The store's key of the attack labelled ``label``."""
    return {v: k for k, v in store_labels(store).items()}[label]


def per_example(store, label: str) -> dict[tuple[int, int], dict[str, float]]:
    """(image, target) -> the measures, for the examples the attack fooled (the group measures
    as `strattack report` computes them)."""
    key = attack_key(store, label)
    records, measured = measure_records(store.records(key, with_perturbation=True),
                                        [group_sparsity_measure()])
    return {(r.image, r.target): {**{c: measured.of(r, c) for c in GROUP_COLUMNS}, "l2": r.l2}
            for r in records if r.success}


def fooled_everywhere(store, label: str) -> set[int]:
    """The images whose every stored example the attack fooled."""
    key = attack_key(store, label)
    missed: set[int] = set()
    seen: set[int] = set()
    for r in store.records(key):
        seen.add(r.image)
        if not r.success:
            missed.add(r.image)
    return seen - missed


def worst_l2(examples: dict[tuple[int, int], dict[str, float]], image: int) -> float:
    """The image's largest l2 over its (fooled) targets."""
    return max(v["l2"] for (i, _), v in examples.items() if i == image)


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, images: np.ndarray, draws: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) / mean(b), resampling images with replacement."""
    rng = np.random.default_rng(seed)
    ids = np.unique(images)
    rows = [np.flatnonzero(images == i) for i in ids]
    ratios = []
    for _ in range(draws):
        pick = np.concatenate([rows[j] for j in rng.integers(0, len(ids), len(ids))])
        ratios.append(a[pick].mean() / b[pick].mean())
    return tuple(np.percentile(ratios, [2.5, 97.5]))


def main() -> None:
    run, first, second = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    skip = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    with read_store(run / STORE_NAME) as store:
        a, b = per_example(store, first), per_example(store, second)
        everywhere = fooled_everywhere(store, first) & fooled_everywhere(store, second)
    left_out = set(sorted({i for i, _ in a.keys() | b.keys()})[:skip])
    a = {e: v for e, v in a.items() if e[0] not in left_out}
    b = {e: v for e, v in b.items() if e[0] not in left_out}
    both = sorted(a.keys() & b.keys())
    images = np.array([i for i, _ in both])
    print(f"{first} fooled {len(a)}, {second} {len(b)}, both {len(both)} examples "
          f"of {len(np.unique(images))} images")
    print(f"| measure | {first} | {second} | ratio | 95% CI (images resampled) |")
    print("|---|---|---|---|---|")
    for m in MEASURES:
        x, y = np.array([a[e][m] for e in both]), np.array([b[e][m] for e in both])
        low, high = bootstrap_ratio(x, y, images)
        print(f"| {m} | {x.mean():.4g} | {y.mean():.4g} | {x.mean() / y.mean():.3f} | "
              f"[{low:.3f}, {high:.3f}] |")
    ids = np.array(sorted(everywhere - left_out))
    x, y = (np.array([worst_l2(e, i) for i in ids]) for e in (a, b))
    low, high = bootstrap_ratio(x, y, ids)
    print(f"worst case on the {len(ids)} images both fooled at every target: l2 {x.mean():.4g} "
          f"against {y.mean():.4g}, ratio {x.mean() / y.mean():.3f} [{low:.3f}, {high:.3f}]")


if __name__ == "__main__":
    main()
