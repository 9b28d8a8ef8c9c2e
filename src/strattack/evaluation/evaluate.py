"""Run a configured evaluation: load the model and the images, choose the examples, attack them
into the run's store. The library function behind ``strattack eval``."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch

from ..data import default_data_root
from ..data.evaluation_data import EvaluationData, load_evaluation_data
from ..errors import ConfigError
from ..models.loading import load_model
from .config import STORE_NAME, EvalConfig, shown
from .runner import RunSummary, device_description, run_evaluation
from .selection import drop_misclassified, first_correct
from .store import ResultStore
from .tasks import make_tasks, true_class_targets

__all__ = ["evaluate"]

Say = Callable[[str], None]


def evaluate(config: EvalConfig, log: Say = print, warn: Say = print) -> RunSummary:
    """Attack the configured images x targets into ``config.store_path``; resumable (finished
    examples are skipped). ``log`` gets the header and progress lines, ``warn`` what was left
    out and why."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if not config.named_dataset and not Path(config.dataset).is_dir():
        raise ConfigError(f"dataset {config.dataset!r} is neither one of mnist, cifar10 nor an "
                          "existing image folder")
    model = load_model(config.model_spec, config.weights, device=config.device)
    data = _images(config, model, warn)
    tasks = _tasks(config, data, warn)
    log(f"{data.name}: {len(data.ids)} images x targets={_targets_text(config)} -> "
        f"{len(tasks)} examples; attacks: {', '.join(s.display for s in config.attacks)}; "
        f"shard {config.shard[0]}/{config.shard[1]}; device "
        f"{device_description(torch.device(config.device))}; store {config.store_path}")
    with ResultStore(config.store_path, store_meta(config, data)) as store, ExitStack() as stack:
        return run_evaluation(model, data.images.to(config.device), data.labels, tasks,
                              config.attacks, store, batch_size=config.batch_size,
                              shard=config.shard, group_size=data.group_size,
                              progress=config.progress, ids=data.ids.tolist(),
                              finished_elsewhere=_earlier(config, data, stack), log=log)


def _targets_text(config: EvalConfig) -> str:
    t = config.targets
    return t if isinstance(t, str) else ",".join(map(str, t))


def _images(config: EvalConfig, model: Callable, warn: Say) -> EvaluationData:
    """The chosen images the model classifies correctly: the first ``num_images`` of them, or
    those of ``indices`` (the misclassified ones left out with a warning: an attack on them
    "succeeds" for free, l0 = 0, and would skew every mean)."""
    # An image folder is cropped to the model's input size (EfficientNet-Lite1: 240) if it
    # declares one; else 224.
    size = int(getattr(model, "input_size", (224, 224))[0])
    if config.indices is None:
        # Only the chosen images are kept (an image folder is decoded only as far as needed).
        return first_correct(model, config.dataset, config.num_images, config.data_root,
                             config.bundled, config.download, device=config.device,
                             split=config.split, image_size=size)
    try:
        data = load_evaluation_data(config.dataset, config.data_root, config.bundled,
                                    config.download, ids=config.indices, split=config.split,
                                    image_size=size)
    except ConfigError as err:
        raise ConfigError(f"--indices: {err}") from err
    data, misclassified = drop_misclassified(model, data, config.device)
    if misclassified:
        warn(f"skipping {len(misclassified)} of {len(config.indices)} images that the model "
             f"already misclassifies (--indices {shown(misclassified)})")
    if not len(data.ids):
        raise ConfigError("--indices: the model misclassifies every chosen image; nothing to "
                          "attack")
    return data


def _tasks(config: EvalConfig, data: EvaluationData, warn: Say) -> list[tuple[int, int]]:
    ids, labels = data.ids.tolist(), data.labels.tolist()
    try:
        tasks = make_tasks(ids, labels, config.targets, data.num_classes, config.num_targets,
                           config.seed)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    same = true_class_targets(ids, labels, config.targets)
    if same:
        warn(f"left out {len(same)} (image, target) pairs whose target is the image's true "
             f"class: {shown(same)}")
    if not tasks:
        raise ConfigError("no (image, target) example left to attack; choose other --targets "
                          "or images")
    return tasks


def store_meta(config: EvalConfig, data: EvaluationData) -> dict[str, str]:
    """What a store must agree with to be resumed (plus where the images were, not compared)."""
    meta = {"dataset": config.dataset if config.named_dataset
            else str(Path(config.dataset).resolve()),
            "bundled": str(config.bundled), "model": config.model_spec,
            "weights": str(config.weights), "group_size": str(data.group_size)}
    if config.split != "test":      # recorded only then: earlier test-split stores resume
        meta["split"] = config.split
    if config.named_dataset and not config.bundled:
        # Where the images were (absolute): report and explain read them back from there.
        meta["data_root"] = str(Path(config.data_root or default_data_root()).resolve())
    return meta


def _earlier(config: EvalConfig, data: EvaluationData, stack: ExitStack) -> list[ResultStore]:
    """A shard skips what an unsharded run in the same folder already finished (the merge keeps
    both), so a single-process run can be split into shards midway."""
    unsharded = config.out / STORE_NAME
    if config.shard == (0, 1) or not unsharded.exists():
        return []
    meta = store_meta(config, data)
    return [stack.enter_context(ResultStore(unsharded, meta, read_only=True))]
