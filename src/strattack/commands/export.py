"""Adversarial examples out of a store, for use elsewhere: the library function behind
``strattack export``.

* **The examples.** ``clamp(x0 + delta, 0, 1)`` in float32 (as ``transfer`` builds them), x0
  from the dataset the store records and delta the stored perturbation; by default only the
  examples that succeeded on the store's model (a failed one is no adversarial example).
* **npz.** ``OUT/adversarial.npz``: ``adv`` (N, C, H, W) float32, ``image`` (dataset index),
  ``target`` (-1: untargeted), ``label`` (true class), ``attack`` (label strings), ``success``.
* **png.** ``OUT/png/<attack>/<image>_<target>.png`` (``untargeted`` for target -1), 8-bit
  grey or RGB: ``round(255 * x)``, and ``OUT/png/index.csv`` listing this export's files.
  Rounding moves a pixel by up to 1/510, enough to undo an example whose winning margin is thin
  (a frequent complaint in foolbox's issues), so by default the store's model is run on the
  rounded images (and on the float32 ones, the baseline): printed per attack as "N of M stay
  adversarial after 8-bit rounding", and per example in index.csv. Adversarial here means the
  model's decision (the target wins, or the true class loses, strictly), whatever confidence
  kappa the attack searched with.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..data.evaluation_data import EvaluationData
from ..errors import ConfigError, DataError
from ..evaluation.report import store_labels
from ..evaluation.store import ResultStore
from ..evaluation.finished_run import load_store_data, load_store_model
from ..evaluation.examples import UNTARGETED
from ..solver.losses import is_adversarial, logit_margin
from .common import read_store, writable_folder
from .report import store_path

__all__ = ["ExportOptions", "ExportResult", "Exported", "export", "from_8bit", "to_8bit",
           "adversarial_on"]

FORMATS = ("npz", "png")
NPZ_NAME = "adversarial.npz"
PNG_FOLDER = "png"
INDEX_NAME = "index.csv"
INDEX_COLUMNS = ("file", "attack", "image", "target", "label", "success", "adversarial_float",
                 "adversarial_8bit")
#: Channels an 8-bit PNG holds as grey (L) or colour (RGB).
PNG_MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class ExportOptions:
    """What to export from the store in ``run_dir``: ``attacks`` (labels; default all with
    examples), ``only_successful`` examples or all; ``recheck`` the 8-bit PNGs on the store's
    model (None: when that model loads; png only). ``out`` defaults to ``run_dir``."""

    run_dir: Path
    format: str = "npz"
    attacks: tuple[str, ...] = ()
    only_successful: bool = True
    recheck: bool | None = None
    data_root: Path | None = None
    out: Path | None = None
    device: str = "cpu"
    batch_size: int = 256
    threads: int | None = None


@dataclass
class Exported:
    """One attack's exported examples (rows in store order: image, then target); after a
    recheck, whether each is adversarial on the model as float32 and after 8-bit rounding."""

    label: str
    images: Tensor
    targets: Tensor
    labels: Tensor
    success: Tensor
    adv: Tensor
    adversarial_float: Tensor | None = None
    adversarial_8bit: Tensor | None = None


@dataclass
class ExportResult:
    """``lines``: what to print; ``written``: the files written; ``exported``: per attack."""

    lines: list[str]
    written: list[Path]
    exported: list[Exported]


def export(options: ExportOptions) -> ExportResult:
    """Write the store's adversarial examples as one npz file or as 8-bit PNGs with an index
    (see the module docstring). Every bad request fails before anything is written."""
    _check_options(options)
    if options.threads:
        torch.set_num_threads(options.threads)   # beside other jobs, oversubscribed threads spin
    path = store_path(options.run_dir)
    with read_store(path) as store:
        chosen = _chosen_attacks(store, options.attacks)
        out = writable_folder(options.out or options.run_dir, "export")
        data = _store_images(store, options.data_root)
        model, notes = _recheck_model(store, options)
        exported = [_read_examples(store, key, label, data, options.only_successful)
                    for key, label in chosen.items()]
    which = "successful example" if options.only_successful else "example"
    if not any(len(e.images) for e in exported):
        raise DataError(f"{path} has no {which} of {list(chosen.values())} to export"
                        + (" (--all exports the failed ones too)" if options.only_successful
                           else ""))
    # An attack without examples gets no folder and no rows, and a line that says why.
    notes += [f"{e.label}: no {which} to export" for e in exported if not len(e.images)]
    exported = [e for e in exported if len(e.images)]
    if options.format == "npz":
        written = write_npz(exported, out / NPZ_NAME)
        total = sum(len(e.images) for e in exported)
        return ExportResult([*notes, f"{total} examples of {len(exported)} attacks as float32 "
                             "clamp(x0 + delta, 0, 1)"], [written], exported)
    channels = exported[0].adv.shape[1]
    if channels not in PNG_MODES:
        raise DataError(f"8-bit PNGs hold grey or RGB images, not {channels} channels: use "
                        "--format npz")
    if model is not None:
        for e in exported:
            _recheck(model, e, options.device, options.batch_size)
    written = write_pngs(exported, out / PNG_FOLDER)
    return ExportResult([*notes, *(_count_line(e) for e in exported)], written, exported)


def _check_options(options: ExportOptions) -> None:
    if options.format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {options.format!r}")
    if options.recheck and options.format != "png":
        raise ConfigError("--recheck applies to --format png: the npz arrays are the stored "
                          "float32 examples, nothing is rounded")
    if options.batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {options.batch_size}")


def _chosen_attacks(store: ResultStore, attacks: tuple[str, ...]) -> dict[str, str]:
    """attack key -> label of the attacks to export (default: every attack with examples);
    ConfigError naming the store's labels for an unknown one."""
    if "perturbation" not in store.example_columns():
        raise DataError(f"{store.path} stores no perturbations, so its adversarial examples "
                        "cannot be rebuilt")
    labels = store_labels(store)
    if not attacks:
        return {k: v for k, v in labels.items() if store.count(k)}
    key_of = {v: k for k, v in labels.items()}
    unknown = [a for a in attacks if a not in key_of]
    if unknown:
        raise ConfigError(f"attacks {unknown} are not in {store.path}; it has "
                          f"{list(key_of)}")
    return {key_of[a]: a for a in dict.fromkeys(attacks)}


