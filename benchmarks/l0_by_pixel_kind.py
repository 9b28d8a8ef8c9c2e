"""Where do an attack's changed pixels lie: on entries the clean image has exactly at 0 or 1
(the box bounds, where C&W's tanh variable has a vanishing gradient) or elsewhere?

Reads a `strattack eval` store (each attack's successful examples) and the images it refers to.

    python benchmarks/l0_by_pixel_kind.py runs/table1_mnist --data-root data
"""
from __future__ import annotations

import argparse

import torch

from strattack.evaluation.report import store_labels
from strattack.evaluation.store import ResultStore
from strattack.evaluation.finished_run import load_store_context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threshold", type=float, default=1 / 255,
                        help="second count: only |delta| above this (default 1/255)")
    args = parser.parse_args()
    with ResultStore(f"{args.run_dir}/results.sqlite") as store:
        _, data = load_store_context(store, args.data_root)
        print(f"| attack | examples | changed at 0/1 | changed elsewhere | entries at 0/1 | "
              f"same with \\|δ\\| > {args.threshold:.3g} |")
        print("|---|---|---|---|---|---|")
        for key, label in store_labels(store).items():
            recs = [r for r in store.records(key, with_perturbation=True) if r.success]
            if not recs:
                continue
            delta = torch.stack([torch.from_numpy(r.perturbation) for r in recs]).flatten(1).abs()
            x0 = data.images[data.rows([r.image for r in recs])].flatten(1)
            bound = (x0 == 0) | (x0 == 1)
            counts = []
            for t in (0.0, args.threshold):
                moved = delta > t
                counts.append(((moved & bound).sum(1).float().mean().item(),
                               (moved & ~bound).sum(1).float().mean().item()))
            print(f"| {label} | {len(recs)} | {counts[0][0]:.1f} | {counts[0][1]:.1f} | "
                  f"{bound.sum(1).float().mean().item():.1f} | "
                  f"{counts[1][0]:.1f} / {counts[1][1]:.1f} |")


if __name__ == "__main__":
    main()
