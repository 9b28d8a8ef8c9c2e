"""How much a transfer run's examples disturb the receiving models beyond the target class: per
attack and receiver, the share of the transferred (source-successful) examples that the receiver
no longer classifies as the true label, against its error on the same clean images, and the mean
drop of the true class's probability. Forward passes only; nothing is written.

Targeted transfer can be ~0 while the perturbation still moves the receiver (REPRODUCTION.md,
Table 3 on ImageNet); this tells the two apart.

    python benchmarks/transfer_disruption.py runs/table3_imagenet --model efficientnet_lite1 --model efficientnet_lite2
"""
from __future__ import annotations

import argparse

import torch

from strattack.evaluation.store import ResultStore
from strattack.evaluation.finished_run import load_store_data
from strattack.evaluation.transfer import Receiver, successful_examples
from strattack.models import load_pretrained


def disruption(receiver: Receiver, x0: torch.Tensor, delta: torch.Tensor,
               labels: torch.Tensor, batch: int = 50) -> tuple[float, float, float]:
    """(% misclassified adversarial, % misclassified clean, mean drop of p(true label))."""
    wrong_adv = wrong_clean = drop = 0.0
    for s in range(0, len(x0), batch):
        sl = slice(s, s + batch)
        with torch.no_grad():
            p_adv = receiver.model(receiver.prepare((x0[sl] + delta[sl]).clamp(0, 1))).softmax(1)
            p_clean = receiver.model(receiver.prepare(x0[sl])).softmax(1)
        y = labels[sl]
        wrong_adv += (p_adv.argmax(1) != y).sum().item()
        wrong_clean += (p_clean.argmax(1) != y).sum().item()
        drop += (p_clean.gather(1, y[:, None]) - p_adv.gather(1, y[:, None])).sum().item()
    n = len(x0)
    return 100 * wrong_adv / n, 100 * wrong_clean / n, drop / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    store = ResultStore(f"{a.run}/results.sqlite", read_only=True)
    data = load_store_data(store)
    models = {name: load_pretrained(name).eval() for name in a.model}
    receivers = [Receiver(name, m, tuple(getattr(m, "input_size", ())) or None)
                 for name, m in models.items()]
    print("| attack | model | examples | receiver misclassifies % (adversarial) | (clean) | "
          "mean drop of p(true) |")
    print("|---|---|---|---|---|---|")
    for src in successful_examples(store):
        x0 = data.images[data.rows([i for i, _ in src.pairs])]
        labels = torch.tensor(src.true_labels)
        for r in receivers:
            adv, clean, drop = disruption(r, x0, src.deltas.to(x0), labels)
            print(f"| {src.label} | {r.name} | {len(x0)} | {adv:.1f} | {clean:.1f} | {drop:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
