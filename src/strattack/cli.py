"""Command line: ``strattack demo | train | eval | report | merge``. Thin: parsing and printing;
the work is done by library functions."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import torch

from .data.registry import NAMED_DATASETS
from .evaluation.store import STORE_NAME

DATASET_CHOICE = click.Choice(list(NAMED_DATASETS))


# One process per core is the efficient way to share a CPU: oversubscribed torch threads spin.
THREADS_OPTION = click.option("--threads", type=click.IntRange(1), default=None,
                              help="torch CPU threads (give parallel jobs 1 each).")


def _device_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from .evaluation.config import check_device
    from .errors import ConfigError

    try:
        return None if value is None else check_device(value)
    except ConfigError as err:
        raise click.BadParameter(str(err)) from err


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
@click.option("--device", default="cpu", show_default=True, callback=_device_callback,
              help="torch device, e.g. cpu or cuda.")
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


@contextmanager
def _store_errors(path: Path) -> Iterator[None]:
    """A store that SQLite cannot read (not SQLite, truncated, corrupt) as a clear error naming
    the file, not a sqlite3 traceback."""
    from .evaluation.store import StoreError, store_error

    try:
        yield
    except StoreError as err:
        raise click.ClickException(str(err)) from err
    except sqlite3.DatabaseError as err:
        raise click.ClickException(str(store_error(path, err))) from err


def _writable_folder(folder: Path, what: str) -> Path:
    """``folder``, created if needed; a clear error before any work if it cannot be written
    (e.g. a run folder copied read-only)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.ClickException(f"cannot create {folder} for the {what} ({err.strerror}); "
                                   "choose another folder with -o/--out") from err
    if not os.access(folder, os.W_OK):
        raise click.ClickException(f"{folder} is not writable, so the {what} cannot go there; "
                                   "choose another folder with -o/--out")
    return folder


def _warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


@main.command("eval")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="TOML file with any of the options below and [[attack]] tables; "
              "command-line options override it.")
@click.option("--dataset", default=None,
              help="mnist, cifar10 (exact test images 0..845) or an image folder with labels.csv "
              "[default with --bundled: mnist].")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the MNIST / CIFAR-10 files (default: $STRATTACK_DATA or ./data).")
@click.option("--bundled", is_flag=True, default=None,
              help="Use the 100 test images shipped with the package (no dataset files needed; "
              "--dataset defaults to mnist).")
@click.option("--download", is_flag=True, default=None,
              help="Fetch missing MNIST / CIFAR-10 files into --data-root first (needs internet).")
@click.option("--model", "model_spec", default=None,
              help="Bundled model name (default: the dataset's) or package.module:callable.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Weights for a module:callable model (.safetensors or a state dict).")
@click.option("-a", "--attack", "attacks", multiple=True,
              help="Attack to run (repeatable): str_attack, cw_l2, ead, fgm, ifgsm, ...")
@click.option("--set", "settings", multiple=True, metavar="ATTACK.PARAM=VALUE",
              help="Attack parameter (repeatable), e.g. --set cw_l2.max_iterations=100.")
@click.option("--only", "only", multiple=True, metavar="LABEL",
              help="Run only these of the configured attacks (label or name; repeatable), "
              "e.g. to extend a run with more images for some attacks.")
@click.option("-n", "--num-images", type=click.IntRange(1), default=None,
              help="First N correctly classified images.")
@click.option("--indices", default=None, help="Comma-separated image indices instead of -n.")
@click.option("--targets", default=None,
              help="all | random | next | untargeted | comma-separated classes [default: all].")
@click.option("-k", "--num-targets", type=click.IntRange(1), default=None,
              help="Targets per image for --targets random [default: 1].")
@click.option("--seed", type=int, default=None, help="Seed of random targets and torch [default: 0].")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="[default: 64]")
@click.option("--device", default=None, help="torch device [default: cpu].")
@THREADS_OPTION
@click.option("--shard", default=None, metavar="I/N", help="Run only shard I of N (0-based).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Output folder; the store is OUT/{STORE_NAME} (per shard: "
              "OUT/results-shard-I-of-N.sqlite).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar [default: on].")