def _store_images(store: ResultStore, data_root: Path | None) -> EvaluationData:
    try:
        return load_store_data(store, data_root)
    except ConfigError as err:     # the store names data that is not there: no wrong option
        raise DataError(str(err)) from err


def _recheck_model(store: ResultStore, options: ExportOptions) -> tuple[nn.Module | None,
                                                                         list[str]]:
    """The store's model for the 8-bit recheck, or None (npz, --no-recheck, or a model that
    does not load when the recheck was not asked for: then a note says so)."""
    if options.format != "png" or options.recheck is False:
        return None, []
    try:
        return load_store_model(store, options.device), []
    except (ValueError, ImportError, OSError) as err:
        if options.recheck:
            raise DataError(f"cannot load the store's model to re-check the 8-bit images "
                            f"({err}); --no-recheck exports without it") from err
        return None, [f"note: 8-bit images not re-checked: the store's model does not load "
                      f"({err})"]


def _read_examples(store: ResultStore, key: str, label: str, data: EvaluationData,
                   only_successful: bool) -> Exported:
    """One attack's examples rebuilt as clamp(x0 + delta, 0, 1)."""
    records = [r for r in store.records(key, with_perturbation=True)
               if r.success or not only_successful]
    images = torch.tensor([r.image for r in records], dtype=torch.long)
    if not records:
        empty = torch.empty(0, dtype=torch.long)
        return Exported(label, images, empty, empty, torch.empty(0, dtype=torch.bool),
                        torch.empty((0, *data.images.shape[1:])))
    try:
        x0 = data.images[data.rows(images.tolist())]
    except ConfigError as err:
        raise DataError(f"{label}: {err}") from err
    delta = torch.from_numpy(np.stack([r.perturbation for r in records]))
    if delta.shape != x0.shape:
        raise DataError(f"{label}: stored perturbations of shape {tuple(delta.shape[1:])} do not "
                        f"fit the images {tuple(x0.shape[1:])} loaded from the store's dataset")
    return Exported(label, images, torch.tensor([r.target for r in records]),
                    torch.tensor([r.true_label for r in records]),
                    torch.tensor([r.success for r in records]),
                    (x0.float() + delta).clamp(0, 1))


# ------------------------------------------------------------------ 8 bits
def to_8bit(images: Tensor) -> Tensor:
    """[0, 1] images as uint8, round(255 x) (halves to even)."""
    return torch.round(images.clamp(0, 1) * 255).to(torch.uint8)


