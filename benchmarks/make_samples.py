"""Create the bundled test samples in ``src/strattack/data/samples/``.

Writes ``{mnist,cifar10}_test_samples.npz`` holding the first N official test
images (uint8 NCHW), their labels and their indices in the test set, so that
examples and tests run without downloading any dataset. For CIFAR-10, N must
stay <= 846: in the shared benchmark data only test images 0..845 are exact.

    python benchmarks/make_samples.py --mnist-root data --cifar10-root data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from strattack.data import load_cifar10, load_mnist

OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "strattack" / "data" / "samples"
CIFAR10_EXACT_TEST = 846


def write_samples(name: str, images, labels, n: int, out_dir: Path = OUT_DIR) -> Path:
    """Save the first ``n`` images/labels of a test set as a compressed ``.npz``."""
    x = np.rint(images[:n].numpy() * 255.0).astype(np.uint8)
    y = labels[:n].numpy().astype(np.int64)
    out = out_dir / f"{name}_test_samples.npz"
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=x, labels=y, indices=np.arange(n, dtype=np.int64))
    print(f"wrote {out}: images {x.shape} {x.dtype}, labels {np.bincount(y, minlength=10)}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist-root", type=Path, required=True)
    p.add_argument("--cifar10-root", type=Path, required=True)
    p.add_argument("-n", type=int, default=100)
    a = p.parse_args()
    if a.n > CIFAR10_EXACT_TEST:
        p.error(f"-n must be <= {CIFAR10_EXACT_TEST} (exact CIFAR-10 test images)")
    write_samples("mnist", *load_mnist(a.mnist_root, "test"), a.n)
    write_samples("cifar10", *load_cifar10(a.cifar10_root, "test"), a.n)


if __name__ == "__main__":
    main()
