"""Benchmark str_attack on the bundled MNIST / CIFAR-10 model and bundled test images.

Counts model passes twice: from the attack's own bookkeeping and from forward / full-backward
hooks on the model (independent check). Prints one Markdown row per configuration and appends
JSON records to --json.

Examples (the commands behind BENCHMARKS.md):
    python benchmarks/bench_strattack.py --images 50 --targets all --config nonoverlap
    python benchmarks/bench_strattack.py --images 20 --targets next --config nonoverlap
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from strattack import admm_attack
from strattack.evaluation import markdown_table, summarize
from strattack.models import load_pretrained
from _task import attack_task
from strattack.solver.groups import GroupSpec

CONFIGS = {
    "nonoverlap": dict(group_size=2, stride=2),
    "nonoverlap-norefine": dict(group_size=2, stride=2, refine=False),
    "overlap": dict(group_size=3, stride=2),
    "overlap-norefine": dict(group_size=3, stride=2, refine=False),
    "overlap-group": dict(group_size=3, stride=2, overlap="group"),
    "overlap-group-norefine": dict(group_size=3, stride=2, overlap="group", refine=False),
    "dense-tau0": dict(tau=0.0, refine=False),
}


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--images", type=int, default=50, help="first N correctly classified bundled test images")
    p.add_argument("--targets", choices=["all", "next"], default="all",
                   help="all 9 other classes, or (label + 1) mod 10")
    p.add_argument("--config", action="append", choices=sorted(CONFIGS), required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a str_attack keyword, e.g. --set max_iterations=100")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device of model and images, e.g. cuda")
    p.add_argument("--json", default=None, help="append one JSON record per configuration here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    model = load_pretrained(a.dataset).to(a.device)
    seen = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda m, i, o: seen.__setitem__("fwd", seen["fwd"] + o.shape[0]))
    model.register_full_backward_hook(
        lambda m, gi, go: seen.__setitem__("bwd", seen["bwd"] + go[0].shape[0]))

    x, t, y = attack_task(model, a.dataset, a.images, a.targets, a.device)
    overrides = dict(kv.split("=", 1) for kv in a.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    const = 0.5 if a.dataset == "mnist" else 0.25

    rows = []
    for name in a.config:
        kwargs = dict(initial_const=const) | CONFIGS[name] | overrides
        seen.update(fwd=0, bwd=0)
        results, start, cpu_start = [], time.perf_counter(), time.process_time()
        for b in range(0, len(x), a.batch_size):
            sl = slice(b, b + a.batch_size)
            results.append(admm_attack(model, x[sl], t[sl], targeted=True, true_labels=y[sl], **kwargs))
        if x.is_cuda:
            torch.cuda.synchronize(x.device)  # wall time must include the queued GPU work
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        res = results[0] if len(results) == 1 else type(results[0])(
            adv=torch.cat([r.adv for r in results]), success=torch.cat([r.success for r in results]),
            inputs=torch.cat([r.inputs for r in results]),
            forward_passes=torch.cat([r.forward_passes for r in results]),
            backward_passes=torch.cat([r.backward_passes for r in results]))
        groups = GroupSpec.for_inputs(x, kwargs.get("group_size", 2), kwargs.get("stride", 2))
        row = summarize(name, res, groups, seconds)
        stages: dict[str, list[int]] = {}
        for r in results:
            for k, (f, bw) in r.stages.items():
                stages.setdefault(k, [0, 0])
                stages[k][0] += f
                stages[k][1] += bw
        n = len(x)
        row["hook fwd/ex"] = seen["fwd"] / n
        row["hook bwd/ex"] = seen["bwd"] / n
        row["stages (fwd+bwd)/ex"] = {k: round((f + bw) / n, 1) for k, (f, bw) in stages.items()}
        row["examples"] = n
        row["cpu s/ex"] = cpu_seconds / n
        row["kwargs"] = kwargs
        rows.append(row)
        if results[0].unrefined is not None:
            # The same run before its refinement stage = what refine=False returns
            # (the refinement only replaces an example by a smaller adversarial one).
            unrefined = torch.cat([r.unrefined for r in results])
            with torch.no_grad():
                ok = torch.cat([model(unrefined[b:b + a.batch_size]).argmax(1)
                                for b in range(0, n, a.batch_size)]) == t
            pre = type(results[0])(adv=unrefined, success=ok, inputs=res.inputs,
                                   forward_passes=res.forward_passes, backward_passes=res.backward_passes)
            pre_row = summarize(f"{name} (before refinement)", pre, groups, float("nan"))
            fwd = sum(f for k, (f, _) in stages.items() if k != "refine") / n
            bwd = sum(b_ for k, (_, b_) in stages.items() if k != "refine") / n
            pre_row.update({"fwd/ex": fwd, "bwd/ex": bwd, "passes/ex": fwd + bwd,
                            "examples": n, "kwargs": kwargs})
            rows.append(pre_row)
            print(markdown_table([pre_row]), flush=True)
        print(markdown_table([row]), flush=True)
        print(f"  hooks: fwd/ex {row['hook fwd/ex']:.1f} bwd/ex {row['hook bwd/ex']:.1f}; "
              f"stages {row['stages (fwd+bwd)/ex']}; {seconds:.1f} s wall, "
              f"{cpu_seconds:.1f} s CPU total", flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(row | {"dataset": a.dataset, "targets": a.targets,
                                          "images": len(x) // (9 if a.targets == "all" else 1)}) + "\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
