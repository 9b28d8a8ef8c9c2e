"""Option declarations of the command line (:mod:`strattack.cli`): those several commands share,
and ``eval``'s, which mirror the fields of :class:`~strattack.evaluation.config.EvalConfig`
(None where not given, so that a --config file's values stand)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .data.registry import NAMED_DATASETS
from .evaluation import defaults
from .evaluation.store import STORE_NAME

__all__ = ["DATASET_CHOICE", "THREADS_OPTION", "STORE_DATA_ROOT_OPTION", "device_callback",
           "eval_options"]

F = TypeVar("F", bound=Callable[..., Any])

DATASET_CHOICE = click.Choice(list(NAMED_DATASETS))


# One process per core is the efficient way to share a CPU: oversubscribed torch threads spin.
THREADS_OPTION = click.option("--threads", type=click.IntRange(1), default=None,
                              help="torch CPU threads (give parallel jobs 1 each).")


# Commands that read a store find the images where `eval` recorded them, unless moved.
STORE_DATA_ROOT_OPTION = click.option(
    "--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Dataset folder [default: the one eval recorded in the store].")


def device_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A --device value checked as it is parsed (a usage error naming the option)."""
    from .evaluation.config import check_device
    from .errors import ConfigError

    try:
        return None if value is None else check_device(value)
    except ConfigError as err:
        raise click.BadParameter(str(err)) from err


def eval_options(command: F) -> F:
    """``command`` with every option of ``strattack eval``."""
    for option in reversed(_EVAL_OPTIONS):
        command = option(command)
    return command


_EVAL_OPTIONS = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                  default=None, help="TOML file with any of the options below and [[attack]] tables; "
                  "command-line options override it."),
    click.option("--dataset", default=None,
                  help="mnist, cifar10 (exact test images 0..845) or an image folder with labels.csv "
                  "[default with --bundled: mnist]."),
    click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Folder with the MNIST / CIFAR-10 files (default: $STRATTACK_DATA or ./data)."),
    click.option("--split", type=click.Choice(["test", "train"]), default=None,
                  help=f"Dataset split to attack [default: {defaults.SPLIT}]; train makes "
                  "adversarial training data (train --defense adversarial --adv-examples OUT)."),
    click.option("--bundled", is_flag=True, default=None,
                  help="Use the 100 test images shipped with the package (no dataset files needed; "
                  "--dataset defaults to mnist)."),
    click.option("--download", is_flag=True, default=None,
                  help="Fetch missing MNIST / CIFAR-10 files into --data-root first (needs internet)."),
    click.option("--model", "model_spec", default=None,
                  help="Bundled model name (default: the dataset's) or package.module:callable."),
    click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Weights for a module:callable model (.safetensors or a state dict)."),
    click.option("--no-weights", is_flag=True, default=None,
                  help="Attack a module:callable model without --weights: the network as the "
                  "callable builds it (randomly initialised unless it loads weights itself)."),
    click.option("-a", "--attack", "attacks", multiple=True,
                  help="Attack to run (repeatable): str_attack, cw_l2, ead, fgm, ifgsm, ..."),
    click.option("--set", "settings", multiple=True, metavar="ATTACK.PARAM=VALUE",
                  help="Attack parameter (repeatable), e.g. --set cw_l2.max_iterations=100."),
    click.option("--only", "only", multiple=True, metavar="LABEL",
                  help="Run only these of the configured attacks (label or name; repeatable), "
                  "e.g. to extend a run with more images for some attacks."),
    click.option("-n", "--num-images", type=click.IntRange(1), default=None,
                  help="First N correctly classified images."),
    click.option("--indices", default=None, help="Comma-separated image indices instead of -n."),
    click.option("--targets", default=None,
                  help="all | random | next | untargeted | comma-separated classes "
                  f"[default: {defaults.TARGETS}]."),
    click.option("-k", "--num-targets", type=click.IntRange(1), default=None,
                  help="Targets per image for --targets random "
                  f"[default: {defaults.NUM_TARGETS}]."),
    click.option("--seed", type=int, default=None,
                  help="Seed of random targets and of each example's random draws (e.g. ifgsm's "
                  f"random start) [default: {defaults.SEED}]."),
    click.option("--batch-size", type=click.IntRange(1), default=None,
                  help=f"[default: {defaults.BATCH_SIZE}]"),
    click.option("--device", default=None, help=f"torch device [default: {defaults.DEVICE}]."),
    THREADS_OPTION,
    click.option("--shard", default=None, metavar="I/N", help="Run only shard I of N (0-based)."),
    click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help=f"Output folder; the store is OUT/{STORE_NAME} (per shard: "
                  "OUT/results-shard-I-of-N.sqlite)."),
    click.option("--progress/--no-progress", default=None,
                  help="Progress bar [default: on]."),
    click.option("--ray", default=None, metavar="ADDRESS",
                  help="Run on Ray (pip install 'strattack[ray]'): local (start Ray here), auto (this "
                  "machine's cluster), HOST:PORT or ray://HOST:PORT. This process alone writes OUT."),
    click.option("--ray-tasks", type=click.IntRange(1), default=None,
                  help="Shards with --ray [default: 4x the tasks the cluster runs at once]."),
    click.option("--gpus-per-task", type=click.FloatRange(0), default=None,
                  help="GPUs per --ray task (with --device cuda); 0.25: four tasks per GPU."),
    click.option("--cpus-per-task", type=click.IntRange(1), default=None,
                  help="CPUs per --ray task, also its torch threads [default: 1]."),
]
