"""Command line: ``strattack demo | train | eval | report | merge | explain | transfer |
export``. Thin: parsing and printing; each command calls one library function
(:mod:`strattack.commands`) and maps its typed errors. The shared options and ``eval``'s are
declared in :mod:`strattack.cli_options`."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_options import (DATASET_CHOICE, STORE_DATA_ROOT_OPTION, THREADS_OPTION,
                          device_callback, eval_options)
from .commands.common import store_errors
from .evaluation.store import STORE_NAME


@contextmanager
def _library_errors() -> Iterator[None]:
    """The library's errors as the CLI's: a bad choice is a usage error (exit 2), anything else
    that went wrong (files, data, weights) a plain error (exit 1); never a traceback."""
    from .errors import ConfigError

    try:
        yield
    except ConfigError as err:
        raise click.UsageError(str(err)) from err
    except (FileNotFoundError, ValueError, ImportError, OSError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="strattack", message="%(prog)s %(version)s")
def main() -> None:
    """Structured adversarial attacks (StrAttack, Xu et al., ICLR 2019)."""


@main.command("demo")
@click.option("--dataset", type=DATASET_CHOICE, default="mnist", show_default=True,
              help="Bundled model and test images to attack.")
@click.option("-n", "--num-images", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Attack the first N correctly classified bundled test images.")
@click.option("--target-offset", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Target class = (true label + offset) mod 10.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("strattack-demo.png"), show_default=True, help="PNG figure to write.")
@click.option("--device", default="cpu", show_default=True, callback=device_callback,
              help="torch device, e.g. cpu or cuda.")
@THREADS_OPTION
def demo_command(dataset: str, num_images: int, target_offset: int, output: Path,
                 device: str, threads: int | None) -> None:
    """Attack a few bundled images with StrAttack and a dense l2 baseline; print a table and
    write a Fig. 2-style PNG (original, adversarial, group-wise perturbation heatmap)."""
    from .commands.demo import demo

    with _library_errors():
        result = demo(dataset, num_images, target_offset, output, device, threads)
    _echo_lines(result.lines)
    click.echo(f"figure written to {result.figure.resolve()}")


@main.command("train")
@click.option("--dataset", type=DATASET_CHOICE, required=True)
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the dataset files (default: $STRATTACK_DATA or ./data).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .safetensors weights.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Default: the shipped recipe.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--download", is_flag=True,
              help="Fetch missing dataset files from the official URLs first (needs internet).")
@click.option("--defense", type=click.Choice(["none", "distillation", "adversarial"]),
              default="none", show_default=True,
              help="distillation: defensive distillation (Papernot et al. 2016; App. H), teacher "
              "and student at --temperature, deployed at T = 1; adversarial: the clean training "
              "set plus the successful examples of --adv-examples, with their true labels.")
@click.option("--temperature", type=float, default=None, help="T of --defense distillation.")
@click.option("--adv-examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Run folder of `strattack eval --split train` "
              "(--defense adversarial).")
@click.option("--arch", type=click.Choice(["cnn", "mlp", "lenet5", "resnet", "vgg"]),
              default="cnn", show_default=True,
              help="Network: cnn, the paper's (App. F); or, for transferability (Table 3), an "
              "MLP 512-512, LeNet-5, a ResNet-8 (16/32/64) or a VGG 32-32-P-64-64-P. Recorded "
              "in the file: --model DATASET --weights FILE rebuilds it.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Training batch size [default: the shipped recipe's].")
@click.option("--max-lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Peak learning rate of the one-cycle schedule [default: the shipped recipe's].")
@click.option("--limit-train", type=click.IntRange(1), default=None,
              help="Train on the first N training images only (smoke tests).")
@click.option("--adv-eps", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="PGD adversarial training (Madry et al. 2018) at this l_inf radius: each "
              "batch replaced by its ifgsm examples from a random start (robust model).")
@click.option("--adv-steps", type=click.IntRange(1), default=None,
              help="PGD steps per batch with --adv-eps [default: 5].")
@click.option("--adv-step-size", type=click.FloatRange(0, min_open=True), default=None,
              help="PGD step at the full --adv-eps; it shrinks with the ramp [default: 0.1].")
@click.option("--adv-ramp-epochs", type=click.FloatRange(0), default=None,
              help="Epochs over which --adv-eps ramps up from 0 [default: 2].")
@THREADS_OPTION
def train_command(dataset: str, out: Path, **options: Any) -> None:
    """Train the paper's MNIST / CIFAR-10 network (Appendix F) and save it as safetensors.

    The shipped weights were made with: strattack train --dataset mnist --data-root
    ../shared/data --out mnist.safetensors (and --dataset cifar10 on a CIFAR-10 root); the
    distilled MNIST student with --defense distillation --temperature 100 --epochs 4; the
    MNIST zoo (mnist_mlp, ...) with --arch ARCH --epochs 3 (mnist_seed1: --seed 1); the
    robust MNIST model with --adv-eps 0.3 --epochs 4 --adv-ramp-epochs 1.
    Evaluate weights you trained with: strattack eval --model mnist --weights FILE ...
    """
    from .commands.train import train

    with _library_errors():
        train(dataset, out, **options)


def _warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


@main.command("eval")
@eval_options
def eval_command(config_path: Path | None, **options: Any) -> None:
    """Attack many images x targets; write each finished example to a resumable SQLite store.

    Re-running the same command resumes: finished examples are skipped. Example:

    \b
        strattack eval --dataset mnist --data-root ../shared/data -n 100 --targets all \\
            -a str_attack -a cw_l2 -o runs/mnist
    """
    from .commands.eval import run_eval

    options["model"] = options.pop("model_spec")
    with _library_errors():
        try:
            summary = run_eval(config_path, options, log=click.echo, warn=_warn)
        except KeyboardInterrupt:
            raise click.ClickException("interrupted: finished work is saved; re-run the "
                                       "same command to resume") from None
    click.echo(f"done: {summary.line()}")


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--rank-by", type=click.Choice(["l0", "l1", "l2", "linf"]), default="l2",
              show_default=True, help="Norm that decides the easiest / hardest target per image.")
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="Also write l0 histograms and group-sparsity heatmaps (PNG).")
@click.option("--examples", type=click.IntRange(0), default=4, show_default=True,
              help="Examples per attack in the heatmap figure.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder, to show originals and adversarial examples in the figure "
              "[default: the one eval recorded in the store].")
@click.option("--ratio", "ratios", nargs=2, multiple=True, metavar="NUM DEN",
              help="Also print NUM's mean l0, l2, pixel l0, clusters, d20 and passes over DEN's "
              "per case (attack labels), e.g. "
              "--ratio StrAttack 'C&W-l2'. Repeatable.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.csv, report.json, ratios.json and the figures "
              "[default: RUN_DIR].")
@click.option("--convention", type=click.Choice(["ours", "paper"]), default="ours",
              show_default=True, help="paper: the authors' evaluation code (best/worst per "
              "norm, one random target per image for the average, l0 at |delta| >= 1e-7); "
              "written as report-paper.csv/json.")
@click.option("--html", is_flag=True,
              help="Also write report.html: one self-contained page (works offline) of the "
              "tables, the figures and a gallery of examples.")
@click.option("--gallery", type=click.IntRange(0), default=4, show_default=True,
              help="With --html: examples (adversarial under every attack) in the gallery.")
@click.option("--common", is_flag=True,
              help="Tables and ratios over only the examples (image, target) that every attack "
              "finished, so all attacks are compared on the same examples (a merged store of "
              "runs of different sizes).")
@click.option("--patch", type=click.IntRange(1), default=8, show_default=True,
              help="Window side k of the d20 column: the k x k windows (stride 1) holding a "
              "changed pixel.")
@click.option("--is", "is_percentile", type=click.FloatRange(0, 100, max_open=True),
              default=None, metavar="P",
              help="Also the interpretability score at the P-th ASM percentile, ours and GSE's "
              "(loads the store's model and images), e.g. --is 90.")
def report_command(run_dir: Path, rank_by: str, figures: bool, examples: int,
                   data_root: Path | None, ratios: tuple[tuple[str, str], ...],
                   out: Path | None, convention: str, html: bool, gallery: int,
                   common: bool, patch: int, is_percentile: float | None) -> None:
    """Best / average / worst-case table of a finished (or partial) `strattack eval` run.

    Prints Markdown and writes report.csv and report.json (+ PNG figures, + report.html with
    --html) into RUN_DIR or --out. The store is only read (it may be in a read-only folder)."""
    from .commands.report import report

    with _library_errors():
        result = report(run_dir, rank_by, figures, examples, data_root, ratios, out, convention,
                        html=html, gallery=gallery, common=common, patch=patch,
                        is_percentile=is_percentile)
    _echo_lines(result.lines)
    click.echo("wrote " + ", ".join(str(p) for p in result.written))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("shards", nargs=-1, required=True,
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
def merge(run_dir: Path, shards: tuple[Path, ...]) -> None:
    """Combine shard stores (from `eval --shard`) into RUN_DIR/results.sqlite. Idempotent."""
    from .evaluation.store import merge_stores

    with _library_errors(), store_errors(run_dir / STORE_NAME):
        added = merge_stores(run_dir / STORE_NAME, shards)
    if len(added) < len(shards):
        _warn("a store listed more than once was merged once")
    for src, n in added.items():
        click.echo(f"{src}: {n} examples added")
    click.echo(f"merged into {run_dir / STORE_NAME}")


@main.command("explain")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-a", "--attack", "attacks", multiple=True,
              help="Attack labels in the store to compare (default: the first two).")
@click.option("-n", "--num-examples", type=click.IntRange(1), default=None,
              help="With RUN_DIR: examples (adversarial under every attack) to measure "
              "[default: 100].")
@click.option("--dataset", default=None, help="Without RUN_DIR: mnist, cifar10 or an image folder.")
@click.option("--bundled", is_flag=True,
              help="Without RUN_DIR: use the shipped test images (--dataset defaults to mnist).")
@click.option("--model", "model_spec", default=None, help="Without RUN_DIR: model (as in eval).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Without RUN_DIR: weights of a module:callable or architecture model "
              "(.safetensors or a state dict), as in eval.")
@click.option("--no-weights", is_flag=True,
              help="Without RUN_DIR: a module:callable model without --weights, the network as "
              "the callable builds it (randomly initialised unless it loads weights itself).")
@click.option("--image", "image_index", type=int, default=None,
              help="Without RUN_DIR: index of the image to attack with StrAttack and C&W-l2.")
@click.option("--target", type=int, default=None, help="Without RUN_DIR: target class.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder [default: with RUN_DIR, the one eval recorded in the store; "
              "else $STRATTACK_DATA or ./data].")
@click.option("--figures", "num_figures", type=click.IntRange(0), default=3, show_default=True,
              help="Examples drawn as Fig. 3(b) / Fig. 4 panels.")
@click.option("--mask-percentile", type=click.FloatRange(0, 100), default=90, show_default=True,
              help="nu of B_ASM in the Fig. 3(b) panels (the paper uses the 90th percentile).")
@click.option("--asm-variant", type=click.Choice(["61", "60"]), default="61", show_default=True,
              help="ASM of eq. (61) (true vs target logit) or eq. (60) (target vs all others).")
@click.option("--cam-layer", default=None, metavar="NAME",
              help="Use Grad-CAM at this module of the model (a model.named_modules() name, as "
              "the output's note prints it, e.g. model.features.12) [default: exact CAM for a "
              "GAP + linear head, else Grad-CAM after the last convolution].")
@click.option("--device", default="cpu", show_default=True, callback=device_callback,
              help="torch device, e.g. cpu or cuda.")
@THREADS_OPTION
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: RUN_DIR/explain, or ./explain].")
def explain_command(run_dir: Path | None, **options: Any) -> None:
    """Interpretability of perturbations (paper section 6): ASM-based IS vs percentile (Fig. 3a),
    CAM-based IS (exact CAM or Grad-CAM, as the output says), and ASM / CAM panels (Fig. 3b,
    Fig. 4), from a stored evaluation or by attacking one image (--dataset, --image, --target)
    with StrAttack and C&W-l2."""
    from .commands.explain import ExplainOptions, explain

    with _library_errors():
        result = explain(ExplainOptions(run_dir, **options))
    _echo_lines(result.lines)
    click.echo("wrote " + ", ".join(str(p) for p in result.written))


@main.command("transfer")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--model", "models", multiple=True, required=True,
              help="Receiving model (repeatable): a bundled name or package.module:callable, as "
              "in eval; a model with an input_size (H, W) attribute gets the images resized.")
@click.option("--weights", multiple=True, metavar="[SPEC=]FILE",
              help="Weights of a module:callable or architecture model; with several --model "
              "write SPEC=FILE (repeatable).")
@click.option("--no-weights", is_flag=True,
              help="Transfer to each module:callable --model without --weights as the callable "
              "builds it (randomly initialised unless it loads weights itself).")
@STORE_DATA_ROOT_OPTION
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True, callback=device_callback,
              help="torch device, e.g. cpu or cuda.")
@THREADS_OPTION
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for transfer.sqlite, transfer.csv, transfer.json and transfer.png "
              "[default: RUN_DIR].")
def transfer_command(run_dir: Path, **options: Any) -> None:
    """Transferability (Table 3): evaluate the adversarial examples of a `strattack eval` run on
    other models, forward passes only. Only the examples that succeeded on the source model are
    transferred; each model's clean baseline (chance) is shown beside its rates. Resumable:
    results go to OUT/transfer.sqlite per batch and a rerun skips what is done."""
    from .commands.transfer import transfer

    with _library_errors(), store_errors(run_dir / STORE_NAME):
        result = transfer(run_dir, log=click.echo, **options)
    _echo_lines(result.lines)
    click.echo("wrote " + ", ".join(str(p) for p in result.written))


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--format", "format", type=click.Choice(["npz", "png"]), default="npz",
              show_default=True, help="npz: OUT/adversarial.npz, float32 arrays adv, image, "
              "target, label, attack, success; png: 8-bit OUT/png/ATTACK/IMAGE_TARGET.png and "
              "OUT/png/index.csv.")
@click.option("-a", "--attack", "attacks", multiple=True, metavar="LABEL",
              help="Attack label in the store (repeatable) [default: every attack].")
@click.option("--only-successful/--all", "only_successful", default=True, show_default=True,
              help="Only the examples that succeeded on the store's model, or the failed "
              "ones too (with success = 0).")
@click.option("--recheck/--no-recheck", default=None,
              help="png: run the store's model on the 8-bit images and count how many stay "
              "adversarial [default: when the model loads].")
@STORE_DATA_ROOT_OPTION
@click.option("--device", default="cpu", show_default=True, callback=device_callback,
              help="torch device of the re-check.")
@THREADS_OPTION
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: RUN_DIR].")
def export_command(run_dir: Path, **options: Any) -> None:
    """Adversarial examples of a `strattack eval` run for use elsewhere: clamp(x0 + delta, 0, 1)
    as float32 arrays (npz) or 8-bit PNGs, whose rounding can undo an attack: with --format png
    the store's model re-checks them and the command prints, per attack, how many stay
    adversarial. The store is only read."""
    from .commands.export import ExportOptions, export

    with _library_errors(), store_errors(run_dir / STORE_NAME):
        result = export(ExportOptions(run_dir, **options))
    _echo_lines(result.lines)
    click.echo("wrote " + ", ".join(str(p) for p in result.written))

if __name__ == "__main__":  # pragma: no cover
    main()
