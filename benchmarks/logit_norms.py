"""Mean l2 norm of the logits of MNIST or CIFAR-10 networks on the first N test images (CIFAR-10:
its exact test images 0..845), and their test accuracy: the paper's explanation of defensive
distillation (App. H) is that the student's logits are about T times larger than an undistilled
network's, which saturates the softmax.

    python benchmarks/logit_norms.py --data-root data \
        --weights runs/distill/mnist_T10.safetensors runs/distill/mnist_T100.safetensors
    python benchmarks/logit_norms.py --dataset cifar10 --data-root data \
        --weights runs/distill/cifar10_T1.safetensors runs/distill/cifar10_T100.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from strattack.data.evaluation_data import load_evaluation_data
from strattack.models import load_pretrained
from strattack.models.loading import load_model


@torch.no_grad()
def describe(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    logits = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    top = F.softmax(logits, dim=1).amax(dim=1)
    return {"test_acc": (logits.argmax(1) == y).float().mean().item(),
            "logit_norm": logits.norm(dim=1).mean().item(),
            "saturated_%": 100 * (top == 1.0).float().mean().item()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--weights", type=Path, nargs="*", default=[])
    p.add_argument("-n", type=int, default=10000, help="test images")
    a = p.parse_args()
    torch.set_num_threads(1)
    data = load_evaluation_data(a.dataset, a.data_root)
    x, y = data.images[: a.n], data.labels[: a.n]
    base = describe(load_pretrained(a.dataset), x, y)
    print("| model | test acc % | mean logit l2 norm | x undistilled | softmax max = 1.0 (float32) % |")
    print("|---|---|---|---|---|")
    rows = [(f"undistilled (shipped {a.dataset})", base)]
    rows += [(w.stem, describe(load_model(a.dataset, w), x, y)) for w in a.weights]
    for name, r in rows:
        print(f"| {name} | {100 * r['test_acc']:.2f} | {r['logit_norm']:.1f} | "
              f"{r['logit_norm'] / base['logit_norm']:.1f} | {r['saturated_%']:.1f} |")


if __name__ == "__main__":
    main()
