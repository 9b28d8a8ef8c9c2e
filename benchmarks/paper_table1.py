"""Our Table 1 next to the paper's, with the StrAttack / C&W ratios, from a `strattack eval`
store. Prints Markdown (for REPRODUCTION.md).

    python benchmarks/paper_table1.py runs/table1_mnist mnist
    python benchmarks/paper_table1.py runs/table1_cifar10 cifar10
    python benchmarks/paper_table1.py runs/table1_imagenet imagenet

Every attack of the store whose label starts with one of the paper's rows (e.g. both "C&W-l2"
and "C&W-l2 (9x1000)") gets its own row; rows the paper does not have for a dataset (ImageNet
+overlap) are printed with "not in paper". Model passes are per attack; wall times are per
attack *and device* (a store may hold shards run on a CPU and on a GPU).
"""
from __future__ import annotations

import argparse
import math

from strattack.evaluation.report import CASES, NORMS, cost_rows, ratio_rows, report_rows
from strattack.evaluation.store import ResultStore

# The paper's Table 1 (Xu et al., ICLR 2019): per attack and case, (ASR %, l0, l1, l2, linf);
# None where the paper has N.A.
NA = (None,) * 4
PAPER = {
    "mnist": {
        "FGM": [(99.3, 456.5, 28.2, 2.32, 0.57), (35.8, 466, 39.4, 3.17, 0.717), (0, *NA)],
        "IFGSM": [(100, 549.5, 18.3, 1.57, 0.4), (100, 588, 30.9, 2.41, 0.566),
                  (99.8, 640.4, 50.98, 3.742, 0.784)],
        "C&W": [(100, 479.8, 13.3, 1.35, 0.397), (100, 493.4, 21.3, 1.9, 0.528),
                (99.7, 524.3, 29.9, 2.45, 0.664)],
        "StrAttack": [(100, 73.2, 10.9, 1.51, 0.384), (100, 119.4, 18.05, 2.16, 0.47),
                      (100, 182.0, 26.9, 2.81, 0.5)],
        "+overlap": [(100, 84.4, 9.2, 1.32, 0.401), (100, 157.4, 16.2, 1.95, 0.508),
                     (100, 260.9, 22.9, 2.501, 0.653)],
    },
    "cifar10": {
        "FGM": [(98.5, 3049, 12.9, 0.389, 0.046), (44.1, 3048, 34.2, 0.989, 0.113),
                (0.2, 3071, 61.3, 1.76, 0.194)],
        "IFGSM": [(100, 3051, 6.22, 0.182, 0.02), (100, 3051, 13.7, 0.391, 0.0433),
                  (100, 3060, 22.9, 0.655, 0.075)],
        "C&W": [(100, 2954, 6.03, 0.178, 0.019), (100, 2956, 12.1, 0.347, 0.0364),
                (99.9, 3070, 16.8, 0.481, 0.0536)],
        "StrAttack": [(100, 264, 3.33, 0.204, 0.031), (100, 487, 7.13, 0.353, 0.050),
                      (100, 772, 12.5, 0.563, 0.075)],
        "+overlap": [(100, 295, 3.35, 0.169, 0.029), (100, 562, 7.05, 0.328, 0.047),
                     (100, 920, 12.9, 0.502, 0.063)],
    },
    "imagenet": {
        "FGM": [(12, 264917, 152, 0.477, 0.0157), (2, 263585, 51.3, 0.18, 0.00614), (0, *NA)],
        "IFGSM": [(100, 267079, 299.32, 0.9086, 0.02964), (100, 267293, 723, 2.2, 0.0792),
                  (98, 267581, 1378, 4.22, 0.158)],
        "C&W": [(100, 267916, 127, 0.471, 0.016), (100, 263140, 198, 0.679, 0.03),
                (100, 265212, 268, 0.852, 0.041)],
        "StrAttack": [(100, 14462, 55.2, 0.719, 0.058), (100, 52328, 152, 1.06, 0.075),
                      (100, 80722, 197, 1.35, 0.122)],
    },
}
# Our store labels for the paper's rows.
OURS = {"FGM": "FGM-l2", "IFGSM": "IFGSM-l2", "C&W": "C&W-l2", "StrAttack": "StrAttack",
        "+overlap": "StrAttack+overlap"}


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("dataset", choices=sorted(PAPER))
    parser.add_argument("--ratio", nargs=2, action="append", metavar=("NUM", "DEN"),
                        help="only these ratios (labels; repeatable); default: every StrAttack "
                             "row over every C&W row")
    args = parser.parse_args()
    with ResultStore(f"{args.run_dir}/results.sqlite") as store:
        rows = report_rows(store)
        costs = cost_rows(store)          # per attack and device
    labels = {r["attack"] for r in rows}
    # paper row -> every matching label of ours, e.g. C&W -> [C&W-l2, C&W-l2 (9x1000)]
    resolve = {paper_name: sorted(l for l in labels if l == ours or l.startswith(ours + " ("))
               for paper_name, ours in OURS.items()}
    resolve = {k: v for k, v in resolve.items() if v}
    by_key = {(r["attack"], r["case"]): r for r in rows}
    print("| attack | case | images / examples | ASR % | ℓ0 | ℓ1 | ℓ2 | ℓ∞ | paper ASR | ℓ0 | ℓ1 | ℓ2 | ℓ∞ |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    paper_table = PAPER[args.dataset]
    for paper_name in OURS:
        paper_rows = paper_table.get(paper_name)
        for label in resolve.get(paper_name, [None] if paper_rows else []):
            for i, case in enumerate(CASES):
                r = by_key.get((label, case)) if label else None
                ours = ([f"{r['images']} / {r['examples']}", _fmt(r["ASR %"])]
                        + [_fmt(r[n]) for n in NORMS]) if r else ["not run"] + [""] * 5
                paper = ([_fmt(v) for v in paper_rows[i]] if paper_rows
                         else ["not in paper"] + [""] * 4)
                print(f"| {label or paper_name} | {case} | " + " | ".join(ours) + " | "
                      + " | ".join(paper) + " |")
    print("\n| attack | model passes / example | device | examples | seconds / example | total seconds |")
    print("|---|---|---|---|---|---|")
    for label in (l for ls in resolve.values() for l in ls):
        passes = _fmt(by_key[(label, "average")]["passes/ex"])
        for c in (c for c in costs if c["attack"] == label):
            print(f"| {label} | {passes} | {c['device']} | {c['examples']} | {_fmt(c['s/ex'])} | "
                  f"{c['seconds']:.0f} |")
    if "StrAttack" in resolve and "C&W" in resolve:
        print("\n| ratio | case | ℓ0 ours | ℓ0 paper | ℓ2 ours | ℓ2 paper |")
        print("|---|---|---|---|---|---|")
        for name in ("StrAttack", "+overlap"):
            for num in resolve.get(name, []):
                for den in resolve["C&W"]:
                    if args.ratio and [num, den] not in args.ratio:
                        continue
                    ours = {r["case"]: r for r in ratio_rows(rows, num, den)}
                    for i, case in enumerate(CASES):
                        if name in paper_table:
                            p_num, p_den = paper_table[name][i], paper_table["C&W"][i]
                            p_l0, p_l2 = _fmt(p_num[1] / p_den[1]), _fmt(p_num[3] / p_den[3])
                        else:
                            p_l0 = p_l2 = "not in paper"
                        print(f"| {num} / {den} | {case} | {_fmt(ours[case]['l0'])} | {p_l0} | "
                              f"{_fmt(ours[case]['l2'])} | {p_l2} |")

if __name__ == "__main__":
    main()
