"""Best / average / worst-case tables (the paper's Table 1, Appendix F) from a result store.

Definitions (the paper follows Carlini & Wagner 2017 and does not spell them out; ours):

* **average case**: over all (image, target) examples. ASR = successful examples / examples.
* **best case**: per image, the easiest target: among its successful targets the one with the
  smallest ``rank_by`` norm (default l2). An image counts as a success when *any* target
  succeeded; ASR = such images / images.
* **worst case**: per image, the hardest target: if every target succeeded, the one with the
  largest ``rank_by`` norm; an image with any failed target is a failure in the worst case.
  ASR = images whose targets all succeeded / images.
* **ASR 95% CI**: Wilson score interval with the *images* as the independent units. For best
  and worst case each image is one Bernoulli outcome. For the average case with k targets per
  image the ASR is a mean over images of per-image rates; a mean of k Bernoulli(p) outcomes has
  variance at most p(1 - p) (reached when the targets of an image succeed or fail together), so
  the interval at n = images is conservative; with one example per image it is exact Wilson.
* Norms (l0, l1, l2, linf, nonzero groups) are means over the successful examples of the case
  (so an attack that fails more can show smaller norms: read them next to the ASR).
* Group sparsity at the pixel level (GSE's metrics, Sadiku et al., ICLR 2025), measured from
  the stored perturbations when the report is made, so every store has them, and averaged like
  the norms: ``pixel l0`` = pixels with any channel changed; ``clusters`` = 4-connected groups
  of such pixels (GSE's ANC); ``d20`` = d_{2,0}, the k x k windows (stride 1, inside the image;
  k = ``patch``, default 8) holding a changed pixel. Extra :class:`Measure` s (the IS columns
  of ``strattack report --is``) are added the same way.
* Model passes and seconds per example are means over *all* examples of the attack (the cost
  of running it), the same in every case. ``device`` is where they ran; when an attack's
  examples ran on more than one device (shards on different machines), s/ex is left out
  (``nan``): a mean over a CPU and a GPU would describe neither. ``version`` is the strattack
  version that computed them (``unknown`` where the store did not record it); examples of
  several versions are listed as ``mixed``, with the count of each.

For untargeted runs (one example per image) the three cases coincide.

``convention="paper"`` (:func:`paper_case_rows`) computes the cases the way the authors'
evaluation code does instead: best and worst case per norm, the average case over one random
target per image, l0 counting |delta| >= 1e-7.
"""
from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .metrics import group_sparsity_metrics
from .store import ExampleRecord, ResultStore

__all__ = ["CASES", "CONVENTIONS", "COST_COLUMNS", "GROUP_COLUMNS", "NORMS", "Measure",
           "Measurements", "case_rows", "group_sparsity_measure", "measure_records",
           "paper_case_rows", "with_paper_l0", "common_examples", "cost_rows", "default_labels",
           "RATIO_COLUMNS", "ratio_notes", "ratio_rows", "report_columns", "report_rows",
           "store_labels", "wilson_interval", "write_report"]

CASES = ("best", "average", "worst")
CONVENTIONS = ("ours", "paper")
PAPER_L0_THRESHOLD = 1e-7
NORMS = ("l0", "l1", "l2", "linf")
GROUP_COLUMNS = ("pixel l0", "clusters", "d20")
#: What ``report --ratio`` divides: the norms, the group-sparsity measures and the model passes.
RATIO_COLUMNS = ("l0", "l2", *GROUP_COLUMNS, "passes/ex")
REPORT_COLUMNS = ("attack", "case", "images", "examples", "ASR %", "ASR 95% CI", "l0", "l1", "l2", "linf",
                  "groups", *GROUP_COLUMNS, "fwd/ex", "bwd/ex", "passes/ex", "s/ex", "device",
                  "version")
#: Successful examples measured at once: a batch of ImageNet perturbations is 38 MB.
MEASURE_CHUNK = 64
Example = tuple[int, int]
_NO_PERTURBATION = np.empty(0, np.float32)


