"""Which (image, target) examples an evaluation attacks, and how shards split them."""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import torch

from . import defaults

__all__ = ["Example", "UNTARGETED", "example_seed", "make_examples", "in_shard", "parse_shard",
           "shard_of", "true_class_targets"]

#: Target value stored for untargeted examples.
UNTARGETED = -1

#: One example of an evaluation: (image id, target class or :data:`UNTARGETED`).
Example = tuple[int, int]


def make_examples(images: Sequence[int], labels: Sequence[int], targets: str | Sequence[int],
                  num_classes: int, k: int = defaults.NUM_TARGETS,
                  seed: int = defaults.SEED) -> list[Example]:
    """(image, target) pairs, image-major.

    targets: ``"all"`` (every class but the true one), ``"random"`` (``k`` distinct random
    classes per image other than the true one, reproducible from ``seed`` and the image index,
    so the choice does not depend on which other images are evaluated), ``"next"`` ((label+1)
    mod classes), ``"untargeted"``, or an explicit list of classes (the true class is skipped).
    """
    examples: list[Example] = []
    for image, label in zip(images, labels):
        image, label = int(image), int(label)
        if targets == "all":
            chosen = [c for c in range(num_classes) if c != label]
        elif targets == "next":
            chosen = [(label + 1) % num_classes]
        elif targets == "untargeted":
            chosen = [UNTARGETED]
        elif targets == "random":
            if not 1 <= k < num_classes:
                raise ValueError(f"random targets need 1 <= k < {num_classes}, got k={k}")
            gen = torch.Generator().manual_seed(seed * 1_000_003 + image)
            others = [c for c in range(num_classes) if c != label]
            chosen = sorted(others[i] for i in torch.randperm(len(others), generator=gen)[:k])
        elif isinstance(targets, str):
            raise ValueError(f"unknown targets {targets!r}; expected all, random, next, "
                             "untargeted or a list of classes")
        else:
            bad = [c for c in targets if not 0 <= int(c) < num_classes]
            if bad:
                raise ValueError(f"target classes {bad} out of range [0, {num_classes})")
            chosen = [int(c) for c in targets if int(c) != label]
        examples += [(image, t) for t in chosen]
    return examples


def true_class_targets(images: Sequence[int], labels: Sequence[int],
                       targets: str | Sequence[int]) -> list[tuple[int, int]]:
    """The (image, target) pairs of an explicit target list that :func:`make_examples` leaves
    out because the target is the image's true class (nothing to attack): a caller should say so
    rather than report fewer examples without a word."""
    if isinstance(targets, str):
        return []
    wanted = [int(c) for c in targets]
    return [(int(i), int(y)) for i, y in zip(images, labels) if int(y) in wanted]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 0 <= i < n -> (i, n)."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {text!r}: need n >= 1 and 0 <= i < n")
    return i, n


def in_shard(image: int, target: int, shard: tuple[int, int]) -> bool:
    """Whether the example is in shard ``(i, n)`` (see :func:`shard_of`)."""
    i, n = shard
    return shard_of(image, target, n) == i


def shard_of(image: int, target: int, n: int) -> int:
    """Deterministic assignment of an example to one of n shards (a hash of (image, target),
    so it does not depend on which other examples are in the run or on their order)."""
    return zlib.crc32(f"{image}:{target}".encode()) % n


def example_seed(seed: int, image: int, target: int) -> int:
    """The seed of one example's own random draws in an attack (e.g. ifgsm's random start): a
    hash of (run seed, image, target) in [0, 2^63), so an example gets the same draws whatever
    batch, shard or Ray task it lands in."""
    digest = hashlib.blake2b(f"{seed}:{image}:{target}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
