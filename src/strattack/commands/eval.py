"""Attack many images x targets into a resumable store, in this process or on a Ray cluster:
the library function behind ``strattack eval``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluation.config import EvalConfig
from ..evaluation.distributed import RayOptions, evaluate_on_ray
from ..evaluation.evaluate import evaluate
from ..evaluation.runner import RunSummary
from .common import Say, store_errors

__all__ = ["run_eval", "ray_options"]

RAY_COMPANIONS = ("ray_tasks", "gpus_per_task", "cpus_per_task")


def run_eval(config_path: Path | None, options: dict[str, Any], log: Say, warn: Say
             ) -> RunSummary:
    """The evaluation of the TOML file ``config_path`` (or None) overridden by the command-line
    ``options`` (EvalConfig field names, None where not given; with ``ray`` and its companions,
    on Ray): every finished example written to the store as it finishes, so that a rerun
    resumes. A store SQLite cannot read is a StoreError naming the file."""
    ray = ray_options(options)
    config = EvalConfig.from_sources(config_path, options, device_here=ray is None)
    with store_errors(config.store_path):
        if ray is None:
            return evaluate(config, log=log, warn=warn)
        return evaluate_on_ray(config, ray, log=log, warn=warn)


def ray_options(options: dict[str, Any]) -> RayOptions | None:
    """RayOptions of ``ray`` and its companions (taken out of ``options``); None without
    ``ray``. ConfigError for a companion without ``ray``."""
    address = options.pop("ray")
    given = {name: options.pop(name) for name in RAY_COMPANIONS}
    if address is None:
        stray = [name for name, value in given.items() if value is not None]
        if stray:
            raise ConfigError(f"--{stray[0].replace('_', '-')} needs --ray ADDRESS")
        return None
    chosen = {("tasks" if name == "ray_tasks" else name): value
              for name, value in given.items() if value is not None}   # the rest: RayOptions'
    return RayOptions(address, **chosen)
