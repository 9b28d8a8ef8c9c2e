"""Every public attack and the interpretability maps on a second device against the CPU.

Runs each attack (reduced budgets) on the first correctly classified bundled MNIST test images,
once on the CPU and once on ``--device``, and prints per attack: ASR on both, the mean l0/l2/linf
relative difference, and the checks that must hold on any device (output on the input's device
and dtype, inside [0, 1], within the budget for budget modes, success re-checked by the model).
Then ASM (eq. 60/61) and CAM on a small GAP network: max |difference| between the devices.

    python benchmarks/device_check.py --device cuda --images 16

Float32 results differ in the last bits between devices (different kernels), and iterative
attacks amplify that on borderline examples, so norms are compared as means, not per example.
"""
from __future__ import annotations

import argparse
import time

import torch

import strattack
from strattack.interpretability.asm import asm
from strattack.interpretability.cam import cam
from strattack.interpretability.gapnet import GAPNet
from strattack.models import load_pretrained
from _task import attack_task

# name -> (attack, keyword arguments, targeted, l_inf budget or None)
CONFIGS = {
    "str_attack": (strattack.str_attack, {}, True, None),
    "str_attack overlap 3x3/2": (strattack.str_attack, dict(group_size=3, stride=2), True, None),
    "str_attack_linf eps=0.3": (strattack.str_attack_linf, dict(epsilon=0.3), False, 0.3),
    "admm elastic tau=0": (strattack.admm_attack, dict(tau=0.0, distortion="elastic", beta=0.05,
                                                        refine=False), True, None),
    "cw_l2 3x1000, c0=1": (strattack.cw_l2, dict(binary_search_steps=3, max_iterations=1000,
                                                 initial_const=1.0), True, None),
    "cw_linf, c0=1, 100 it.": (strattack.cw_linf, dict(initial_const=1.0, max_iterations=100),
                               True, None),
    "cw_linf eps=0.3, c0=1, 100 it.": (strattack.cw_linf, dict(epsilon=0.3, initial_const=1.0,
                                                             max_iterations=100), False, 0.3),
    "ead 3x200, c0=1": (strattack.ead, dict(binary_search_steps=3, max_iterations=200,
                                            initial_const=1.0), True, None),
    "fgm l2 minimal": (strattack.fgm, dict(norm="l2"), True, None),
    "fgm linf eps=0.2": (strattack.fgm, dict(norm="linf", epsilon=0.2), False, 0.2),
    "ifgsm l2 minimal": (strattack.ifgsm, dict(norm="l2"), True, None),
    "ifgsm linf eps=0.2": (strattack.ifgsm, dict(norm="linf", epsilon=0.2), False, 0.2),
}


def norms(delta: torch.Tensor) -> dict[str, torch.Tensor]:
    flat = delta.flatten(1)
    return {"l0": (flat != 0).sum(1).float(), "l2": flat.norm(dim=1),
            "linf": flat.abs().amax(1)}


def run(model, x, t, y, name, device):
    attack, kwargs, targeted, budget = CONFIGS[name]
    model = model.to(device)
    x, t, y = x.to(device), t.to(device), y.to(device)
    start = time.perf_counter()
    if targeted:
        res = attack(model, x, t, targeted=True, true_labels=y, **kwargs)
    else:
        res = attack(model, x, y, targeted=False, **kwargs)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    problems = []
    if res.adv.device != x.device or res.adv.dtype != x.dtype:
        problems.append(f"adv on {res.adv.device}/{res.adv.dtype}")
    if not (res.adv.min() >= 0 and res.adv.max() <= 1):
        problems.append("adv outside [0, 1]")
    delta = (res.adv - x).detach()
    if budget is not None and delta.abs().amax() > budget:
        problems.append(f"budget exceeded: {delta.abs().amax().item()}")
    with torch.no_grad():
        pred = model(res.adv).argmax(1)
    fooled = (pred == t) if targeted else (pred != y)
    if not torch.equal(fooled.cpu(), res.success.cpu()):
        problems.append("success disagrees with the model")
    return res.success.cpu(), {k: v.cpu() for k, v in norms(delta).items()}, seconds, problems


def relative(a: torch.Tensor, b: torch.Tensor) -> str:
    if len(a) == 0 or len(b) == 0:
        return "n/a"
    ma, mb = a.mean().item(), b.mean().item()
    return f"{100 * (mb / ma - 1):+.1f}%" if ma else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--attack", action="append", choices=sorted(CONFIGS),
                   help="only these (repeatable); default: all")
    a = p.parse_args()
    torch.manual_seed(0)
    model = load_pretrained("mnist").eval()
    x, t, y = attack_task(model, "mnist", a.images, "next")
    print(f"{len(x)} MNIST images, target = label + 1; cpu vs {a.device}")
    print("| attack | ASR cpu | ASR dev | ℓ0 | ℓ2 | ℓ∞ (dev vs cpu, mean over successes) "
          "| s cpu | s dev | problems |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    for name in a.attack or CONFIGS:
        ok_c, n_c, s_c, p_c = run(model, x, t, y, name, "cpu")
        ok_d, n_d, s_d, p_d = run(model, x, t, y, name, a.device)
        problems = [f"cpu: {q}" for q in p_c] + [f"{a.device}: {q}" for q in p_d]
        failed |= bool(problems)
        print(f"| {name} | {100 * ok_c.float().mean():.1f} | {100 * ok_d.float().mean():.1f} | "
              + " | ".join(relative(n_c[k][ok_c], n_d[k][ok_d]) for k in ("l0", "l2", "linf"))
              + f" | {s_c:.1f} | {s_d:.1f} | {'; '.join(problems) or 'none'} |", flush=True)

    net = GAPNet(in_channels=1, num_classes=10).eval()
    for variant in (60, 61):
        ref = asm(net, x, y, t, variant=str(variant))
        dev = asm(net.to(a.device), x.to(a.device), y.to(a.device), t.to(a.device),
                  variant=str(variant))
        net = net.cpu()
        print(f"ASM eq. ({variant}): max |{a.device} - cpu| = {(dev.cpu() - ref).abs().max():.2e} "
              f"(values up to {ref.abs().max():.2e}), on {dev.device}")
    ref = cam(net, x, t)
    dev = cam(net.to(a.device), x.to(a.device), t.to(a.device))
    print(f"CAM: max |{a.device} - cpu| = {(dev.cpu() - ref).abs().max():.2e}, on {dev.device}")
    if failed:
        raise SystemExit("some checks failed (see the problems column)")


if __name__ == "__main__":
    main()