def eval_command(config_path: Path | None, **options: Any) -> None:
    """Attack many images x targets; write each finished example to a resumable SQLite store.

    Re-running the same command resumes: finished examples are skipped. Example:

    \b
        strattack eval --dataset mnist --data-root ../shared/data -n 100 --targets all \\
            -a str_attack -a cw_l2 -o runs/mnist
    """
    from .evaluation.config import EvalConfig
    from .evaluation.evaluate import evaluate

    options["model"] = options.pop("model_spec")
    with _library_errors():
        config = EvalConfig.from_sources(config_path, options)
        with _store_errors(config.store_path):
            try:
                summary = evaluate(config, log=click.echo, warn=_warn)
            except KeyboardInterrupt:
                raise click.ClickException("interrupted: finished batches are saved; re-run "
                                           "the same command to resume") from None
    click.echo(f"done: {summary.line()}")


@main.command()
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
              help="Also print NUM's mean l0 and l2 over DEN's per case (attack labels), e.g. "
              "--ratio StrAttack 'C&W-l2'. Repeatable.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.csv, report.json, ratios.json and the figures "
              "[default: RUN_DIR].")
def report(run_dir: Path, rank_by: str, figures: bool, examples: int,
           data_root: Path | None, ratios: tuple[tuple[str, str], ...], out: Path | None) -> None:
    """Best / average / worst-case table of a finished (or partial) `strattack eval` run.

    Prints Markdown and writes report.csv and report.json (+ PNG figures) into RUN_DIR or
    --out. The store is only read (it may be in a read-only folder)."""
    from .evaluation.report import (COST_COLUMNS, REPORT_COLUMNS, cost_rows, ratio_rows,
                                    report_rows, write_report)
    from .evaluation.store import ResultStore
    from .evaluation.summary import markdown_table

    path = run_dir / STORE_NAME
    if not path.is_file():
        shards = sorted(run_dir.glob("results-shard-*.sqlite"))
        hint = (f"; merge the shards first: strattack merge {run_dir} "
                + " ".join(str(s) for s in shards)) if shards else ""
        raise click.ClickException(f"no store {path}{hint}")
    out = _writable_folder(out or run_dir, "report")
    with _store_errors(path), ResultStore(path, read_only=True) as store:
        rows = report_rows(store, rank_by=rank_by)
        if not rows:
            raise click.ClickException(f"{path} has no finished examples yet")
        click.echo(markdown_table(rows, REPORT_COLUMNS))
        written = write_report(rows, out)
        if any(str(r["device"]).startswith("mixed") for r in rows):
            # s/ex is left out above where devices mix; give it per device instead.
            click.echo("\ncost per device (the attacks' examples ran on more than one):\n"
                       + markdown_table(cost_rows(store), COST_COLUMNS))
        if ratios:
            try:
                table = [r for num, den in ratios for r in ratio_rows(rows, num, den)]
            except ValueError as err:
                raise click.ClickException(str(err)) from err
            click.echo("\n" + markdown_table(table, ("ratio", "case", "l0", "l2")))
            ratio_path = out / "ratios.json"
            ratio_path.write_text(json.dumps(
                [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                 for r in table], indent=1) + "\n")
            written.append(ratio_path)
        if figures:
            from .evaluation.stored import load_store_context
            from .viz.report_figures import plot_group_heatmaps, plot_l0_histogram

            written.append(plot_l0_histogram(store, out / "l0_histogram.png"))
            try:
                context = load_store_context(store, data_root)
            except (FileNotFoundError, ValueError, ImportError) as err:
                context = None
                click.echo(f"note: heatmaps without the images ({err})")
            written.append(plot_group_heatmaps(store, out / "group_heatmaps.png", examples,
                                               context))
    click.echo(f"best/worst: easiest/hardest target by {rank_by}; norms are means over "
               "successful examples; passes/ex and s/ex over all examples")
    click.echo("wrote " + ", ".join(str(p) for p in written))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("shards", nargs=-1, required=True,
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
def merge(run_dir: Path, shards: tuple[Path, ...]) -> None:
    """Combine shard stores (from `eval --shard`) into RUN_DIR/results.sqlite. Idempotent."""
    from .evaluation.store import merge_stores

    try:
        with _store_errors(run_dir / STORE_NAME):
            added = merge_stores(run_dir / STORE_NAME, shards)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    if len(added) < len(shards):
        _warn("a store listed more than once was merged once")
    for src, n in added.items():
        click.echo(f"{src}: {n} examples added")
    click.echo(f"merged into {run_dir / STORE_NAME}")


def _load_from_store(run_dir: Path, attacks: tuple[str, ...], data_root: Path | None,
                     num: int, device: str) -> tuple[Any, ...]:
    """Model, data, rows, targets and perturbations of the first ``num`` examples that every
    chosen attack (default: the first two) got right, from a `strattack eval` store."""
    from .evaluation.report import store_labels
    from .evaluation.store import ResultStore
    from .evaluation.stored import common_successes, load_store_context

    path = run_dir / STORE_NAME
    if not path.is_file():
        raise click.ClickException(f"no store {path} (run `strattack eval ... -o {run_dir}`)")
    with _store_errors(path), ResultStore(path, read_only=True) as store:
        try:
            found = common_successes(store, list(attacks) or list(store_labels(store).values())[:2],
                                     num)
            if not found.pairs:
                raise ValueError(f"no example is adversarial under all of {found.labels}")
            if any(t < 0 for _, t in found.pairs):
                raise ValueError("explain needs targeted examples (ASM is defined for a target)")
            model, data = load_store_context(store, data_root, device)
        except (FileNotFoundError, ValueError, ImportError) as err:
            raise click.ClickException(str(err)) from err
    return model, data, found.rows(data), found.targets, found.deltas


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-a", "--attack", "attacks", multiple=True,
              help="Attack labels in the store to compare (default: the first two).")
