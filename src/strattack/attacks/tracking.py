"""Per-image bookkeeping of an attack call, shared by every attack so that each writes only its
own loop: the validation pass and the **counted model calls** (:class:`AttackCall`: a forward
pass is counted where it is made, a backward pass when a gradient flows through the logits, so
no attack can forget a count), the closest adversarial example met so far (:class:`BestSoFar`),
the closest miss (:class:`NearestMiss`) and the final check (:meth:`AttackCall.finish`).

Everything is batched over N images with per-image state; a method acting on a subset of the
images takes the indices ``idx`` of that subset (rows of the per-image tensors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..progress import passes_made
from ..result import AttackResult
from ..solver.losses import is_adversarial, logit_margin
from ..validation import validate_attack_call
from .projections import project_exact

Model = Callable[[Tensor], Tensor]

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
    gradient_checked: bool = False   # whether the first gradient pass was seen to reach x

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
        if not self.gradient_checked and x.requires_grad and torch.is_grad_enabled():
            check_gradient_reaches(out, x)
            self.gradient_checked = True
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


GRADIENT_BROKEN = (
    "the model's logits do not depend on its inputs through autograd, so no attack can follow "
    "their gradient (every image would fail): is the forward pass run under torch.no_grad(), "
    "or does it .detach() the inputs or the logits (or go through numpy)? Keep the forward "
    "pass differentiable; the attacks switch gradients on and off themselves")


def check_gradient_reaches(out: Tensor, x: Tensor) -> None:
    """A ValueError unless the autograd graph of ``out`` leads back to ``x`` (checked once per
    call, on the first pass that asks for a gradient: it costs a walk over the graph)."""
    if not out.requires_grad or not _graph_reaches(out, x):
        raise ValueError(GRADIENT_BROKEN)


def _graph_reaches(out: Tensor, x: Tensor) -> bool:
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node is x.grad_fn or getattr(node, "variable", None) is x:
            return True
        todo.extend(parent for parent, _ in node.next_functions)
    return False


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
    the refinement can start from it (``refine_misses``)."""

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
