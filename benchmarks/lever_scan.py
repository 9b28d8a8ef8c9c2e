"""One str_attack call per JSON argument on the MNIST speed task (BENCHMARKS.md §11).

Task: bundled MNIST model, first 20 correctly classified bundled test images, target =
(label + 1) mod 10, one batch. Passes are counted by forward / full-backward hooks on the model.

    python benchmarks/lever_scan.py '{}' '{"tau": 2.0, "binary_search_steps": 5}' ...
    python benchmarks/lever_scan.py --dataset=cifar10 '{"tau": 0.5}'     # the CIFAR-10 model
"""
from __future__ import annotations

import json
import sys
import time

import torch

from _task import attack_task
from strattack import str_attack
from strattack.models import load_pretrained


def main(settings: list[str], dataset: str = "mnist") -> None:
    torch.set_num_threads(1)
    model = load_pretrained(dataset)
    seen = {"f": 0, "b": 0}
    model.register_forward_hook(lambda m, i, o: seen.__setitem__("f", seen["f"] + o.shape[0]))
    model.register_full_backward_hook(
        lambda m, gi, go: seen.__setitem__("b", seen["b"] + go[0].shape[0]))
    x, t, _ = attack_task(model, dataset, 20, "next")
    for line in settings:
        kw = json.loads(line)
        seen.update(f=0, b=0)
        start = time.perf_counter()
        r = str_attack(model, x, t, targeted=True, **kw)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            ok = model(r.adv).argmax(1) == t
        d = (r.adv - x).flatten(1)
        l0 = (d.abs() > 1e-10).sum(1).float()[ok].mean().item()
        l2 = d.norm(dim=1)[ok].mean().item()
        print(f"| `{json.dumps(kw)}` | {ok.float().mean() * 100:.1f} | {l0:.1f} | {l2:.3f} | "
              f"{(seen['f'] + seen['b']) / len(x):.1f} | {seconds / len(x):.2f} |", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    datasets = [a.split("=", 1)[1] for a in args if a.startswith("--dataset=")]
    main([a for a in args if not a.startswith("--dataset=")], *datasets[:1])
