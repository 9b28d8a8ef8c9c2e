"""Run a configured evaluation: load the model and the images, choose the examples, attack them
into the run's store. The library function behind ``strattack eval``."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..data import default_data_root
from ..data.evaluation_data import EvaluationData, load_evaluation_data
from ..errors import ConfigError
from ..models.loading import is_user_model, load_model
from . import defaults
from .config import STORE_NAME, EvalConfig, parse_device, shown, targets_text
from .runner import RunSummary, device_description, run_evaluation
from .selection import drop_misclassified, first_correct
from .sqlite_store import MetaValue
from .store import ResultStore
from .examples import Example, make_examples, true_class_targets

__all__ = ["Prepared", "evaluate", "images_by_id", "prepare", "run_header", "set_up",
           "store_meta", "weights_used"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """What a run attacks, before any attack: the model, the chosen images and every example of
    the run (all shards: a shard picks its own from them), and the device it computes on."""

    model: Callable[[Tensor], Tensor]
    data: EvaluationData
    examples: list[Example]
    device: torch.device


def evaluate(config: EvalConfig, log: Say = print, warn: Say = print) -> RunSummary:
    """Attack the configured images x targets into ``config.store_path``; resumable (finished
    examples are skipped). ``log`` gets the header and progress lines, ``warn`` what was left
    out and why."""
    run = prepare(config, warn)
    data = run.data
    log(run_header(config, data.name, len(data.ids), len(run.examples),
                   f"shard {config.shard[0]}/{config.shard[1]}; device "
                   f"{device_description(run.device)}"))
    meta = store_meta(config, data.group_size)
    with ResultStore(config.store_path, meta) as store, ExitStack() as stack:
        return run_evaluation(run.model, data.images.to(run.device), data.labels, run.examples,
                              config.attacks, store, batch_size=config.batch_size,
                              shard=config.shard, group_size=data.group_size,
                              progress=config.progress, ids=data.ids.tolist(),
                              finished_elsewhere=_earlier(config, data, stack), log=log,
                              seed=config.seed)


def prepare(config: EvalConfig, warn: Say = print) -> Prepared:
    """Load the model, choose the images it classifies correctly and the examples to attack
    (``warn`` says what was left out) after :func:`set_up`."""
    device = set_up(config)
    if not config.named_dataset and not Path(config.dataset).is_dir():
        raise ConfigError(f"dataset {config.dataset!r} is neither one of mnist, cifar10 nor an "
                          "existing image folder")
    model = load_model(config.model_spec, config.weights, device=device)
    data = _images(config, model, device, warn)
    return Prepared(model, data, _examples(config, data, warn), device)


def set_up(config: EvalConfig) -> torch.device:
    """Seed torch and set its CPU threads as configured (an example's draws and seconds depend
    on both); the device the run computes on."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    return parse_device(config.device)


def run_header(config: EvalConfig, dataset: str, images: int, examples: int,
               placement: str) -> str:
    """The line a run starts with: what it attacks, where (``placement``: shard and device, or
    the Ray cluster) and into which store."""
    return (f"{dataset}: {images} images x targets={targets_text(config.targets)} -> {examples} "
            f"examples; attacks: {', '.join(s.display for s in config.attacks)}; {placement}; "
            f"store {config.store_path}")


def images_by_id(config: EvalConfig, model: Callable, ids: Sequence[int]) -> EvaluationData:
    """The images ``ids`` of the configured dataset (in this order), sized for the model."""
    return load_evaluation_data(config.dataset, config.data_root, config.bundled,
                                config.download, ids=ids, split=config.split,
                                image_size=_input_size(model))


def _input_size(model: Callable) -> int:
    """The square side an image folder is cropped to: the model's input size if it declares
    one (EfficientNet-Lite1: 240), else 224."""
    return int(getattr(model, "input_size", (224, 224))[0])