@dataclass(frozen=True)
class Measure:
    """Per-example metrics made at report time: ``compute(records, deltas)`` gives, for the
    records of a chunk and their stacked (n, C, H, W) perturbations, one (n,) tensor per
    column of ``columns``."""

    columns: tuple[str, ...]
    compute: Callable[[Sequence[ExampleRecord], Tensor], dict[str, Tensor]]


@dataclass
class Measurements:
    """The values of some :class:`Measure` columns per (image, target) example."""

    columns: tuple[str, ...] = ()
    values: dict[Example, dict[str, float]] = field(default_factory=dict)

    def of(self, record: ExampleRecord, column: str) -> float:
        return self.values.get((record.image, record.target), {}).get(column, math.nan)


def group_sparsity_measure(patch: int = 8) -> Measure:
    """pixel l0, clusters and d20 (``patch`` x ``patch`` windows) of the perturbations."""
    return Measure(GROUP_COLUMNS, lambda _, deltas: group_sparsity_metrics(deltas, patch))


def measure_records(records: Iterable[ExampleRecord], measures: Sequence[Measure]
                    ) -> tuple[list[ExampleRecord], Measurements]:
    """``records`` (with perturbations) without their perturbations, and the ``measures`` of
    the successful ones (the only ones the tables average), computed a chunk at a time so
    that a large store is never decoded whole."""
    kept: list[ExampleRecord] = []
    measured = Measurements(tuple(c for m in measures for c in m.columns))
    chunk: list[ExampleRecord] = []
    for record in records:
        kept.append(replace(record, perturbation=_NO_PERTURBATION))
        if record.success:
            chunk.append(record)
        if len(chunk) == MEASURE_CHUNK:
            _measure_chunk(chunk, measures, measured)
            chunk = []
    if chunk:
        _measure_chunk(chunk, measures, measured)
    return kept, measured


