"""Interpretability of perturbations (paper section 6) from a stored evaluation or from attacking
one image: the library function behind ``strattack explain``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import cw_l2, str_attack
from ..data.evaluation_data import EvaluationData, check_dataset, load_evaluation_data
from ..errors import ConfigError, DataError
from ..evaluation.config import check_model_weights
from ..evaluation.report import store_labels
from ..evaluation.store import STORE_NAME
from ..evaluation.finished_run import common_successes, load_store_context
from ..interpretability import ClassMaps, asm, choose_class_maps
from ..interpretability.analysis import InterpretabilityCurves, measure_interpretability
from ..interpretability.gradcam import grad_cam, named_layer
from ..models.loading import load_model
from ..viz.interpretability import plot_asm_panels, plot_cam_panels, plot_is_vs_percentile
from .common import read_store, writable_folder

__all__ = ["ExplainOptions", "ExplainResult", "explain"]


@dataclass(frozen=True)
class ExplainOptions:
    """What to explain: the store in ``run_dir`` (``attacks``: its labels to compare, default the
    first two; ``num_examples`` adversarial under all of them, None: 100) or, without it, image
    ``image_index`` of ``dataset`` attacked toward ``target`` with StrAttack and C&W-l2 on
    ``model_spec`` (default the dataset's model; a module:callable needs ``weights``, or
    ``no_weights`` to attack the network as the callable builds it, as in eval).
    ``cam_layer``: force Grad-CAM at this module of the model (a ``model.named_modules()``
    name); None: exact CAM for a GAP + linear head, else Grad-CAM at its default layer.
    ``out`` defaults to ``run_dir``/explain or ./explain."""

    run_dir: Path | None = None
    attacks: tuple[str, ...] = ()
    num_examples: int | None = None
    dataset: str | None = None
    bundled: bool = False
    model_spec: str | None = None
    weights: Path | None = None
    no_weights: bool = False
    image_index: int | None = None
    target: int | None = None
    data_root: Path | None = None
    num_figures: int = 3
    mask_percentile: float = 90
    asm_variant: str = "61"
    cam_layer: str | None = None
    device: str = "cpu"
    threads: int | None = None
    out: Path | None = None


@dataclass
class ExplainResult:
    """``lines``: notes, then the mean IS table, to print; ``summary``: what
    interpretability.json holds; ``written``: the files written."""

    lines: list[str]
    summary: dict[str, Any]
    written: list[Path]


@dataclass
class _Examples:
    """The explained examples: inputs ``x``, true labels ``y`` and ``targets`` on the device,
    their ``rows`` in ``data``, the perturbations per attack label, and notes."""

    model: nn.Module
    data: EvaluationData
    rows: Tensor
    x: Tensor
    y: Tensor
    targets: Tensor
    deltas: dict[str, Tensor]
    notes: list[str] = field(default_factory=list)


def explain(options: ExplainOptions) -> ExplainResult:
    """IS vs percentile curves (ASM-based, and CAM-based where the model has a CAM), their
    paired difference, and per-example ASM / CAM panels, written into the output folder."""
    _check_options(options)
    if options.threads:
        torch.set_num_threads(options.threads)  # beside other jobs, oversubscribed threads spin
    ex, out = _from_store(options) if options.run_dir is not None else _one_image(options)
    curves = measure_interpretability(ex.model, ex.x, ex.y, ex.targets, ex.deltas,
                                      variant=options.asm_variant, cam_layer=options.cam_layer)
    means = curves.means()
    if curves.cam_unavailable:
        ex.notes.append(f"no CAM-based IS for this model: {curves.cam_unavailable}")
    else:
        ex.notes.append(f"CAM-based IS with {curves.cam_method}")
    summary = _summary(curves, means, options.asm_variant, len(ex.rows), list(ex.deltas))
    written = [*_curve_figures(curves, means, out, len(ex.rows), ex.data.name),
               _write_json(summary, out)]
    maps_of = (choose_class_maps(ex.model, ex.x[:1], options.cam_layer) if "cam" in means
               else None)
    for j in range(min(options.num_figures, len(ex.rows))):
        written += _panels(ex, j, options, out, maps_of)
    names = {"asm": "ASM", "cam": curves.cam_name or "CAM"}
    lines = [f"note: {n}" for n in ex.notes] + _is_table(curves.percentiles, means, summary,
                                                         names)
    return ExplainResult(lines, summary, written)


#: The options that choose the one image to attack and the model; a run folder's store gives
#: its own.
ONE_IMAGE_OPTIONS = {"dataset": "--dataset", "bundled": "--bundled", "model_spec": "--model",
                     "weights": "--weights", "no_weights": "--no-weights",
                     "image_index": "--image", "target": "--target"}

#: Examples of a store explained when -n/--num-examples is not given.
DEFAULT_NUM_EXAMPLES = 100


def _check_options(o: ExplainOptions) -> None:
    """ConfigError for options this mode would ignore: with RUN_DIR the examples, model and
    images are the store's; without it StrAttack and C&W-l2 attack one image, on a model whose
    weights follow eval's rule (a module:callable needs --weights or --no-weights)."""
    if o.run_dir is not None:
        given = [flag for name, flag in ONE_IMAGE_OPTIONS.items()
                 if getattr(o, name) is not None and getattr(o, name) is not False]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigError(f"{', '.join(given)} {verb} only without RUN_DIR: the examples, "
                              f"model and images of {o.run_dir} are those of its store")
    elif o.attacks:
        raise ConfigError("--attack chooses attacks of a RUN_DIR's store; without RUN_DIR, "
                          "StrAttack and C&W-l2 attack the image")
    elif o.num_examples is not None:
        raise ConfigError("-n/--num-examples chooses how many examples of a RUN_DIR's store to "
                          "explain; without RUN_DIR, StrAttack and C&W-l2 attack one image "
                          "(--image)")
    else:
        check_model_weights(o.model_spec, o.weights, o.no_weights)