@click.option("-n", "--num-examples", type=click.IntRange(1), default=100, show_default=True,
              help="Examples (adversarial under every attack) to measure.")
@click.option("--dataset", default=None, help="Without RUN_DIR: mnist, cifar10 or an image folder.")
@click.option("--bundled", is_flag=True,
              help="Without RUN_DIR: use the shipped test images (--dataset defaults to mnist).")
@click.option("--model", "model_spec", default=None, help="Without RUN_DIR: model (as in eval).")
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
@click.option("--device", default="cpu", show_default=True, callback=_device_callback,
              help="torch device, e.g. cpu or cuda.")
@THREADS_OPTION
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: RUN_DIR/explain, or ./explain].")
def explain(run_dir: Path | None, attacks: tuple[str, ...], num_examples: int,
            dataset: str | None, bundled: bool, model_spec: str | None, image_index: int | None,
            target: int | None, data_root: Path | None, num_figures: int,
            mask_percentile: float, asm_variant: str, device: str, threads: int | None,
            out: Path | None) -> None:
    """Interpretability of perturbations (paper section 6): ASM-based IS vs percentile (Fig. 3a),
    CAM-based IS, and ASM / CAM panels (Fig. 3b, Fig. 4), from a stored evaluation or by
    attacking one image (--dataset, --image, --target) with StrAttack and C&W-l2."""
    from .interpretability import asm, cam
    from .interpretability.analysis import measure_interpretability

    if threads:
        torch.set_num_threads(threads)  # beside other jobs, oversubscribed threads spin
    if run_dir is not None:
        model, data, rows, targets, deltas = _load_from_store(run_dir, attacks, data_root,
                                                              num_examples, device)
        out = _writable_folder(out or run_dir / "explain", "explain figures")
    else:
        dataset = dataset or ("mnist" if bundled else None)
        if dataset is None or image_index is None or target is None:
            raise click.UsageError("give RUN_DIR, or --dataset, --image and --target")
        model, data, rows, targets, deltas = _attack_one(dataset, bundled, model_spec, data_root,
                                                         image_index, target, device)
        out = _writable_folder(out or Path("explain"), "explain figures")
    x = data.images[rows].to(device)
    y = data.labels[rows].to(device)
    targets = targets.to(device)
    curves = measure_interpretability(model, x, y, targets, deltas, variant=asm_variant)
    means = curves.means()
    if curves.cam_unavailable:
        click.echo(f"note: no CAM-based IS for this model: {curves.cam_unavailable}")
    out.mkdir(parents=True, exist_ok=True)
    from .viz.interpretability import plot_asm_panels, plot_cam_panels, plot_is_vs_percentile

    written = [plot_is_vs_percentile(curves.percentiles, means["asm"], out / "asm_is.png",
                                     title=f"ASM-based IS, {len(rows)} examples ({data.name})",
                                     zero_fraction=curves.zero_fraction["asm"])]
    if "cam" in means:
        written.append(plot_is_vs_percentile(
            curves.percentiles, means["cam"], out / "cam_is.png",
            title=f"CAM-based IS (CAM of the true class), {len(rows)} examples",
            ylabel="mean IS with B = CAM above percentile",
            xlabel="threshold (percentile of the CAM values)",
            zero_fraction=curves.zero_fraction["cam"], score_name="CAM"))
    summary = {"examples": len(rows), "asm_variant": asm_variant,
               "percentiles": list(curves.percentiles), **means}
    compared = list(deltas)[:2]
    if len(compared) == 2:      # is the first attack's IS above the second's beyond noise?
        summary["paired_difference"] = {"attacks": compared}
        for kind in means:
            mean, se, n = curves.paired_difference(compared[0], compared[1], kind)
            # one example has no standard error: null, not NaN (which is not valid JSON)
            summary["paired_difference"][kind] = {
                "mean": mean, "standard_error": se if n > 1 else None, "examples": n}
    (out / "interpretability.json").write_text(json.dumps(summary, indent=1) + "\n")
    written.append(out / "interpretability.json")
    for j in range(min(num_figures, len(rows))):
        xj, yj, tj = x[j : j + 1], y[j : j + 1], targets[j : j + 1]
        names = (data.class_names[int(yj)], data.class_names[int(tj)])
        tag = f"image{int(data.ids[rows[j]])}_target{int(tj)}"
        scores = asm(model, xj, yj, tj, variant=asm_variant)
        written.append(plot_asm_panels(xj[0], scores[0], {a: d[j] for a, d in deltas.items()},
                                       mask_percentile, out / f"asm_{tag}.png", class_names=names))
        if "cam" in means:
            cams = {"original": (cam(model, xj, yj)[0], cam(model, xj, tj)[0])}
            advs = {}
            for a, d in deltas.items():
                adv = (xj + d[j : j + 1].to(xj)).clamp(0, 1)
                advs[a] = adv[0]
                cams[a] = (cam(model, adv, yj)[0], cam(model, adv, tj)[0])
            written.append(plot_cam_panels(xj[0], advs, cams, out / f"cam_{tag}.png",
                                           class_names=names))
    header = " | ".join(f"{p:g}th" for p in curves.percentiles)
    click.echo(f"mean IS over {len(rows)} examples, threshold nu = percentile: {header}")
    for kind, table in means.items():
        for name, values in table.items():
            click.echo(f"  {kind.upper()} {name}: " + " | ".join(f"{v:.3f}" for v in values))
        if "paired_difference" in summary:
            pair = summary["paired_difference"][kind]
            if pair["standard_error"] is not None:
                head = f"mean ± standard error over {pair['examples']} examples"
                cells = [f"{m:+.3f}±{e:.3f}" for m, e in zip(pair["mean"], pair["standard_error"])]
            else:  # one example has no standard error
                head = "one example"
                cells = [f"{m:+.3f}" for m in pair["mean"]]
            click.echo(f"  {kind.upper()} {compared[0]} - {compared[1]} ({head}): "
                       + " | ".join(cells))
    click.echo("wrote " + ", ".join(str(p) for p in written))