def _measure_chunk(chunk: Sequence[ExampleRecord], measures: Sequence[Measure],
                   into: Measurements) -> None:
    deltas = torch.stack([torch.from_numpy(r.perturbation) for r in chunk])
    for measure in measures:
        for column, values in measure.compute(chunk, deltas).items():
            for record, value in zip(chunk, values.tolist()):
                into.values.setdefault((record.image, record.target), {})[column] = value


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def wilson_interval(rate: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (Wilson, 1927) for a success rate observed on n units."""
    if n == 0 or math.isnan(rate):
        return math.nan, math.nan
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def interval_text(rate: float, n: int) -> str:
    """The 95% Wilson interval of ``rate`` over ``n`` units as "[low, high]" in percent."""
    low, high = wilson_interval(rate, n)
    return "n/a" if math.isnan(low) else f"[{100 * low:.1f}, {100 * high:.1f}]"


def _metric(record: ExampleRecord, name: str, measured: Measurements | None) -> float:
    """A stored metric of ``record`` or one ``measured`` at report time."""
    if measured is not None and name in measured.columns:
        return measured.of(record, name)
    return getattr(record, name)


def _metric_names(measured: Measurements | None) -> tuple[str, ...]:
    return (*NORMS, "groups", *(measured.columns if measured is not None else ()))


def case_rows(label: str, records: Sequence[ExampleRecord], rank_by: str = "l2",
              cases: Sequence[str] = CASES, measured: Measurements | None = None
              ) -> list[dict[str, object]]:
    """One row per case for one attack's examples (definitions in the module docstring), with
    the ``measured`` columns after the stored norms."""
    if rank_by not in NORMS:
        raise ValueError(f"rank_by must be one of {NORMS}, got {rank_by!r}")
    by_image = _by_image(records)
    cost = _cost_columns(records)
    rows = []
    for case in cases:
        if case == "average":
            chosen = [r for r in records if r.success]
            asr = len(chosen) / len(records) if records else math.nan
        elif case in ("best", "worst"):
            chosen = []
            for group in by_image.values():
                ok = [r for r in group if r.success]
                if case == "best" and ok:
                    chosen.append(min(ok, key=lambda r: getattr(r, rank_by)))
                elif case == "worst" and len(ok) == len(group):
                    chosen.append(max(ok, key=lambda r: getattr(r, rank_by)))
            asr = len(chosen) / len(by_image) if by_image else math.nan
        else:
            raise ValueError(f"unknown case {case!r}; expected one of {CASES}")
        norms = {name: _mean([_metric(r, name, measured) for r in chosen])
                 for name in _metric_names(measured)}
        rows.append(_row(label, case, by_image, records, asr, norms, cost))
    return rows


def paper_case_rows(label: str, records: Sequence[ExampleRecord], seed: int = 0,
                    measured: Measurements | None = None) -> list[dict[str, object]]:
    """The cases as the authors' evaluation code computes them (``--convention paper``; issue
    19): best / worst case chosen **per norm** (best-case l0 = mean over images of the smallest
    l0 among the image's successful targets, best-case l2 likewise, possibly of another
    target; worst case: the largest, over images whose targets all succeeded), and the average
    case over **one random target per image** (drawn from ``seed`` and the image index, so
    reproducible). ASR as in :func:`case_rows` for best and worst. l0 should count |delta| >=
    1e-7 (see :func:`with_paper_l0`). The ``measured`` columns are chosen per column too."""
    names = _metric_names(measured)
    by_image = _by_image(records)
    cost = _cost_columns(records)
    rows = []
    for case in CASES:
        if case == "average":
            picks = [random.Random(seed * 1_000_003 + image).choice(group)
                     for image, group in sorted(by_image.items())]
            chosen_by_norm = {name: [r for r in picks if r.success] for name in names}
            asr = sum(r.success for r in picks) / len(picks) if picks else math.nan
        else:
            pick = min if case == "best" else max
            groups = [[r for r in g if r.success] for g in by_image.values()]
            groups = [ok for ok, g in zip(groups, by_image.values())
                      if ok and (case == "best" or len(ok) == len(g))]
            chosen_by_norm = {name: [pick(ok, key=lambda r: _metric(r, name, measured))
                                     for ok in groups] for name in names}
            asr = len(groups) / len(by_image) if by_image else math.nan
        norms = {name: _mean([_metric(r, name, measured) for r in chosen])
                 for name, chosen in chosen_by_norm.items()}
        rows.append(_row(label, case, by_image, records, asr, norms, cost))
    return rows


def with_paper_l0(record: ExampleRecord) -> ExampleRecord:
    """The record with l0 = entries with |delta| >= 1e-7 (the authors' count) instead of != 0;
    needs the stored perturbation."""
    return replace(record, l0=float((np.abs(record.perturbation) >= PAPER_L0_THRESHOLD).sum()))


def _by_image(records: Sequence[ExampleRecord]) -> dict[int, list[ExampleRecord]]:
    by_image: dict[int, list[ExampleRecord]] = defaultdict(list)
    for r in records:
        by_image[r.image].append(r)
    return by_image


def _cost_columns(records: Sequence[ExampleRecord]) -> dict[str, object]:
    """Passes and seconds per example over all examples, where they ran and the strattack
    version that ran them (s/ex left out for a mix of devices: a mean over a CPU and a GPU
    would describe neither)."""
    forward = _mean([r.forward_passes for r in records])
    backward = _mean([r.backward_passes for r in records])
    devices = Counter(r.device or "not recorded" for r in records)
    seconds = _mean([r.seconds for r in records]) if len(devices) <= 1 else math.nan
    return {"fwd/ex": forward, "bwd/ex": backward, "passes/ex": forward + backward,
            "s/ex": seconds, "device": _one_or_mixed(devices, "not recorded"),
            "version": _one_or_mixed(Counter(r.version or "unknown" for r in records), "unknown")}


def _one_or_mixed(counts: Counter[str], empty: str) -> str:
    """The one value counted (``empty`` if none), or ``mixed: a xN, b xM`` for several."""
    if len(counts) <= 1:
        return next(iter(counts), empty)
    return "mixed: " + ", ".join(f"{value} x{n}" for value, n in sorted(counts.items()))


def _row(label: str, case: str, by_image: dict[int, list[ExampleRecord]],
         records: Sequence[ExampleRecord], asr: float, norms: dict[str, float],
         cost: dict[str, object]) -> dict[str, object]:
    return {"attack": label, "case": case, "images": len(by_image), "examples": len(records),
            "ASR %": 100.0 * asr, "ASR 95% CI": interval_text(asr, len(by_image)), **norms,
            **cost}


def ratio_rows(rows: Sequence[dict[str, object]], numerator: str, denominator: str,
               norms: Sequence[str] = RATIO_COLUMNS) -> list[dict[str, object]]:
    """Per case, ``numerator``'s mean norm divided by ``denominator``'s, from report rows (each
    attack's mean over its own successful examples, as the paper's tables compare them), e.g.
    StrAttack l0 / C&W l0: the ratios that should carry across models and datasets. A column
    the rows lack (e.g. the group-sparsity ones of rows made without them) is left out."""
    by_key = {(r["attack"], r["case"]): r for r in rows}
    attacks = {r["attack"] for r in rows}
    for label in (numerator, denominator):
        if label not in attacks:
            raise ValueError(f"no attack labelled {label!r} in the report; have {sorted(attacks)}")
    out = []
    for case in CASES:
        num, den = by_key.get((numerator, case)), by_key.get((denominator, case))
        if num is None or den is None:
            continue
        row: dict[str, object] = {"ratio": f"{numerator} / {denominator}", "case": case}
        for norm in (n for n in norms if n in num and n in den):
            a, b = float(num[norm]), float(den[norm])     # type: ignore[arg-type]
            row[norm] = a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan
        out.append(row)
    return out


def example_sets(store: ResultStore) -> dict[str, frozenset[Example]]:
    """attack key -> the (image, target) pairs it finished."""
    return {key: frozenset(store.done(key)) for key in store.attacks()}


def common_examples(store: ResultStore) -> frozenset[Example]:
    """The (image, target) pairs that every attack of the store finished."""
    sets = list(example_sets(store).values())
    return frozenset.intersection(*sets) if sets else frozenset()


def ratio_notes(store: ResultStore, ratios: Sequence[tuple[str, str]],
                labels: dict[str, str] | None = None) -> list[str]:
    """A note for each ratio whose two attacks finished different examples (a merged store of
    runs of different sizes): their means, hence the ratio, are over different examples."""
    labels = labels or store_labels(store)
    by_label = {labels[key]: examples for key, examples in example_sets(store).items()}
    notes = []
    for num, den in ratios:
        a, b = by_label.get(num), by_label.get(den)
        if a is not None and b is not None and a != b:
            notes.append(f"note: {num!r} finished {len(a)} examples and {den!r} {len(b)} "
                         f"({len(a & b)} in common), so their ratio compares different "
                         "examples; --common restricts every attack to the common ones")
    return notes


def report_rows(store: ResultStore, rank_by: str = "l2",
                labels: dict[str, str] | None = None, convention: str = "ours",
                common: bool = False, *, patch: int = 8,
                measures: Sequence[Measure] = ()) -> list[dict[str, object]]:
    """Rows for every attack in the store, case-major within each attack.

    ``labels`` maps attack keys to display names; by default the name plus the parameters that
    differ between stored attacks of the same name. ``convention``: ``"ours"`` (cases ranked by
    ``rank_by``, :func:`case_rows`) or ``"paper"`` (the authors' code: per-norm cases, one
    random target per image, l0 at |delta| >= 1e-7; :func:`paper_case_rows`). ``common``: only
    the examples every attack finished (:func:`common_examples`), so that all attacks are
    compared on the same examples. Every row also has the group-sparsity columns
    (:data:`GROUP_COLUMNS`, windows of side ``patch``) and those of ``measures``, measured from
    the stored perturbations."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    paper = convention == "paper"
    attacks = store.attacks()
    labels = labels or store_labels(store)
    keep = common_examples(store) if common else None
    measures = (group_sparsity_measure(patch), *measures)
    rows: list[dict[str, object]] = []
    for key in attacks:
        stored = (with_paper_l0(r) if paper else r
                  for r in store.records(key, with_perturbation=True)
                  if keep is None or (r.image, r.target) in keep)
        records, measured = measure_records(stored, measures)
        if records and paper:
            rows += paper_case_rows(labels[key], records, measured=measured)
        elif records:
            rows += case_rows(labels[key], records, rank_by, measured=measured)
    return rows


def report_columns(rows: Sequence[dict[str, object]]) -> tuple[str, ...]:
    """The columns of report rows: :data:`REPORT_COLUMNS` with the extra measured ones after
    the group-sparsity columns, in the rows' order."""
    return tuple(rows[0]) if rows else REPORT_COLUMNS


COST_COLUMNS = ("attack", "device", "examples", "passes/ex", "s/ex", "seconds")


def cost_rows(store: ResultStore, labels: dict[str, str] | None = None) -> list[dict[str, object]]:
    """Model passes and wall time per attack *and device*: the cost table of a store whose
    shards ran on different devices (where :func:`case_rows` leaves s/ex out)."""
    labels = labels or store_labels(store)
    rows: list[dict[str, object]] = []
    for key in store.attacks():
        by_device: dict[str, list[ExampleRecord]] = defaultdict(list)
        for r in store.records(key):
            by_device[r.device or "not recorded"].append(r)
        for device, records in sorted(by_device.items()):
            seconds = sum(r.seconds for r in records)
            rows.append({"attack": labels[key], "device": device, "examples": len(records),
                         "passes/ex": _mean([r.forward_passes + r.backward_passes
                                             for r in records]),
                         "s/ex": seconds / len(records), "seconds": seconds})
    return rows


def default_labels(attacks: dict[str, tuple[str, dict]],
                   given: dict[str, str] | None = None) -> dict[str, str]:
    """The label a run gave an attack; else ``name`` when unique in the store, else
    ``name (k=v, ...)`` with the parameters that differ between attacks of that name."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for key, (name, _) in attacks.items():
        by_name[name].append(key)
    labels = {}
    for name, keys in by_name.items():
        if len(keys) == 1:
            labels[keys[0]] = name
            continue
        all_params = [attacks[k][1] for k in keys]
        names = set().union(*all_params)
        differing = sorted(p for p in names if len({json.dumps(a.get(p)) for a in all_params}) > 1)
        for key, params in zip(keys, all_params):
            shown = ", ".join(f"{p}={params.get(p, 'default')}" for p in differing)
            labels[key] = f"{name} ({shown})"
    labels.update({k: v for k, v in (given or {}).items() if k in labels})
    if len(set(labels.values())) < len(labels):       # keep labels unique
        labels = {k: v if list(labels.values()).count(v) == 1 else f"{v} [{k}]"
                  for k, v in labels.items()}
    return labels


def store_labels(store: ResultStore) -> dict[str, str]:
    """Display label of every attack in ``store`` (see :func:`default_labels`). Attacks with
    examples get their labels first, so an attack that was registered and never ran (e.g.
    an earlier parameter setting under the same label) does not rename them."""
    attacks = store.attacks()
    ran = {k: v for k, v in attacks.items() if store.count(k)}
    labels = default_labels(ran, store.labels())
    idle = {k: v for k, v in attacks.items() if k not in ran}
    if idle:
        taken = set(labels.values())
        labels.update({k: v if v not in taken else f"{v} [{k}]"
                       for k, v in default_labels(idle, store.labels()).items()})
    return labels


def write_report(rows: list[dict[str, object]], out_dir: str | Path, stem: str = "report") -> list[Path]:
    """Write ``rows`` as CSV and JSON into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=report_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
             for r in rows]
    json_path.write_text(json.dumps(clean, indent=1) + "\n")
    return [csv_path, json_path]
