"""The defaults of an evaluation, each written once: :class:`~.config.EvalConfig`, the library
functions under it (:func:`~.runner.run_evaluation`, :func:`~.examples.make_examples`) and the
command line's help all read them here."""
from __future__ import annotations

__all__ = ["BATCH_SIZE", "DEVICE", "NUM_TARGETS", "SEED", "SHARD", "SPLIT", "TARGETS"]

BATCH_SIZE = 64
DEVICE = "cpu"
NUM_TARGETS = 1             # targets per image with targets = "random"
SEED = 0
SHARD = (0, 1)              # the whole run, in one store: results.sqlite
SPLIT = "test"
TARGETS = "all"
