"""The life of an attack call, owned here once so that each attack writes only its own loop
(the shape of foolbox 3's ``MinimizationAttack.__call__``, with our function API):

1. :func:`public_attack` (a decorator on every public attack): every keyword checked against the
   attack's annotations before any model pass; a model in training mode run in eval mode and
   handed back exactly as it came; half-precision inputs attacked in float32 and returned in
   their dtype, re-checked there.
2. :class:`AttackCall`: the validation pass (clean logits, counted), then **counted model
   calls** (:meth:`AttackCall.logits`, :meth:`AttackCall.margin`): the forward pass is counted
   where it is made and the backward pass when a gradient flows through the logits, so no
   attack can forget a count.
3. The per-image constant search: :func:`update_const` (the C&W rule, used by every attack with
   a constant c) and :class:`ConstSearch` (C&W's step/iteration/abort-early schedule).
4. :class:`BestSoFar`: per image, the closest adversarial example met so far and its c.
5. :meth:`AttackCall.finish`: the final check on the returned tensor (with the confidence the
   search used) and the :class:`AttackResult`.

Everything is batched over N images with per-image state; a method acting on a subset of the
images takes the indices ``idx`` of that subset (rows of the per-image tensors).
"""
from __future__ import annotations

import functools
import typing
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn

from ..progress import passes_made
from ..result import AttackResult
from ..solver.losses import is_adversarial, logit_margin
from ..validation import (POSITIONAL, check_count, check_inputs, check_parameters,
                          check_positive, keyword_arguments, validate_attack_call)
from .projections import budget_in_dtype, project_exact, project_l2_exact

Model = Callable[[Tensor], Tensor]
F = TypeVar("F", bound=Callable[..., AttackResult])

HALF_DTYPES = (torch.float16, torch.bfloat16)


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
    """Calls a model on inputs cast to its own dtype and returns logits in the working dtype."""

    def __init__(self, model: Callable[[Tensor], Tensor], model_dtype: torch.dtype,
                 work_dtype: torch.dtype) -> None:
        self.model, self.model_dtype, self.work_dtype = model, model_dtype, work_dtype

    def __call__(self, x: Tensor) -> Tensor:
        out = self.model(x.to(self.model_dtype))
        if isinstance(out, Tensor) and out.is_floating_point():
            return out.to(self.work_dtype)
        return out


def working_dtype(inputs: Tensor) -> torch.dtype:
    """Half precision has too few digits for the solver (an ADMM step, a quantile position over
    65,520 entries): work in float32, return the inputs' dtype."""
    return torch.float32 if inputs.dtype in HALF_DTYPES else inputs.dtype


def _adapted(model: Any, work_dtype: torch.dtype) -> Any:
    model_dtype = _parameter_dtype(model)
    if model_dtype is None or model_dtype == work_dtype:
        return model
    return _InDtype(model, model_dtype, work_dtype)


def _back_to_input_dtype(result: AttackResult, inputs: Tensor, model: Any, labels: Tensor,
                         arguments: dict[str, Any]) -> AttackResult:
    """The float32 result in the inputs' half dtype: rounded, put back on the box and the budget
    exactly in that dtype, and re-checked by one more forward pass on what is returned (rounding
    can move an example across the decision boundary; ``success`` describes the returned
    tensor)."""
    adv = result.adv.to(inputs.dtype)
    epsilon = arguments.get("epsilon")
    if arguments.get("norm", "linf") == "l2" and epsilon is not None:
        eps = torch.full((adv.shape[0],), float(epsilon), dtype=adv.dtype, device=adv.device)
        adv = project_l2_exact(inputs, adv, eps)
    else:
        adv = project_exact(inputs, adv, None if epsilon is None
                            else budget_in_dtype(epsilon, adv.dtype))
    with torch.no_grad():
        margin = logit_margin(model(adv.to(result.adv.dtype)), labels.long(),
                              bool(arguments.get("targeted", False)))
    result.success = is_adversarial(margin, float(arguments.get("confidence", 0.0)))
    result.adv, result.inputs = adv, inputs
    if result.unrefined is not None:
        result.unrefined = project_exact(inputs, result.unrefined.to(inputs.dtype), None)
    if result.forward_passes is not None:
        result.forward_passes = result.forward_passes + 1
        result.stages.setdefault("final check (input dtype)", [0, 0])[0] += adv.shape[0]
    return result


