"""The configuration of an evaluation run, built from a TOML file and command-line options.

One place for the defaults (:mod:`.defaults`), and every value validated the same way whether it
comes from a flag or a file (a ``batch_size = 0`` in a file would hang ``eval``; ``bundled =
"false"`` would count as true). Errors are :class:`~strattack.errors.ConfigError` naming the
option or the file key.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..data.registry import DATASETS, SPLITS
from ..errors import ConfigError
from ..models.loading import check_model_spec, is_user_model
from . import defaults
from .runner import AttackSpec
from .store import STORE_NAME
from .examples import parse_shard

try:                    # the standard library from Python 3.11; requires-python is >= 3.10
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib

__all__ = ["EvalConfig", "TARGET_MODES", "STORE_NAME", "check_device", "check_model_weights",
           "load_toml", "parse_device", "shard_store_name", "targets_text"]

TARGET_MODES = ("all", "random", "next", "untargeted")


def load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from err


def shard_store_name(shard: tuple[int, int]) -> str:
    """The store a shard writes in the run folder (the unsharded run: results.sqlite)."""
    if shard == defaults.SHARD:
        return STORE_NAME
    return f"results-shard-{shard[0]}-of-{shard[1]}.sqlite"


# --- value checks (each takes the value and where it came from, for the message) --------------

def check_device(text: str) -> str:
    """``text`` if torch can run there, else a ConfigError (not a traceback from torch's lazy
    CUDA initialisation when the first tensor is moved)."""
    device = parse_device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{text!r}: this torch has no usable CUDA device (torch "
                              f"{torch.__version__}; torch.cuda.is_available() is False)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return text


def parse_device(text: str) -> torch.device:
    """The torch device ``text`` names, not checked against this machine."""
    try:
        return torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from err


def _integer(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value}")
    return value


def _positive(value: Any, where: str) -> int:
    return _integer(value, where, minimum=1)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):     # "false" is a non-empty string: it must not mean True
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return str(value)


def _path(value: Any, where: str) -> Path:
    return Path(_text(value, where))


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{where} must be a name or a list of names, got {value!r}")
    return tuple(items)


def shown(items: Sequence[Any], limit: int = 20) -> str:
    """``items`` for a message, cut after ``limit`` (a run may drop hundreds)."""
    return ", ".join(map(str, items[:limit])) + (f", ... ({len(items)} in all)"
                                                 if len(items) > limit else "")


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    """Comma-separated integers (or a TOML list of them), each at most once: a repeated index or
    class would be attacked twice and counted twice."""
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    numbers = []
    for part in parts:
        text = part.strip() if isinstance(part, str) else part
        if isinstance(text, bool) or not isinstance(text, (int, str)):
            raise ConfigError(f"{where}: {part!r} is not an integer")
        try:
            numbers.append(int(text))
        except ValueError:
            raise ConfigError(f"{where}: {part!r} is not an integer; expected comma-separated "
                              "integers, e.g. 3,17,42") from None
    if not numbers:
        raise ConfigError(f"{where}: no value given")
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: {shown(repeated)} given more than once; list each once")
    return tuple(numbers)


def _targets(value: Any, where: str) -> str | tuple[int, ...]:
    """A mode of :data:`TARGET_MODES` or distinct classes."""
    if isinstance(value, str) and value in TARGET_MODES:
        return value
    if isinstance(value, str) and not value[:1].lstrip("-").isdigit() and "," not in value:
        raise ConfigError(f"{where}: {value!r} is neither one of {', '.join(TARGET_MODES)} nor "
                          "comma-separated classes (e.g. 3,5)")
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return _int_list(value, where)


def _shard(value: Any, where: str) -> tuple[int, int]:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string I/N (e.g. \"0/4\"), got {value!r}")
    try:
        return parse_shard(value)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from err


def _split(value: Any, where: str) -> str:
    if value not in SPLITS:
        raise ConfigError(f"{where} must be one of {', '.join(SPLITS)}, got {value!r}")
    return value


def _model(value: Any, where: str) -> str:
    """A bundled model's name, or a user model's ``module:callable`` (checked before anything
    loads: a file path fails later with a raw TypeError)."""
    text = _text(value, where)
    if is_user_model(text):
        try:
            check_model_spec(text)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from err
    return text


def _device(value: Any, where: str) -> str:
    try:
        return check_device(_text(value, where))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err


def _device_name(value: Any, where: str) -> str:
    """A torch device name, not checked against this machine (a run on a Ray cluster checks it
    where it runs: a laptop without CUDA may send work to GPU nodes)."""
    text = _text(value, where)
    try:
        parse_device(text)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err
    return text


Check = Callable[[Any, str], Any]

#: How each option is checked, by its name (also its key in a configuration file).
CHECKS: dict[str, Check] = {
    "dataset": _text, "data_root": _path, "bundled": _flag, "download": _flag, "model": _model,
    "weights": _path, "no_weights": _flag, "attacks": _names, "settings": _names, "only": _names,
    "num_images": _positive, "indices": _int_list, "targets": _targets,
    "num_targets": _positive, "seed": _integer, "batch_size": _positive, "device": _device,
    "threads": _positive, "shard": _shard, "out": _path, "progress": _flag, "split": _split,
}


# --- attacks -----------------------------------------------------------------------------------

def parse_value(text: str) -> Any:
    """A TOML value (number, bool, string in quotes, list), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def attack_specs(entries: Sequence[Mapping[str, Any]], overrides: Sequence[str]
                 ) -> tuple[AttackSpec, ...]:
    """Specs from attack entries ({"name": ..., "label": ..., params}) with ``--set
    ATTACK.PARAM=VALUE`` applied (ATTACK: a label or a name)."""
    entries = [_checked_entry(e) for e in entries]
    if not entries:
        raise ConfigError("no attack given: use --attack NAME or [[attack]] in --config")
    for item in overrides:
        key, eq, value = item.partition("=")
        target, dot, param = key.partition(".")
        if not eq or not dot or not param:
            raise ConfigError(f"--set expects ATTACK.PARAM=VALUE, got {item!r}")
        matched = [e for e in entries if target in (e.get("label"), e.get("name"))]
        if not matched:
            raise ConfigError(f"--set {item!r}: no attack named {target!r} in this run")
        for e in matched:
            e[param] = parse_value(value)
    return tuple(_spec(e) for e in _unique_labels(entries))


