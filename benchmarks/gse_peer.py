"""GSE beside the authors' implementation: the same images, model and settings.

The authors' ``attacks.py`` (github.com/wagnermoritz/GSE, fetched for the check, never
committed) is imported from ``--peer-dir``; its torchvision and skimage imports are satisfied by
stand-ins (only ``torchvision.transforms.GaussianBlur`` is used by GSE: a 5 x 5 Gaussian with
reflected borders, written here). Their attack works on [-1, 1]: it gets x' = 2 x - 1 and a
model that maps x' back to [0, 1]; its perturbation is halved back to [0, 1] units. Ours gets
the [0, 1] images and its own defaults (the authors' targeted CIFAR-10 settings converted).

    python benchmarks/gse_peer.py --peer-dir /tmp/gse_peer --dataset cifar10 -n 20 --skip 0
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from strattack import gse
from strattack.data.samples import load_samples
from strattack.evaluation.metrics import group_sparsity_metrics
from strattack.models.pretrained import load_pretrained


class _GaussianBlur:
    """torchvision.transforms.GaussianBlur for (N, 1, H, W): separable, reflected borders."""

    def __init__(self, kernel_size: tuple[int, int], sigma: float) -> None:
        size = kernel_size[0]
        x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        k = torch.exp(-0.5 * (x / sigma) ** 2)
        self.kernel, self.r = k / k.sum(), size // 2

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        k, r = self.kernel.to(img), self.r
        rows = F.conv2d(F.pad(img, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(rows, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def load_peer(peer_dir: str) -> types.ModuleType:
    transforms = types.SimpleNamespace(GaussianBlur=_GaussianBlur)
    sys.modules.setdefault("torchvision", types.SimpleNamespace(transforms=transforms))
    sys.modules.setdefault("skimage", types.ModuleType("skimage"))
    spec = importlib.util.spec_from_file_location("gse_peer_attacks", f"{peer_dir}/attacks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PlusMinusOne(nn.Module):
    """The [0, 1] model on [-1, 1] inputs, counting the images it sees (forward passes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.model((x + 1) / 2)


def summary(name: str, delta: torch.Tensor, success: torch.Tensor, passes: float,
            seconds: float) -> dict:
    ok = success.bool()
    metrics = group_sparsity_metrics(delta[ok], patch=8)
    return {"attack": name, "ASR %": 100 * ok.float().mean().item(),
            "pixel l0": metrics["pixel l0"].mean().item(),
            "l2": delta[ok].flatten(1).norm(dim=1).mean().item(),
            "clusters": metrics["clusters"].mean().item(), "d20": metrics["d20"].mean().item(),
            "fwd passes/ex": passes, "s": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--peer-dir", required=True)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--skip", type=int, default=0, help="correctly classified images to skip")
    p.add_argument("--out", help="JSON file for the two rows")
    a = p.parse_args()
    torch.set_num_threads(1)
    x, y, _ = load_samples(a.dataset)
    model = load_pretrained(a.dataset).eval()
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep][a.skip:a.skip + a.n], y[keep][a.skip:a.skip + a.n]
    t = (y + 1) % 10
    rows = []

    wrapped = PlusMinusOne(model)
    params = json.load(open(f"{a.peer_dir}/attackParams.json"))["GSE"]["targeted"]["CIFAR10"]
    peer = load_peer(a.peer_dir).GSEAttack(wrapped, targeted=True, img_range=(-1, 1), **params)
    torch.manual_seed(0)
    start = time.perf_counter()
    adv = peer(2 * x - 1, t)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        success = wrapped(adv).argmax(1) == t
    rows.append(summary("GSE (authors' code)", (adv - (2 * x - 1)) / 2, success,
                        wrapped.images / len(x), seconds))

    start = time.perf_counter()
    r = gse(model, x, t, targeted=True)
    rows.append(summary("gse (strattack)", r.adv - x, r.success,
                        r.forward_passes.float().mean().item(), time.perf_counter() - start))
    for row in rows:
        print(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else str(v)
                         for k, v in row.items()), flush=True)
    if a.out:
        json.dump(rows, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
