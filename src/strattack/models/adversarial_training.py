"""PGD adversarial training (Madry et al. 2018): training batches replaced by the library's own
PGD examples (:func:`~strattack.attacks.ifgsm` from a random start), and the robust accuracy
the trained model is checked with."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..attacks import ifgsm
from ..result import AttackResult
from ..validation import check_count, check_nonnegative, check_positive

__all__ = ["AdversarialTraining", "robust_accuracy"]


@dataclass(frozen=True)
class AdversarialTraining:
    """PGD adversarial training under ``||delta||_inf <= eps``.

    Madry's MNIST model uses 40 steps of 0.01 for 100k iterations; on two CPU cores fewer,
    larger steps (``steps`` of ``step_size`` from a uniform random start) train in hours, and
    ramping ``eps`` linearly from 0 over the first ``ramp_epochs`` epochs (the step shrinks in
    proportion) keeps training from stalling at chance accuracy early on. ValueError for a
    value out of range, when it is built.
    """

    eps: float = 0.3
    steps: int = 5
    step_size: float = 0.1
    ramp_epochs: float = 2.0

    def __post_init__(self) -> None:
        check_positive("adversarial eps", self.eps)
        check_count("adversarial steps", self.steps)
        check_positive("adversarial step_size", self.step_size)
        check_nonnegative("adversarial ramp_epochs", self.ramp_epochs)

    def eps_at(self, epochs_done: float) -> float:
        """The radius after ``epochs_done`` (fractional) epochs: linear from 0 to ``eps`` over
        the ramp, then ``eps``."""
        if self.ramp_epochs == 0:
            return self.eps
        return self.eps * min(1.0, epochs_done / self.ramp_epochs)

    def examples(self, model: nn.Module, x: Tensor, y: Tensor, epochs_done: float) -> Tensor:
        """The training batch ``(x, y)`` replaced by its PGD examples at the radius of
        ``epochs_done``; at radius 0 (the ramp's start), ``x`` itself. Every image trains on its
        last PGD iterate, adversarial or not (Madry et al.: the maximiser of the loss in the
        ball), as ``return_last`` makes ifgsm return it."""
        eps = self.eps_at(epochs_done)
        if eps <= 0:
            return x
        return _pgd(model, x, y, eps, self.steps, self.step_size / self.eps,
                    return_last=True).adv


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 40,
                    step_size: float = 0.01, batch_size: int = 500) -> float:
    """The fraction of ``(x, y)`` still classified correctly under PGD at radius ``eps``
    (default: Madry's evaluation attack, 40 steps of 0.01 from a random start)."""
    robust = sum(int((~_pgd(model, x[i : i + batch_size], y[i : i + batch_size], eps, steps,
                            step_size / eps).success).sum().item())
                 for i in range(0, len(x), batch_size))
    return robust / len(x)


def _pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int,
         step_fraction: float, return_last: bool = False) -> AttackResult:
    """Untargeted l_inf PGD (ifgsm from a random start). The model runs in eval mode, so that
    BatchNorm's running statistics see only training steps, and is given back in the mode it
    had: a model in training mode trains on the result. (Switching here, not in the attack,
    keeps the attack from warning about a model in training mode.)"""
    was_training = model.training
    model.eval()
    try:
        return ifgsm(model, x, y, norm="linf", epsilon=eps, steps=steps,
                     step_fraction=step_fraction, random_start=True, return_last=return_last)
    finally:
        model.train(was_training)