def _checked_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an attack entry whose name is a string and whose label, if any, a visible
    name: reports and --only name attacks by it."""
    name, label = entry.get("name"), entry.get("label")
    if not isinstance(name, str):
        raise ConfigError(f"attack entry without a name: {dict(entry)}")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ConfigError(f"attack {name!r}: label must be a non-empty string, got {label!r}")
    return dict(entry)


def _spec(entry: dict[str, Any]) -> AttackSpec:
    name, label = entry.pop("name"), entry.pop("label", None)
    try:
        return AttackSpec(name, entry, label)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _unique_labels(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels = [e.get("label") or e.get("name") for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"attack labels must be unique, got {labels}: give each a label")
    return entries


def select_attacks(specs: Sequence[AttackSpec], only: Sequence[str]) -> tuple[AttackSpec, ...]:
    """The specs whose label or attack name is in ``only`` (config order kept); an entry of
    ``only`` that matches nothing is an error, so a typo does not silently run nothing."""
    unknown = [o for o in only if not any(o in (s.display, s.name) for s in specs)]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r}: no such attack in this run; "
                          f"attacks: {[s.display for s in specs]}")
    return tuple(s for s in specs if s.display in only or s.name in only)


# --- the configuration -------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalConfig:
    """Everything an evaluation run needs, validated; its defaults are :mod:`.defaults`'."""

    dataset: str
    out: Path
    attacks: tuple[AttackSpec, ...]
    data_root: Path | None = None
    bundled: bool = False
    download: bool = False
    split: str = defaults.SPLIT         # "train": adversarial examples for adversarial training
    model: str | None = None            # default: the dataset's bundled model
    weights: Path | None = None
    no_weights: bool = False            # a module:callable model as it builds itself
    num_images: int | None = None       # first N correctly classified images (None: all)
    indices: tuple[int, ...] | None = None
    targets: str | tuple[int, ...] = defaults.TARGETS
    num_targets: int = defaults.NUM_TARGETS
    seed: int = defaults.SEED
    batch_size: int = defaults.BATCH_SIZE
    device: str = defaults.DEVICE
    threads: int | None = None
    shard: tuple[int, int] = defaults.SHARD
    progress: bool = True
    origin: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_sources(cls, file: Path | None = None, options: Mapping[str, Any] | None = None,
                     *, device_here: bool = True) -> "EvalConfig":
        """The configuration of a TOML ``file`` (keys as the options' long names, ``[[attack]]``
        tables) overridden by ``options`` (None or () values: not given). ``device_here=False``:
        the device need not exist on this machine (the run happens elsewhere, e.g. on Ray)."""
        raw, origin = _merged(file, options or {})
        checks = CHECKS if device_here else {**CHECKS, "device": _device_name}
        values = {k: checks[k](v, origin[k]) for k, v in raw.items() if k in checks}
        _check_combinations(values, origin)
        specs = attack_specs([*raw.get("attack", []), *({"name": n} for n in
                                                         values.pop("attacks", ()))],
                             values.pop("settings", ()))
        only = values.pop("only", ())
        if only:
            specs = select_attacks(specs, only)
        return cls(**_required(values), attacks=specs, origin=origin)

    @property
    def named_dataset(self) -> bool:
        return self.dataset in DATASETS

    @property
    def model_spec(self) -> str:
        if self.model is not None:
            return self.model
        if not self.named_dataset:
            raise ConfigError("--model is required for an image folder (e.g. efficientnet_lite0)")
        return DATASETS[self.dataset].default_model

    @property
    def store_path(self) -> Path:
        return self.out / shard_store_name(self.shard)