# --- the decorator -------------------------------------------------------------------------

def public_attack(fn: F) -> F:
    """Checks, model mode and precision around an attack ``fn(model, inputs, labels, **kw)``."""

    @functools.wraps(fn)
    def attack(*args: Any, **kwargs: Any) -> AttackResult:
        arguments = check_parameters(fn, keyword_arguments(fn, args, kwargs))
        model, inputs, labels = (arguments.get(k) for k in POSITIONAL)
        check_inputs(inputs)
        work = working_dtype(inputs)
        with eval_mode(model):
            adapted = _adapted(model, work)
            rest = {k: v for k, v in arguments.items() if k not in POSITIONAL}
            result = fn(adapted, inputs.to(work), labels, **rest)
            if work != inputs.dtype:
                result = _back_to_input_dtype(result, inputs, adapted, labels, rest)
        return result

    return typing.cast(F, attack)


# --- counted model calls -------------------------------------------------------------------

@dataclass
class PassCounter:
    """Model forward/backward passes per image (one image through the model = one pass), and
    totals per stage as [forward, backward]. Forward passes are also reported to the progress
    hook (:mod:`strattack.progress`)."""

    forward: Tensor
    backward: Tensor
    stages: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def zeros(cls, n: int, device: torch.device) -> "PassCounter":
        z = torch.zeros(n, dtype=torch.long, device=device)
        return cls(z, z.clone())

    def add_forward(self, idx: Tensor, stage: str) -> None:
        images = int(idx.numel())       # the shape is known on the host: no device sync
        self.forward[idx] += 1
        self.stages.setdefault(stage, [0, 0])[0] += images
        passes_made(images)

    def add_backward(self, idx: Tensor, stage: str) -> None:
        self.backward[idx] += 1
        self.stages.setdefault(stage, [0, 0])[1] += int(idx.numel())


@dataclass
class AttackCall:
    """A validated attack call. Made after the parameter checks, so that bad parameters cost no
    model pass; the validation pass (the clean logits) is counted for every image."""

    model: Model
    inputs: Tensor
    targeted: bool
    x0: Tensor              # inputs.detach(); distances are measured to it
    labels: Tensor          # as long
    clean_margin: Tensor    # logit_margin at the inputs, from the validation pass
    counter: PassCounter
    confidence: float = 0.0  # kappa: success means the wanted class wins by at least kappa

    @classmethod
    def start(cls, model: Model, inputs: Tensor, labels: Tensor, targeted: bool,
              true_labels: Tensor | None, confidence: float = 0.0) -> "AttackCall":
        clean_logits = validate_attack_call(model, inputs, labels, targeted, true_labels)
        x0 = inputs.detach()
        labels = labels.long()
        n, device = x0.shape[0], x0.device
        counter = PassCounter.zeros(n, device)
        counter.add_forward(torch.arange(n, device=device), "validation")
        return cls(model, inputs, targeted, x0, labels,
                   logit_margin(clean_logits, labels, targeted), counter, confidence)

    @property
    def already(self) -> Tensor:
        """Images the model already classifies as wanted (by the confidence): nothing to do."""
        return is_adversarial(self.clean_margin, self.confidence)

    def logits(self, x: Tensor, idx: Tensor, stage: str) -> Tensor:
        """The model on ``x`` (the images ``idx``), counted: one forward pass now, one backward
        pass whenever a gradient flows back through these logits."""
        out = self.model(x)
        self.counter.add_forward(idx, stage)
        if out.requires_grad:
            out.register_hook(lambda grad: self.counter.add_backward(idx, stage))
        return out

    def margin(self, x: Tensor, idx: Tensor, stage: str) -> Tensor:
        """logit_margin of the counted model call on ``x`` (the images ``idx``)."""
        labels = self.labels if idx.numel() == self.labels.shape[0] else self.labels[idx]
        return logit_margin(self.logits(x, idx, stage), labels, self.targeted)

    def finish(self, adv: Tensor, *, const: Tensor | None, iterations: Tensor,
               unrefined: Tensor | None = None) -> AttackResult:
        """Final check: success is computed by running the model on the returned tensor, with
        the criterion the search used (margin <= -kappa, :func:`is_adversarial`)."""
        everyone = torch.arange(self.x0.shape[0], device=self.x0.device)
        with torch.no_grad():
            final_margin = self.margin(adv, everyone, "final check")
        counter = self.counter
        return AttackResult(adv=adv.detach(), success=is_adversarial(final_margin, self.confidence),
                            inputs=self.inputs, const=const, iterations=iterations,
                            forward_passes=counter.forward, backward_passes=counter.backward,
                            stages=counter.stages, unrefined=unrefined)


