"""Command line: ``strattack demo`` and ``strattack train``. Thin: parsing and printing only."""
from __future__ import annotations

import time
from pathlib import Path

import click
import torch

DATASET_CHOICE = click.Choice(["mnist", "cifar10"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="strattack")
def main() -> None:
    """Structured adversarial attacks (StrAttack, Xu et al., ICLR 2019)."""


@main.command()
@click.option("--dataset", type=DATASET_CHOICE, default="mnist", show_default=True,
              help="Bundled model and test images to attack.")
@click.option("-n", "--num-images", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Attack the first N correctly classified bundled test images.")
@click.option("--target-offset", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Target class = (true label + offset) mod 10.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("strattack-demo.png"), show_default=True, help="PNG figure to write.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
def demo(dataset: str, num_images: int, target_offset: int, output: Path, device: str) -> None:
    """Attack a few bundled images with StrAttack and a dense l2 baseline; print a table and
    write a Fig. 2-style PNG (original, adversarial, group-wise perturbation heatmap)."""
    from . import admm_attack
    from .data import CIFAR10_CLASSES, load_samples
    from .evaluation import markdown_table, summarize
    from .models import load_pretrained
    from .solver.groups import GroupSpec
    from .viz import plot_attack_comparison

    torch.manual_seed(0)
    try:
        model = load_pretrained(dataset, device=device)
        images, labels, indices = load_samples(dataset)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    images, labels = images.to(device), labels.to(device)
    with torch.no_grad():
        correct = (model(images).argmax(1) == labels).nonzero().squeeze(1)[:num_images]
    x, y = images[correct], labels[correct]
    targets = (y + target_offset) % 10
    names = CIFAR10_CLASSES if dataset == "cifar10" else [str(i) for i in range(10)]
    const = 0.5 if dataset == "mnist" else 0.25           # Appendix F
    groups = GroupSpec.for_inputs(x, 2, 2)

    click.echo(f"{dataset}: attacking {len(correct)} bundled test images "
               f"(test-set indices {indices[correct.cpu()].tolist()}) toward target = label + {target_offset}")
    runs = {
        "StrAttack": dict(group_size=2, stride=2),
        "dense l2 (ADMM, tau=0)": dict(tau=0.0, refine=False),
    }
    rows, figure_inputs = [], {}
    for name, kwargs in runs.items():
        start = time.perf_counter()
        res = admm_attack(model, x, targets, targeted=True, true_labels=y, initial_const=const,
                         **kwargs)
        seconds = time.perf_counter() - start
        rows.append(summarize(name, res, groups, seconds))
        with torch.no_grad():
            preds = model(res.adv).argmax(1).tolist()
        figure_inputs[name.split(" ")[0]] = (res.adv, [names[p] for p in preds])
    click.echo(markdown_table(rows))
    click.echo("norms: means over successful examples; l0 counts changed entries; groups = nonzero "
               "2x2 groups; passes = model forward + backward passes per example")
    path = plot_attack_comparison(x, [f"{names[a]} -> {names[b]}" for a, b in zip(y.tolist(), targets.tolist())],
                                  figure_inputs, groups, output,
                                  title=f"StrAttack vs dense l2 on {dataset} (2x2 groups)")
    click.echo(f"figure written to {path.resolve()}")


@main.command()
@click.option("--dataset", type=DATASET_CHOICE, required=True)
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the dataset files (default: $STRATTACK_DATA or ./data).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .safetensors weights.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Default: the shipped recipe.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--download", is_flag=True,
              help="Fetch missing dataset files from the official URLs first (needs internet).")
def train(dataset: str, data_root: Path | None, out: Path, epochs: int | None, seed: int,
          download: bool) -> None:
    """Train the paper's MNIST / CIFAR-10 network (Appendix F) and save it as safetensors.

    The shipped weights were made with: strattack train --dataset mnist --data-root
    ../shared/data --out mnist.safetensors (and --dataset cifar10 on a CIFAR-10 root).
    """
    from .data import default_data_root, load_cifar10, load_mnist
    from .models import training

    root = data_root if data_root is not None else default_data_root()
    if download:
        loader = load_mnist if dataset == "mnist" else load_cifar10
        try:
            for split in ("train", "test"):
                loader(root, split=split, download=True)
        except (OSError, RuntimeError) as err:   # offline, or every mirror failed
            raise click.ClickException(f"download failed: {err}") from err
    argv = ["--dataset", dataset, "--out", str(out), "--seed", str(seed), "--data-root", str(root)]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    try:
        training.main(argv)
    except (FileNotFoundError, ValueError) as err:   # missing/corrupt data: say which files
        raise click.ClickException(str(err)) from err


if __name__ == "__main__":  # pragma: no cover
    main()
