"""Side-by-side run of attacks on the bundled MNIST / CIFAR-10 model (first N correctly
classified bundled test images), for the framework claim (BENCHMARKS.md §4 and §9): ADMM with
D = l2^2, tau = 0 vs cw_l2, and ADMM with D = elastic net, tau = 0 vs ead.

    python benchmarks/bench_baselines.py --images 20 --targets next --attack cw_l2 --attack admm_l2 \\
        --attack ead --attack admm_elastic
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import strattack
from strattack.evaluation import markdown_table, summarize
from strattack.models import load_pretrained
from _task import attack_task
from strattack.solver.groups import GroupSpec

ATTACKS = {
    "cw_l2": lambda m, x, t, y: strattack.cw_l2(m, x, t, targeted=True, true_labels=y),
    "ead": lambda m, x, t, y: strattack.ead(m, x, t, targeted=True, true_labels=y),
    "admm_l2": lambda m, x, t, y: strattack.admm_attack(m, x, t, targeted=True, true_labels=y,
                                                         tau=0.0, refine=False),
    "admm_elastic": lambda m, x, t, y, beta=1e-3: strattack.admm_attack(
        m, x, t, targeted=True, true_labels=y, tau=0.0, distortion="elastic", beta=beta,
        refine=False),
    "str_attack": lambda m, x, t, y: strattack.str_attack(m, x, t, targeted=True, true_labels=y),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--targets", choices=["all", "next"], default="next")
    p.add_argument("--attack", action="append", choices=sorted(ATTACKS), required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beta", type=float, default=1e-3, help="beta of admm_elastic")
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cpu", help="torch device of model and images, e.g. cuda")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_pretrained(a.dataset).to(a.device)
    x, t, y = attack_task(model, a.dataset, a.images, a.targets, a.device)
    groups = GroupSpec.for_inputs(x, 2, 2)
    rows = []
    for name in a.attack:
        start = time.perf_counter()
        res = (ATTACKS[name](model, x, t, y, beta=a.beta) if name == "admm_elastic"
               else ATTACKS[name](model, x, t, y))
        label = f"{name} (beta={a.beta:g})" if name == "admm_elastic" else name
        if x.is_cuda:
            torch.cuda.synchronize(x.device)  # wall time must include the queued GPU work
        row = summarize(label, res, groups, time.perf_counter() - start)
        rows.append(row)
        print(markdown_table([row]), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(row | {"dataset": a.dataset, "targets": a.targets}) + "\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