def rows(t: Tensor, idx: Tensor, everyone: bool) -> Tensor:
    """t[idx], without a copy when every image is selected."""
    return t if everyone else t[idx]


# --- best so far ---------------------------------------------------------------------------

class BestSoFar:
    """Per image: the adversarial perturbation with the smallest distance met so far, and the c
    it was found at. Images already classified as wanted (``already``) start at distance 0 and
    c = 0 with delta = 0, so they are returned unchanged; the others at distance and c = inf
    (while none is found the input itself is returned, with c = inf)."""

    def __init__(self, x0: Tensor, already: Tensor) -> None:
        self.delta = torch.zeros_like(x0)
        self.dist = torch.full((x0.shape[0],), float("inf"), dtype=x0.dtype, device=x0.device)
        self.const = self.dist.clone()
        self.dist[already] = 0.0
        self.const[already] = 0.0

    @property
    def found(self) -> Tensor:
        return torch.isfinite(self.dist)

    def update(self, idx: Tensor, dist: Tensor, delta: Tensor, const: Tensor,
               candidate: Tensor | None = None) -> None:
        """Offer ``delta`` (rows idx) at distance ``dist``, found with c = ``const``: the rows
        that are candidates (adversarial; all rows when ``candidate`` is None) and strictly
        closer than the best so far replace it."""
        better = dist < self.dist[idx]
        if candidate is not None:
            better = candidate & better
        b_idx = idx[better]
        self.delta[b_idx] = delta[better]
        self.dist[b_idx] = dist[better]
        self.const[b_idx] = const[better]

    def adversarial(self, x0: Tensor, budget: float | None) -> Tensor:
        """x0 + the best delta, on the box (and the l_inf ``budget``) exactly."""
        return project_exact(x0, x0 + self.delta, budget)

    def result(self, call: AttackCall, budget: float | None, iterations: Tensor,
               unrefined: Tensor | None = None) -> AttackResult:
        """The final check of :meth:`adversarial`; ``const`` is the c of the returned example."""
        return call.finish(self.adversarial(call.x0, budget), const=self.const,
                           iterations=iterations, unrefined=unrefined)


class NearestMiss:
    """Per image: the checked candidate with the smallest margin that was not adversarial (the
    closest miss), and the c it was met at. Where an l_inf-bounded search never fools the model,
    the refinement can start from it (``refine_misses``, issue 17 section 2)."""

    def __init__(self, x0: Tensor) -> None:
        self.delta = torch.zeros_like(x0)
        self.margin = torch.full((x0.shape[0],), float("inf"), dtype=x0.dtype, device=x0.device)
        self.const = torch.ones_like(self.margin)

    def update(self, idx: Tensor, margin: Tensor, delta: Tensor, const: Tensor,
               adversarial: Tensor) -> None:
        closer = ~adversarial & (margin < self.margin[idx])
        c_idx = idx[closer]
        self.delta[c_idx] = delta[closer]
        self.margin[c_idx] = margin[closer]
        self.const[c_idx] = const[closer]


# --- the per-image constant search ---------------------------------------------------------

def update_const(const: Tensor, lower: Tensor, upper: Tensor, success: Tensor, todo: Tensor,
                 growth: float) -> tuple[Tensor, Tensor, Tensor]:
    """C&W binary-search rule per image: success -> c is an upper bound; failure -> a lower
    bound; next c = midpoint when an upper bound exists, else c * growth."""
    upper = torch.where(success & todo, torch.minimum(upper, const), upper)
    lower = torch.where(~success & todo, torch.maximum(lower, const), lower)
    new = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * growth)
    return torch.where(todo, new, const), lower, upper


