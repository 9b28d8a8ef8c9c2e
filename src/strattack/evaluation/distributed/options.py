"""The options of an evaluation on Ray, and the checks they pass before any work: the address's
form, something answering there, the configuration's fit with Ray, and ``ray`` installed."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from types import ModuleType

from ...errors import ConfigError
from .. import defaults
from ..config import EvalConfig, parse_device

__all__ = ["RayOptions", "SPECIAL_ADDRESSES", "TASKS_PER_SLOT", "check_compatible",
           "check_reachable", "endpoint", "import_ray", "task_size"]

#: Default Ray tasks per task the cluster runs at once: examples differ a lot in cost and hash
#: shards are fixed in advance, so smaller shards keep every worker busy to the end.
TASKS_PER_SLOT = 4

#: Addresses that name no host: ``local`` (start Ray here), ``auto`` (this machine's cluster).
SPECIAL_ADDRESSES = ("local", "auto")

_CONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class RayOptions:
    """Where and how an evaluation runs on Ray.

    ``address``: ``local`` (start Ray on this machine), ``auto`` (the cluster this machine
    joined with ``ray start``), ``HOST:PORT`` (a head node, port 6379 by default) or
    ``ray://HOST:PORT`` (Ray Client, port 10001 by default). ``tasks``: Ray tasks, one hash
    shard each (default: :data:`TASKS_PER_SLOT` x the tasks the cluster runs at once).
    ``cpus_per_task`` is also each task's torch threads; ``gpus_per_task`` may be a fraction
    (0.25: four tasks share a GPU).
    """

    address: str
    tasks: int | None = None
    gpus_per_task: float = 0.0
    cpus_per_task: int = 1
    max_retries: int = 3

    def __post_init__(self) -> None:
        endpoint(self.address)
        if self.tasks is not None and self.tasks < 1:
            raise ConfigError(f"--ray-tasks must be >= 1, got {self.tasks}")
        if self.gpus_per_task < 0:
            raise ConfigError(f"--gpus-per-task must be >= 0, got {self.gpus_per_task}")
        if self.cpus_per_task < 1:
            raise ConfigError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")


def task_size(options: RayOptions) -> str:
    """What one task holds, for messages: ``"1 CPU, 0.5 GPU"``."""
    size = f"{options.cpus_per_task} CPU"
    return size + (f", {options.gpus_per_task:g} GPU" if options.gpus_per_task else "")


def endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address, None for ``local`` and ``auto``."""
    if address in SPECIAL_ADDRESSES:
        return None
    rest = address.removeprefix("ray://")
    host, colon, port = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")          # [::1]:6379
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536) or "/" in rest:
        raise ConfigError(f"--ray {address!r}: expected local, auto, HOST:PORT (a head node, "
                          "e.g. head:6379) or ray://HOST:PORT (Ray Client, e.g. "
                          "ray://head:10001)")
    return host, int(port)


def check_reachable(address: str) -> None:
    """A quick TCP connection to a host's address first: Ray itself retries an unreachable
    address for a minute before it fails."""
    host_port = endpoint(address)
    if host_port is None:
        return
    try:
        socket.create_connection(host_port, timeout=_CONNECT_SECONDS).close()
    except OSError as err:
        raise ConfigError(f"--ray {address}: nothing answers at {host_port[0]}:{host_port[1]} "
                          f"({err.strerror or err}); start a cluster with `ray start --head` "
                          "(a ray:// address needs its Ray Client port, 10001 by default) or use "
                          "--ray local") from err


def check_compatible(config: EvalConfig, options: RayOptions) -> None:
    """The options of ``config`` that Ray decides itself (shards, threads, GPU placement) left
    to Ray, and the GPUs asked for where the run computes."""
    if config.shard != defaults.SHARD:
        raise ConfigError("--shard with --ray: Ray splits the run into its own shards "
                          "(--ray-tasks); leave --shard out")
    if config.threads is not None:
        raise ConfigError("--threads with --ray: give each task's torch threads with "
                          "--cpus-per-task")
    _check_gpus(config.device, options)


def _check_gpus(device_name: str, options: RayOptions) -> None:
    device = parse_device(device_name)
    if device.type == "cuda" and device.index is not None:
        raise ConfigError(f"--device {device_name} with --ray: use --device cuda; Ray gives "
                          "each task its GPU")
    if device.type == "cuda" and not options.gpus_per_task:
        raise ConfigError("--device cuda with --ray needs --gpus-per-task (e.g. 1, or 0.25 for "
                          "four tasks per GPU); Ray hides the GPUs from tasks without one")
    if device.type != "cuda" and options.gpus_per_task:
        raise ConfigError(f"--gpus-per-task with --device {device_name}: the tasks would hold "
                          "GPUs and compute elsewhere; add --device cuda")


def import_ray() -> ModuleType:
    """``ray``, or a ConfigError saying how to install it (the ``[ray]`` extra)."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError("--ray needs Ray, which is not installed: "
                          "pip install 'strattack[ray]'") from err
    return ray
