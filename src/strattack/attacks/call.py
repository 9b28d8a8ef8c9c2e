"""The call of a public attack, owned here once (the split of foolbox 3's ``MinimizationAttack``:
a validated configuration value, then one checked run):

* :class:`Attack` wraps an attack's documented signature: a call binds the arguments, checks the
  per-call ones (``targeted``, ``true_labels``, ``seeds``), builds the configuration from the
  family's defaults (or a preset) and the keywords given, then :meth:`Attack.run`;
* :meth:`Attack.run` checks the inputs once, runs a model in training mode in eval mode and
  hands it back as it came, attacks half-precision inputs in float32 and returns them in their
  dtype, re-checked there, and calls the family's core ``core(model, inputs, labels, config,
  targeted=..., true_labels=...)``, which does the work.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Generic, Iterator, Mapping, Protocol, TypeVar

import torch
from torch import Tensor, nn

from ..result import AttackResult
from ..solver.losses import is_adversarial, logit_margin
from ..validation import POSITIONAL, check_inputs, check_model, check_value_type
from .config import AttackConfig
from .projections import budget_in_dtype, project_exact, project_l2_exact

C = TypeVar("C", bound=AttackConfig)
F = TypeVar("F", bound=Callable[..., AttackResult])

HALF_DTYPES = (torch.float16, torch.bfloat16)

#: Arguments that describe one call, not the attack: they are not part of its configuration.
PER_CALL = ("targeted", "true_labels", "seeds")


class Core(Protocol[C]):
    def __call__(self, model: Any, inputs: Tensor, labels: Tensor, config: C, *,
                 targeted: bool, true_labels: Tensor | None, **per_call: Any) -> AttackResult: ...


# --- the model's mode ----------------------------------------------------------------------

# Layers whose output depends on the mode; a custom module may read ``self.training`` too, so
# every module is switched, but only these make the switch worth a warning.
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Run ``model`` in eval mode and restore every submodule's own training flag afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    if any(training and isinstance(m, MODE_DEPENDENT) for m, training in flags):
        warnings.warn("the model is in training mode: the attack runs it in eval mode (dropout "
                      "off, normalisation statistics frozen) and gives it back in training "
                      "mode; call model.eval() before attacking to silence this warning",
                      UserWarning, stacklevel=4)
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


# --- precision -----------------------------------------------------------------------------

def _parameter_dtype(model: Any) -> torch.dtype | None:
    """The floating dtype of a module's first floating parameter or buffer (None: unknown)."""
    if isinstance(model, nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                return t.dtype
    return None


class _InDtype:
    """Calls a model on inputs cast to its own dtype (when it has one) and returns its logits in
    the working dtype: a model whose last layer is ``.double()``, or that returns half-precision
    logits, then meets the solver's tensors in one dtype."""

    def __init__(self, model: Callable[[Tensor], Tensor], model_dtype: torch.dtype | None,
                 work_dtype: torch.dtype) -> None:
        self.model, self.model_dtype, self.work_dtype = model, model_dtype, work_dtype

    def __call__(self, x: Tensor) -> Tensor:
        out = self.model(x if self.model_dtype is None else x.to(self.model_dtype))
        if isinstance(out, Tensor) and out.is_floating_point():
            return out.to(self.work_dtype)
        return out


def working_dtype(inputs: Tensor) -> torch.dtype:
    """Half precision has too few digits for the solver (an ADMM step, a quantile position over
    65,520 entries): work in float32, return the inputs' dtype."""
    return torch.float32 if inputs.dtype in HALF_DTYPES else inputs.dtype


def _adapted(model: Any, work_dtype: torch.dtype) -> _InDtype:
    model_dtype = _parameter_dtype(model)
    return _InDtype(model, None if model_dtype == work_dtype else model_dtype, work_dtype)


def _back_to_input_dtype(result: AttackResult, inputs: Tensor, model: Any, labels: Tensor,
                         config: AttackConfig, targeted: bool) -> AttackResult:
    """The float32 result in the inputs' half dtype: rounded, put back on the box and the budget
    exactly in that dtype, and re-checked by one more forward pass on what is returned (rounding
    can move an example across the decision boundary; ``success`` describes the returned
    tensor)."""
    adv = result.adv.to(inputs.dtype)
    epsilon = getattr(config, "epsilon", None)
    if getattr(config, "norm", "linf") == "l2" and epsilon is not None:
        eps = torch.full((adv.shape[0],), float(epsilon), dtype=adv.dtype, device=adv.device)
        adv = project_l2_exact(inputs, adv, eps)
    else:
        adv = project_exact(inputs, adv, None if epsilon is None
                            else budget_in_dtype(epsilon, adv.dtype))
    with torch.no_grad():
        margin = logit_margin(model(adv.to(result.adv.dtype)), labels.long(), targeted)
    result.success = is_adversarial(margin, getattr(config, "confidence", 0.0))
    result.adv, result.inputs = adv, inputs
    if result.unrefined is not None:
        result.unrefined = project_exact(inputs, result.unrefined.to(inputs.dtype), None)
    if result.forward_passes is not None:
        result.forward_passes = result.forward_passes + 1
        result.stages.setdefault("final check (input dtype)", [0, 0])[0] += adv.shape[0]
    return result


# --- the public attack ---------------------------------------------------------------------

class Attack(Generic[C]):
    """A public attack: its documented signature, its default configuration, its named presets
    and its core. Calling it is calling the attack with the library's convention
    ``attack(model, inputs, labels, *, targeted=False, ...)``."""

    def __init__(self, signature: Callable[..., AttackResult], defaults: C, core: Core[C],
                 presets: Mapping[str, C] | None = None) -> None:
        functools.update_wrapper(self, signature)
        self.name: str = signature.__name__
        self.defaults, self.core, self.presets = defaults, core, dict(presets or {})
        self.signature = inspect.signature(signature)
        self._hints = typing.get_type_hints(signature)
        _check_signature(self)

    @property
    def required(self) -> frozenset[str]:
        """Configuration keywords without a default (``epsilon`` of ``str_attack_linf``)."""
        return frozenset(n for n, p in self.signature.parameters.items()
                         if p.default is p.empty and n not in (*POSITIONAL, *PER_CALL))

    @property
    def takes_seeds(self) -> bool:
        return "seeds" in self.signature.parameters

    def preset(self, name: object) -> C:
        """The configuration named ``name``; a ValueError naming the known presets otherwise."""
        if not isinstance(name, str) or name not in self.presets:
            raise ValueError(f"unknown preset {name!r}; known presets: {sorted(self.presets)} "
                             "(or None for no preset)")
        return self.presets[name]

    def configure(self, preset: str | None = None, display: str | None = None,
                  **changes: Any) -> C:
        """The defaults (or ``preset``'s values) with ``changes``: validated, a ValueError
        prefixed with ``display`` (default: the attack's name) for a bad value."""
        base = self.defaults if preset is None else self.preset(preset)
        try:
            return base.replace(**changes)
        except ValueError as err:
            raise ValueError(f"{display or self.name}: {err}") from None

    def __call__(self, *args: Any, **kwargs: Any) -> AttackResult:
        arguments = self.signature.bind(*args, **kwargs).arguments
        model, inputs, labels = (arguments.pop(name) for name in POSITIONAL)
        per_call = {name: self._checked(name, arguments.pop(name))
                    for name in PER_CALL if name in arguments}
        config = self.configure(**arguments)
        return self.run(model, inputs, labels, config, **per_call)

    def _checked(self, name: str, value: Any) -> Any:
        try:
            return check_value_type(name, value, self._hints[name])
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}") from None

    def run(self, model: Any, inputs: Tensor, labels: Tensor, config: C, *,
            targeted: bool = False, true_labels: Tensor | None = None,
            seeds: Tensor | None = None) -> AttackResult:
        """The attack with a ready configuration: the inputs checked once, the model in eval
        mode, half precision attacked in float32 and returned in its dtype."""
        check_model(model)
        check_inputs(inputs)
        work = working_dtype(inputs)
        per_call = {"seeds": seeds} if self.takes_seeds else {}
        with eval_mode(model):
            adapted = _adapted(model, work)
            result = self.core(adapted, inputs.to(work), labels, config, targeted=targeted,
                               true_labels=true_labels, **per_call)
            if work != inputs.dtype:
                result = _back_to_input_dtype(result, inputs, adapted, labels, config, targeted)
        return result


def attack_function(defaults: C, core: Core[C], presets: Mapping[str, C] | None = None
                    ) -> Callable[[F], F]:
    """Make the decorated signature (its keywords and docstring: what users and IDEs see) an
    :class:`Attack` with these defaults, core and presets. The decorated body never runs."""

    def make(signature: F) -> F:
        return typing.cast(F, Attack(signature, defaults, core, presets))

    return make


def _check_signature(attack: Attack[Any]) -> None:
    """The signature's keywords are the configuration's fields with the same defaults (a
    required keyword has none): checked at import, so the two cannot drift apart."""
    fields = {f.name: getattr(attack.defaults, f.name) for f in dataclasses.fields(attack.defaults)}
    keywords = {n: p.default for n, p in attack.signature.parameters.items()
                if n not in (*POSITIONAL, *PER_CALL, "preset")}
    drift = sorted(n for n in fields.keys() | keywords.keys()
                   if n not in fields or n not in keywords
                   or (keywords[n] is not inspect.Parameter.empty and keywords[n] != fields[n]))
    if drift:
        raise TypeError(f"{attack.name}: the signature and {type(attack.defaults).__name__} "
                        f"differ on {drift}")