class ConstSearch:
    """The C&W per-image binary search on c (used by cw_l2 and EAD), with per-image abort-early
    inside each step.

    c starts at ``initial_const``; after each step, :func:`update_const` with growth 10 (an
    upper bound where the step found an adversarial example, else a lower bound; bisection, or
    x10 while there is no upper bound). As in the original, with 10 or more steps the last one
    uses the upper bound (1e10 if none). Only the images in ``todo`` are searched; the search
    ends early once none is left.

    Abort early (per image, when ``abort_early``): every max(1, max_iterations // 10) iterations
    of a step (counted from 0), an image whose loss is > ``stall_ratio`` x its loss at the
    previous check stops for this step.

    Use::

        for _ in search.steps():                      # this step's c: search.const
            ...restart the optimisation of the images in search.todo...
            for k, idx, everyone in search.iterate():  # idx: the images still running
                ...one iteration on the images idx...
                search.record(k, idx, adversarial, loss)
    """

    GROWTH = 10.0

    @staticmethod
    def check(initial_const: float, binary_search_steps: int, max_iterations: int) -> None:
        """The search's parameter checks (to be made before any model pass)."""
        check_positive("initial_const", initial_const)
        check_count("binary_search_steps", binary_search_steps)
        check_count("max_iterations", max_iterations)

    def __init__(self, todo: Tensor, initial_const: float, binary_search_steps: int,
                 max_iterations: int, abort_early: bool, stall_ratio: float,
                 dtype: torch.dtype) -> None:
        n, device = todo.shape[0], todo.device
        self.todo = todo
        self.const = torch.full((n,), float(initial_const), dtype=dtype, device=device)
        self.lower = torch.zeros_like(self.const)
        self.upper = torch.full_like(self.const, float("inf"))
        self.iterations = torch.zeros(n, dtype=torch.long, device=device)   # per image, all steps
        self.binary_search_steps, self.max_iterations = binary_search_steps, max_iterations
        self.abort_early, self.stall_ratio = abort_early, stall_ratio
        self.check_every = max(1, max_iterations // 10)
        # per step: images still optimising, step found an adversarial example, loss at last check
        self.running = torch.zeros_like(todo)
        self.success = torch.zeros_like(todo)
        self.prev = torch.full_like(self.const, float("inf"))

    def steps(self) -> Iterator[int]:
        """The binary-search steps; c is updated after each."""
        repeat = self.binary_search_steps >= 10
        for search_step in range(self.binary_search_steps):
            if not self.todo.any():
                break
            if repeat and search_step == self.binary_search_steps - 1:
                last = torch.where(torch.isfinite(self.upper), self.upper,
                                   torch.full_like(self.upper, 1e10))
                self.const = torch.where(self.todo, last, self.const)
            self.running = self.todo.clone()
            self.success = torch.zeros_like(self.todo)
            self.prev = torch.full_like(self.const, float("inf"))
            yield search_step
            self.const, self.lower, self.upper = update_const(
                self.const, self.lower, self.upper, self.success, self.todo, self.GROWTH)

    def iterate(self) -> Iterator[tuple[int, Tensor, bool]]:
        """(k, idx, everyone) for the iterations of a step: idx = the images still running,
        everyone = whether that is all images (then ``rows`` makes no copies)."""
        n = self.todo.shape[0]
        for k in range(self.max_iterations):
            idx = self.running.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            yield k, idx, idx.numel() == n

    def record(self, k: int, idx: Tensor, adversarial: Tensor, loss: Tensor) -> None:
        """End of iteration k on the images idx: count it, note which found an adversarial
        example in this step, and apply the abort-early check to ``loss``."""
        self.iterations[idx] += 1
        self.success[idx] |= adversarial
        if self.abort_early and k % self.check_every == 0:
            stalled = loss > self.prev[idx] * self.stall_ratio
            self.prev[idx] = loss
            self.running[idx[stalled]] = False