def _merged(file: Path | None, options: Mapping[str, Any]
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """File values overridden by the given options, and where each value came from."""
    from_file = load_toml(file) if file is not None else {}
    attack_tables = from_file.pop("attack", [])
    if not isinstance(attack_tables, list) or not all(isinstance(a, dict) for a in attack_tables):
        raise ConfigError(f"{file}: attack must be [[attack]] tables (name = ..., parameters), "
                          f"got {attack_tables!r}")
    from_file = {k.replace("-", "_"): v for k, v in from_file.items()}
    unknown = set(from_file) - set(CHECKS)
    if unknown:
        raise ConfigError(f"{file}: unknown keys {sorted(unknown)}")
    given = {k: v for k, v in options.items() if v is not None and v != ()}
    origin = {k: f"{file}: {k}" for k in from_file}
    origin.update({k: "--" + k.replace("_", "-") for k in given})
    return {**from_file, **given, "attack": attack_tables}, origin


def _check_combinations(values: Mapping[str, Any], origin: Mapping[str, str]) -> None:
    """ConfigError for options that contradict each other or that the run would ignore: each
    must change what is attacked, or be refused."""
    check_model_weights(values.get("model"), values.get("weights"),
                        values.get("no_weights", False), origin)
    if "num_images" in values and "indices" in values:
        raise ConfigError(f"{origin['num_images']} and {origin['indices']} both choose the "
                          "images: give one (-n: the first N correctly classified images; "
                          "--indices: these images)")
    targets = values.get("targets", defaults.TARGETS)
    if "num_targets" in values and targets != "random":
        raise ConfigError(f"{origin['num_targets']} applies only to --targets random (targets "
                          f"here: {targets_text(targets)}); drop it or use --targets random")


#: The command-line names of the options :func:`check_model_weights` checks.
WEIGHTS_OPTIONS = {"model": "--model", "weights": "--weights", "no_weights": "--no-weights"}


def check_model_weights(model: str | None, weights: object, no_weights: bool,
                        origin: Mapping[str, str] = WEIGHTS_OPTIONS) -> None:
    """A user model (module:callable) needs --weights, or --no-weights to say that the network
    as the callable builds it (randomly initialised, unless it loads weights itself) is what
    should be attacked: attacks on an untrained network all "succeed" and measure nothing.
    ``origin`` names where ``model``, ``weights`` and ``no_weights`` came from (an option, or
    a --config file's key)."""
    if no_weights and weights is not None:
        raise ConfigError(f"{origin['no_weights']} and {origin['weights']} contradict each "
                          "other: give one")
    if no_weights and (model is None or not is_user_model(model)):
        raise ConfigError(f"{origin['no_weights']} applies to a module:callable --model; a "
                          "bundled model loads its own weights")
    if model is not None and is_user_model(model) and weights is None and not no_weights:
        raise ConfigError(f"{origin['model']} {model!r} without --weights would attack the "
                          "network as the callable builds it, randomly initialised unless it "
                          "loads weights itself: give --weights FILE (.safetensors or a state "
                          "dict), or --no-weights if that network is what you mean to attack")


def targets_text(targets: str | tuple[int, ...]) -> str:
    """A --targets value as written on the command line."""
    return targets if isinstance(targets, str) else ",".join(map(str, targets))


def _required(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("dataset") is None:
        if not values.get("bundled"):
            raise ConfigError("--dataset is required (or dataset = ... in --config; with "
                              "--bundled it defaults to mnist)")
        values["dataset"] = "mnist"
    if values.get("out") is None:
        raise ConfigError("-o/--out is required (or out = ... in --config)")
    known = {f.name for f in fields(EvalConfig)}
    return {k: v for k, v in values.items() if k in known}