def _images(config: EvalConfig, model: Callable, device: torch.device,
            warn: Say) -> EvaluationData:
    """The chosen images the model classifies correctly: the first ``num_images`` of them, or
    those of ``indices`` (the misclassified ones left out with a warning: an attack on them
    "succeeds" for free, l0 = 0, and would skew every mean)."""
    if config.indices is None:
        # Only the chosen images are kept (an image folder is decoded only as far as needed).
        data = first_correct(model, config.dataset, config.num_images, config.data_root,
                             config.bundled, config.download, device=device,
                             split=config.split, image_size=_input_size(model))
        if config.num_images is not None and len(data.ids) < config.num_images:
            where = f"the bundled {data.name} images" if config.bundled else data.name
            warn(f"-n {config.num_images}: only {len(data.ids)} of {where} are classified "
                 f"correctly by the model; attacking those {len(data.ids)}")
        return data
    try:
        data = images_by_id(config, model, config.indices)
    except ConfigError as err:
        raise ConfigError(f"--indices: {err}") from err
    data, misclassified = drop_misclassified(model, data, device)
    if misclassified:
        warn(f"skipping {len(misclassified)} of {len(config.indices)} images that the model "
             f"already misclassifies (--indices {shown(misclassified)})")
    if not len(data.ids):
        raise ConfigError("--indices: the model misclassifies every chosen image; nothing to "
                          "attack")
    return data


def _examples(config: EvalConfig, data: EvaluationData, warn: Say) -> list[Example]:
    ids, labels = data.ids.tolist(), data.labels.tolist()
    try:
        examples = make_examples(ids, labels, config.targets, data.num_classes,
                                 config.num_targets, config.seed)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    same = true_class_targets(ids, labels, config.targets)
    if same:
        warn(f"left out {len(same)} (image, target) pairs whose target is the image's true "
             f"class: {shown(same)}")
    if not examples:
        raise ConfigError("no (image, target) example left to attack; choose other --targets "
                          "or images")
    return examples


def store_meta(config: EvalConfig, group_size: int) -> dict[str, MetaValue]:
    """What a store must agree with to be resumed (plus where the images were, not compared);
    ``group_size``: the dataset's (:class:`EvaluationData`)."""
    meta: dict[str, MetaValue] = {
        "dataset": config.dataset if config.named_dataset
        else str(Path(config.dataset).resolve()),
        "bundled": config.bundled, "model": config.model_spec,
        "weights": None if config.weights is None else str(config.weights),
        "group_size": group_size}
    if config.no_weights:   # for report: no file, the network as the callable builds it
        meta["init"] = "callable"
    if config.split != "test":      # recorded only then: earlier test-split stores resume
        meta["split"] = config.split
    if config.named_dataset and not config.bundled:
        # Where the images were (absolute): report and explain read them back from there.
        meta["data_root"] = str(Path(config.data_root or default_data_root()).resolve())
    return meta


def weights_used(meta: Mapping[str, MetaValue]) -> str:
    """The weights a store's examples were made with, as :func:`store_meta` records them: the
    file, none (``--no-weights``: as the callable builds it), or the bundled model's own."""
    if meta.get("weights") is not None:
        return str(meta["weights"])
    if meta.get("init") == "callable":
        return ("none (--no-weights: the network as the callable builds it, randomly "
                "initialised unless it loads weights itself)")
    # a user model: the store cannot say if the callable loads weights itself
    if is_user_model(str(meta.get("model", ""))):
        return "none given (the network as the callable builds it)"
    return "bundled"


def _earlier(config: EvalConfig, data: EvaluationData, stack: ExitStack) -> list[ResultStore]:
    """A shard skips what an unsharded run in the same folder already finished (the merge keeps
    both), so a single-process run can be split into shards midway."""
    unsharded = config.out / STORE_NAME
    if config.shard == defaults.SHARD or not unsharded.exists():
        return []
    meta = store_meta(config, data.group_size)
    return [stack.enter_context(ResultStore(unsharded, meta, read_only=True))]