def from_8bit(pixels: Tensor) -> Tensor:
    """uint8 pixels as the [0, 1] float32 images a PNG reader gives."""
    return pixels.to(torch.float32) / 255


def adversarial_on(model: nn.Module, images: Tensor, targets: Tensor, labels: Tensor,
                   device: str = "cpu", batch_size: int = 256) -> Tensor:
    """Per image, whether ``model`` classifies it as wanted: the target wins (target >= 0) or
    the true label loses (target -1), strictly (kappa = 0)."""
    verdicts = []
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        wanted_target = targets[rows] != UNTARGETED
        goal = torch.where(wanted_target, targets[rows], labels[rows]).to(device)
        with torch.no_grad():
            logits = model(images[rows].to(device))
        margin = torch.where(wanted_target.to(device), logit_margin(logits, goal, True),
                             logit_margin(logits, goal, False))
        verdicts.append(is_adversarial(margin, 0.0).cpu())
    return torch.cat(verdicts) if verdicts else torch.empty(0, dtype=torch.bool)


def _recheck(model: nn.Module, e: Exported, device: str, batch_size: int) -> None:
    e.adversarial_float = adversarial_on(model, e.adv, e.targets, e.labels, device, batch_size)
    e.adversarial_8bit = adversarial_on(model, from_8bit(to_8bit(e.adv)), e.targets, e.labels,
                                        device, batch_size)


def _count_line(e: Exported) -> str:
    """Among the attack's successful examples: how many stay adversarial after rounding."""
    n = int(e.success.sum())
    if e.adversarial_8bit is None:
        return f"{e.label}: {len(e.images)} PNGs ({n} successful), not re-checked"
    kept = int((e.adversarial_8bit & e.success).sum())
    as_float = int((e.adversarial_float & e.success).sum())
    return (f"{e.label}: {kept} of {n} stay adversarial after 8-bit rounding "
            f"({as_float} of {n} as float32)")


# ------------------------------------------------------------------ writing
def write_npz(exported: list[Exported], path: Path) -> Path:
    """Every attack's examples in one compressed npz (arrays as the module docstring says)."""
    np.savez_compressed(
        path, adv=torch.cat([e.adv for e in exported]).numpy().astype(np.float32),
        image=torch.cat([e.images for e in exported]).numpy(),
        target=torch.cat([e.targets for e in exported]).numpy(),
        label=torch.cat([e.labels for e in exported]).numpy(),
        attack=np.array([e.label for e in exported for _ in range(len(e.images))], dtype=str),
        success=torch.cat([e.success for e in exported]).numpy())
    return path


def write_pngs(exported: list[Exported], folder: Path) -> list[Path]:
    """One 8-bit PNG per example under ``folder``/<attack slug>/, and ``folder``/index.csv."""
    rows, slugs = [], attack_slugs([e.label for e in exported])
    for e, slug in zip(exported, slugs):
        (folder / slug).mkdir(parents=True, exist_ok=True)
        pixels = to_8bit(e.adv).permute(0, 2, 3, 1).numpy()
        for j, image in enumerate(e.images.tolist()):
            target = int(e.targets[j])
            name = f"{slug}/{image}_{'untargeted' if target == UNTARGETED else target}.png"
            Image.fromarray(pixels[j].squeeze(2) if pixels.shape[3] == 1 else pixels[j],
                            PNG_MODES[pixels.shape[3]]).save(folder / name)
            rows.append(_index_row(name, e, j))
    index = folder / INDEX_NAME
    with open(index, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return [index, *(folder / slug for slug in slugs)]


def _index_row(name: str, e: Exported, j: int) -> dict[str, object]:
    def verdict(flags: Tensor | None) -> object:
        return "" if flags is None else int(flags[j])

    return {"file": name, "attack": e.label, "image": int(e.images[j]),
            "target": int(e.targets[j]), "label": int(e.labels[j]),
            "success": int(e.success[j]), "adversarial_float": verdict(e.adversarial_float),
            "adversarial_8bit": verdict(e.adversarial_8bit)}


def attack_slugs(labels: list[str]) -> list[str]:
    """A folder name per attack label (``C&W-l2`` -> ``C_W-l2``), distinct even where two
    labels make the same one."""
    slugs: list[str] = []
    for label in labels:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "attack"
        slug, n = base, 2
        while slug in slugs:
            slug, n = f"{base}-{n}", n + 1
        slugs.append(slug)
    return slugs
