"""StrAttack and GSE settings on the same bundled images, with GSE's group-sparsity metrics.

    python benchmarks/group_sparsity_scan.py cifar10 40 10 '{"defaults": {}, "gse": {"_gse": true}}'

Arguments: the bundled dataset, how many correctly classified images to skip, how many to
attack (target = label + 1), and a JSON object {row name: keywords}; ``"_gse": true`` runs
``gse`` with the keywords, any other row ``str_attack``. Prints one row per setting: ASR, then
over the successes the pixel l0, l2, 4-connected clusters and d_2,0 (8 x 8), and per example the
model passes (forward + backward), the forward passes and the seconds. One torch thread.
"""
import json
import sys
import time

import torch

from strattack import gse, str_attack
from strattack.data.samples import load_samples
from strattack.evaluation.metrics import group_sparsity_metrics
from strattack.models.pretrained import load_pretrained


def main() -> None:
    dataset, skip, n, settings = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    x, y, _ = load_samples(dataset)
    model = load_pretrained(dataset).eval()
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep][skip:skip + n], y[keep][skip:skip + n]
    t = (y + 1) % 10
    for name, keywords in json.loads(settings).items():
        attack = gse if keywords.pop("_gse", False) else str_attack
        start = time.time()
        r = attack(model, x, t, targeted=True, **keywords)
        seconds = (time.time() - start) / len(x)
        d, ok = r.adv - x, r.success
        m = group_sparsity_metrics(d[ok], patch=8)
        passes = (r.forward_passes + r.backward_passes).float().mean().item()
        print(f"{name:28s} ASR {ok.float().mean().item() * 100:5.1f} "
              f"pix {m['pixel l0'].mean().item():7.1f} "
              f"l2 {d[ok].flatten(1).norm(dim=1).mean().item():.3f} "
              f"clusters {m['clusters'].mean().item():5.2f} d20 {m['d20'].mean().item():6.1f} "
              f"passes {passes:7.0f} fwd {r.forward_passes.float().mean().item():6.0f} "
              f"s/ex {seconds:.2f}", flush=True)


if __name__ == "__main__":
    main()
