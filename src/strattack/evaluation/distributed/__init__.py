"""An evaluation on a Ray cluster: the library function behind ``strattack eval --ray ADDRESS``.

The run is cut into hash shards (:func:`~..examples.shard_of`, the split of ``--shard i/N``),
one Ray task each. A task attacks its shard into a store on its worker's own disk and returns
the file; the driver alone writes ``OUT/results.sqlite``, merging each shard as it arrives with
the idempotent :func:`~..store.merge_stores` (SQLite is not safe with several writers on a
shared filesystem, and workers need not share one).

Faults: a task whose worker dies is run again by Ray (``max_retries``) from scratch into a new
store, and only a finished task's store is merged, so no example is recorded twice. The driver
reads the store before it schedules anything, so a driver killed and restarted with the same
command schedules only the examples still missing.

One first task chooses the images and examples on a worker, so the driver needs neither the
data nor the device (a laptop may send work to GPU nodes); each shard task then loads only its
own images. Data and weights reach workers by path (the same absolute path on every node:
shared storage) or from the installed package (bundled models and images). ``ray`` (the
``[ray]`` extra) is imported only when a run uses it.

Modules: :mod:`.options` (the options and the checks before any work), :mod:`.driver` (this
process: connecting, scheduling, merging), :mod:`.worker` (what the Ray tasks run).
"""
from .driver import evaluate_on_ray
from .options import TASKS_PER_SLOT, RayOptions

__all__ = ["RayOptions", "TASKS_PER_SLOT", "evaluate_on_ray"]