def _attack_one(dataset: str, bundled: bool, model_spec: str | None, data_root: Path | None,
                image_index: int, target: int, device: str) -> tuple[Any, ...]:
    from . import cw_l2, str_attack
    from .data.evaluation_data import load_evaluation_data
    from .models.loading import load_model

    try:
        data = load_evaluation_data(dataset, data_root, bundled, ids=[image_index])
        model = load_model(model_spec or dataset, None, device=device)
    except (FileNotFoundError, ValueError, ImportError) as err:
        if "not in the dataset" in str(err):
            raise click.UsageError(f"--image: {err}") from err
        raise click.ClickException(str(err)) from err
    rows = data.rows([image_index])
    if not 0 <= target < data.num_classes or target == int(data.labels[rows[0]]):
        raise click.UsageError(f"--target must be a class in [0, {data.num_classes}) other than "
                               f"the true class {int(data.labels[rows[0]])}")
    x = data.images[rows].to(device)
    y = data.labels[rows].to(device)
    t = torch.tensor([target], device=device)
    size = data.group_size
    deltas = {}
    for name, result in (("StrAttack", str_attack(model, x, t, targeted=True, true_labels=y,
                                                  group_size=size, stride=size)),
                         ("C&W-l2", cw_l2(model, x, t, targeted=True, true_labels=y))):
        if not bool(result.success[0]):
            click.echo(f"note: {name} did not reach the target; its perturbation is shown anyway")
        deltas[name] = result.perturbation.detach()
    return model, data, rows, t, deltas


if __name__ == "__main__":  # pragma: no cover
    main()
