"""Same-model comparison with the peer implementation adv_lib 0.2.8 `str_attack`.

adv_lib is not a dependency; install its wheel without dependencies into a separate folder and
point --adv-lib-path at it (its package __init__ imports torchvision, absent here, so the one
module needed is loaded directly, with a stub for the optional visdom logger):

    pip download --no-deps -d /tmp/advlib adv-lib==0.2.8
    pip install --no-deps --target /tmp/advlib_site /tmp/advlib/adv_lib-0.2.8-py3-none-any.whl
    python benchmarks/compare_adv_lib.py --adv-lib-path /tmp/advlib_site --images 20

With ``--targets random -k 3`` the examples are those of ``configs/gse_mnist.toml`` (each image's
random targets from seed 0, as ``strattack eval --targets random -k 3`` draws them), so the rows
compare with BENCHMARKS.md §13's MNIST table; ``--peer-only`` skips our rows. The table adds
GSE's group-sparsity metrics: pixel l0, 4-connected clusters and d20 (non-zero 8 x 8 windows).

Without --max-iterations adv_lib runs at its own defaults (6 x 2,000 iterations, refinement
8 x 400). Our rows: the defaults (tau = 1, 3 x 100 + 2 x 80, 2 rescue steps), App. F's settings
(tau = 2, 5 x 200 + 2 x 100, no rescue steps), App. F's settings with tau = 1, and the defaults
with the authors' reset between c-steps (the rows of BENCHMARKS.md §11's adv_lib table).

The speed task (BENCHMARKS.md §1 and §11): bundled MNIST model, first N correctly classified
bundled test images, target = (label + 1) mod 10. Passes are counted with forward / full-backward
hooks on the model.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types

import torch

from strattack import str_attack
from strattack.data import load_samples
from strattack.evaluation.examples import make_examples
from strattack.evaluation.metrics import group_sparsity_metrics
from strattack.models import load_pretrained
from strattack.solver.groups import GroupSpec


def load_adv_lib_str_attack(path: str):
    sys.modules.setdefault("visdom", types.ModuleType("visdom"))
    pkg = types.ModuleType("adv_lib")
    pkg.__path__ = [f"{path}/adv_lib"]
    sys.modules["adv_lib"] = pkg
    for name in ("utils", "attacks"):
        sub = types.ModuleType(f"adv_lib.{name}")
        sub.__path__ = [f"{path}/adv_lib/{name}"]
        sys.modules[f"adv_lib.{name}"] = sub
    spec = importlib.util.spec_from_file_location(
        "adv_lib.attacks.structured_adversarial_attack",
        f"{path}/adv_lib/attacks/structured_adversarial_attack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.str_attack


# App. F's settings (tau = 2, 5 x 200 + 2 x 100, no rescue steps).
BEFORE = dict(tau=2.0, binary_search_steps=5, max_iterations=200, refine_iterations=100,
              rescue_steps=0)
OURS = {
    "strattack str_attack (defaults)": {},
    "strattack, App. F (tau 2, 5x200 + 2x100)": BEFORE,
    "strattack, App. F + tau = 1": {**BEFORE, "tau": 1.0},
    "strattack, defaults with the authors' reset (warm_start=False)": {"warm_start": False},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--adv-lib-path", default=None, help="required unless --ours-only")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--targets", choices=("next", "random"), default="next",
                   help="next: label + 1 (the speed task); random: -k random targets per image")
    p.add_argument("-k", "--num-targets", type=int, default=3)
    p.add_argument("--max-iterations", type=int, default=None,
                   help="adv_lib iterations per search step (default: adv_lib's own default)")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--ours-only", action="store_true", help="skip adv_lib (our rows only)")
    rows.add_argument("--peer-only", action="store_true", help="only adv_lib's row")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.adv_lib_path is None and not a.ours_only:
        p.error("--adv-lib-path is required unless --ours-only")
    return a


def task(model, a: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, true labels and targets: the first ``a.images`` correctly classified bundled
    images, with target label + 1 or ``a.num_targets`` random targets each."""
    x, y, _ = load_samples("mnist")
    with torch.no_grad():
        ok = (model(x).argmax(1) == y).nonzero().squeeze(1)[:a.images]
    targets = "next" if a.targets == "next" else "random"
    examples = make_examples(ok.tolist(), y[ok].tolist(), targets, 10, k=a.num_targets, seed=0)
    rows = torch.tensor([image for image, _ in examples])
    return x[rows], y[rows], torch.tensor([target for _, target in examples])


def main() -> None:
    a = parse_args()
    torch.set_num_threads(a.threads)
    peer = None if a.ours_only else load_adv_lib_str_attack(a.adv_lib_path)
    model = load_pretrained("mnist")
    seen = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda m, i, o: seen.__setitem__("fwd", seen["fwd"] + o.shape[0]))
    model.register_full_backward_hook(lambda m, gi, go: seen.__setitem__("bwd", seen["bwd"] + go[0].shape[0]))
    x, _, t = task(model, a)
    groups = GroupSpec.for_inputs(x, 2, 2)
    peer_kw = {} if a.max_iterations is None else {"max_iterations": a.max_iterations}
    peer_name = ("adv_lib 0.2.8 str_attack (defaults)" if a.max_iterations is None
                 else f"adv_lib 0.2.8 str_attack (max_iterations={a.max_iterations})")
    runs = {} if a.ours_only else {
        peer_name: lambda: peer(model, x, t, targeted=True, **peer_kw)}
    for name, kw in ({} if a.peer_only else OURS).items():
        runs[name] = lambda kw=kw: str_attack(model, x, t, targeted=True, **kw).adv
    print(f"{len(x)} examples")
    print("| implementation | ASR % | l0 | l2 | nonzero 2x2 groups | pixel l0 | clusters | d20 "
          "| fwd/ex | bwd/ex | s/ex |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        seen.update(fwd=0, bwd=0)
        start = time.perf_counter()
        adv = run()
        seconds = time.perf_counter() - start
        fwd, bwd = seen["fwd"], seen["bwd"]
        with torch.no_grad():
            success = model(adv).argmax(1) == t
        d = (adv - x)[success]
        l0 = (d != 0).flatten(1).sum(1).float().mean().item()
        l2 = d.flatten(1).norm(dim=1).mean().item()
        ng = groups.nonzero_groups(d).float().mean().item()
        extra = {k: v.mean().item() for k, v in group_sparsity_metrics(d).items()}
        n = len(x)
        print(f"| {name} | {100 * success.float().mean().item():.1f} | {l0:.1f} | {l2:.3f} | {ng:.1f} | "
              f"{extra['pixel l0']:.1f} | {extra['clusters']:.2f} | {extra['d20']:.1f} | "
              f"{fwd / n:.0f} | {bwd / n:.0f} | {seconds / n:.2f} |", flush=True)


if __name__ == "__main__":
    main()