def _from_store(o: ExplainOptions) -> tuple[_Examples, Path]:
    """The first examples every chosen attack got right, with the model and images the store
    was made with; the output folder."""
    path = o.run_dir / STORE_NAME
    if not path.is_file():
        raise DataError(f"no store {path} (run `strattack eval ... -o {o.run_dir}`)")
    with read_store(path) as store:
        found = common_successes(store, list(o.attacks) or list(store_labels(store).values())[:2],
                                 DEFAULT_NUM_EXAMPLES if o.num_examples is None
                                 else o.num_examples)
        if not found.pairs:
            raise DataError(f"no example is adversarial under all of {found.labels}")
        if any(t < 0 for _, t in found.pairs):
            raise DataError("explain needs targeted examples (ASM is defined for a target)")
        try:
            model, data = load_store_context(store, o.data_root, o.device)
            rows = found.rows(data)
        except ConfigError as err:   # the store names data that is not there: no wrong option
            raise DataError(str(err)) from err
    ex = _examples(model, data, rows, found.targets, found.deltas, o.device)
    _check_cam_layer(model, o.cam_layer, ex.x[:1])
    return ex, writable_folder(o.out or o.run_dir / "explain", "explain figures")


def _one_image(o: ExplainOptions) -> tuple[_Examples, Path]:
    """One image attacked with StrAttack and C&W-l2 toward ``o.target``; the output folder."""
    dataset = o.dataset or ("mnist" if o.bundled else None)
    if dataset is None or o.image_index is None or o.target is None:
        raise ConfigError("give RUN_DIR, or --dataset, --image and --target")
    check_dataset(dataset, o.bundled)   # so that what fails below is the image index
    try:
        data = load_evaluation_data(dataset, o.data_root, o.bundled, ids=[o.image_index])
    except ConfigError as err:
        raise ConfigError(f"--image: {err}") from err
    model = load_model(o.model_spec or dataset, o.weights, device=o.device)
    rows = data.rows([o.image_index])
    label = int(data.labels[rows[0]])
    if not 0 <= o.target < data.num_classes or o.target == label:
        raise ConfigError(f"--target must be a class in [0, {data.num_classes}) other than "
                          f"the true class {label}")
    ex = _examples(model, data, rows, torch.tensor([o.target]), {}, o.device)
    _check_cam_layer(model, o.cam_layer, ex.x[:1])
    ex.deltas, ex.notes = _attack(ex, data.group_size)
    return ex, writable_folder(o.out or Path("explain"), "explain figures")


def _check_cam_layer(model: nn.Module, layer: str | None, example: Tensor) -> None:
    """ConfigError before any attack unless ``layer`` (if given) is a module of ``model``
    (checked before any forward pass) with a spatial map Grad-CAM can weight (one forward and
    backward pass of ``example``)."""
    if layer is None:
        return
    try:
        named_layer(model, layer)
        grad_cam(model, example, 0, layer=layer, upsample=False)
    except ValueError as err:
        raise ConfigError(f"--cam-layer: {err}") from err


def _examples(model: nn.Module, data: EvaluationData, rows: Tensor, targets: Tensor,
              deltas: dict[str, Tensor], device: str) -> _Examples:
    return _Examples(model, data, rows, data.images[rows].to(device),
                     data.labels[rows].to(device), targets.to(device), deltas)


def _attack(ex: _Examples, group_size: int) -> tuple[dict[str, Tensor], list[str]]:
    """Perturbations of StrAttack and C&W-l2; a note for each that missed the target (its
    perturbation is still worth seeing)."""
    deltas, notes = {}, []
    for name, result in (("StrAttack", str_attack(ex.model, ex.x, ex.targets, targeted=True,
                                                  true_labels=ex.y, group_size=group_size,
                                                  stride=group_size)),
                         ("C&W-l2", cw_l2(ex.model, ex.x, ex.targets, targeted=True,
                                          true_labels=ex.y))):
        if not bool(result.success[0]):
            notes.append(f"{name} did not reach the target; its perturbation is shown anyway")
        deltas[name] = result.perturbation.detach()
    return deltas, notes


