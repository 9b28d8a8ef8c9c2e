"""Clusters and pixel l0 against l2 for the settings of benchmarks/group_sparsity_scan.py runs.

    python benchmarks/group_sparsity_scan.py cifar10 40 10 '{...}' > scan.txt
    python benchmarks/plot_tradeoff.py scan.txt [more.txt ...] -o tradeoff.png

Rows whose name starts with "gse" are GSE settings, the others StrAttack settings.
"""
import argparse
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROW = re.compile(r"^(\S+)\s+ASR\s+([\d.]+)\s+pix\s+([\d.]+)\s+l2\s+([\d.]+)\s+clusters\s+([\d.]+)")


def rows(paths):
    for path in paths:
        for line in open(path):
            m = ROW.match(line)
            if m:
                name, asr, pix, l2, clusters = m.groups()
                yield name, float(asr), float(pix), float(l2), float(clusters)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("scans", nargs="+")
    p.add_argument("-o", "--out", required=True)
    a = p.parse_args()
    data = list(rows(a.scans))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, column, label in ((axes[0], 4, "4-connected clusters"), (axes[1], 2, "pixel l0")):
        for gse in (False, True):
            points = [r for r in data if r[0].startswith("gse") == gse]
            ax.scatter([r[3] for r in points], [r[column] for r in points],
                       marker="s" if gse else "o", label="GSE" if gse else "StrAttack")
            for r in points:
                ax.annotate(r[0], (r[3], r[column]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel("l2 (mean over successes)")
        ax.set_ylabel(label)
        ax.legend()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