def _summary(curves: InterpretabilityCurves, means: dict[str, dict[str, list[float]]],
             variant: str, examples: int, labels: list[str]) -> dict[str, Any]:
    """interpretability.json: the mean curves and, for two attacks, their paired difference
    (is the first attack's IS above the second's beyond noise?)."""
    summary = {"examples": examples, "asm_variant": variant, "cam_method": curves.cam_method,
               "percentiles": list(curves.percentiles), **means}
    if len(labels) >= 2:
        pair: dict[str, Any] = {"attacks": labels[:2]}
        for kind in means:
            mean, se, n = curves.paired_difference(labels[0], labels[1], kind)
            # one example has no standard error: null, not NaN (which is not valid JSON)
            pair[kind] = {"mean": mean, "standard_error": se if n > 1 else None, "examples": n}
        summary["paired_difference"] = pair
    return summary


def _write_json(summary: dict[str, Any], out: Path) -> Path:
    path = out / "interpretability.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    return path


def _curve_figures(curves: InterpretabilityCurves, means: dict[str, dict[str, list[float]]],
                   out: Path, n: int, data_name: str) -> list[Path]:
    """Fig. 3(a) for ``n`` examples: mean ASM-based IS vs percentile; the CAM-based one where
    the model has a CAM."""
    written = [plot_is_vs_percentile(curves.percentiles, means["asm"], out / "asm_is.png",
                                     title=f"ASM-based IS, {n} examples ({data_name})",
                                     zero_fraction=curves.zero_fraction["asm"])]
    if "cam" in means:
        method = curves.cam_name or "CAM"                          # "CAM" or "Grad-CAM"
        written.append(plot_is_vs_percentile(
            curves.percentiles, means["cam"], out / "cam_is.png",
            title=f"{method}-based IS ({method} of the true class), {n} examples",
            ylabel=f"mean IS with B = {method} above percentile",
            xlabel=f"threshold (percentile of the {method} values)",
            zero_fraction=curves.zero_fraction["cam"], score_name=method))
    return written


def _panels(ex: _Examples, j: int, o: ExplainOptions, out: Path,
            maps_of: ClassMaps | None) -> list[Path]:
    """Example ``j``'s Fig. 3(b) ASM panel and, with a CAM or Grad-CAM, its Fig. 4 CAM panel
    (named by image and target)."""
    xj, yj, tj = ex.x[j : j + 1], ex.y[j : j + 1], ex.targets[j : j + 1]
    names = (ex.data.class_names[int(yj)], ex.data.class_names[int(tj)])
    tag = f"image{int(ex.data.ids[ex.rows[j]])}_target{int(tj)}"
    deltas = {a: d[j] for a, d in ex.deltas.items()}
    scores = asm(ex.model, xj, yj, tj, variant=o.asm_variant)
    written = [plot_asm_panels(xj[0], scores[0], deltas, o.mask_percentile,
                               out / f"asm_{tag}.png", class_names=names)]
    if maps_of is not None:
        written.append(_cam_panel(maps_of, xj, yj, tj, deltas, out / f"cam_{tag}.png", names))
    return written


def _cam_panel(maps_of: ClassMaps, x: Tensor, y: Tensor, t: Tensor, deltas: dict[str, Tensor],
               path: Path, names: tuple[str, str]) -> Path:
    """CAMs (or Grad-CAMs) of the true and the target class on the original and each
    adversarial example."""
    cams = {"original": (maps_of(x, y)[0], maps_of(x, t)[0])}
    advs = {}
    for a, d in deltas.items():
        adv = (x + d.unsqueeze(0).to(x)).clamp(0, 1)
        advs[a] = adv[0]
        cams[a] = (maps_of(adv, y)[0], maps_of(adv, t)[0])
    return plot_cam_panels(x[0], advs, cams, path, class_names=names, method=maps_of.method)


def _is_table(percentiles: tuple[float, ...], means: dict[str, dict[str, list[float]]],
              summary: dict[str, Any], names: dict[str, str]) -> list[str]:
    """Mean IS per percentile, per score kind (shown as ``names[kind]``: ASM, CAM or Grad-CAM)
    and attack, then the paired difference."""
    header = " | ".join(f"{p:g}th" for p in percentiles)
    lines = [f"mean IS over {summary['examples']} examples, threshold nu = percentile: {header}"]
    for kind, table in means.items():
        lines += [f"  {names[kind]} {name}: " + " | ".join(f"{v:.3f}" for v in values)
                  for name, values in table.items()]
        if "paired_difference" in summary:
            lines.append(_difference_line(kind, names[kind], summary["paired_difference"]))
    return lines


def _difference_line(kind: str, name: str, pair: dict[str, Any]) -> str:
    first, second = pair["attacks"]
    diff = pair[kind]
    if diff["standard_error"] is None:   # one example has no standard error
        head, cells = "one example", [f"{m:+.3f}" for m in diff["mean"]]
    else:
        head = f"mean ± standard error over {diff['examples']} examples"
        cells = [f"{m:+.3f}±{e:.3f}" for m, e in zip(diff["mean"], diff["standard_error"])]
    return f"  {name} {first} - {second} ({head}): " + " | ".join(cells)
