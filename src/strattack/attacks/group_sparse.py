"""GSE: group-wise sparse adversarial attack (Sadiku, Wagner & Pokutta, ICLR 2025), batched.

Per image, a proximal gradient method on

    f(x0 + delta) + mu * ||delta||_2^2 + sum_ij lambda_ij * sum_c |delta_cij|^(1/2)

(f: the C&W hinge (3) with kappa; lambda: one weight per pixel, shared by its channels):

1. for k < k_hat: a gradient step of size sigma on f + mu ||.||^2, then the proximal step of the
   1/2-quasinorm (half-thresholding, :func:`half_threshold`, at sigma * lambda), a momentum
   average with the previous proximal iterate, and the lambda update of
   :func:`lower_lambda_near_perturbation`: lambda falls next to perturbed pixels (a
   Gaussian-blurred mask of them) and rises by 1/q far from any, so that groups grow;
2. at k = k_hat, the pixels whose lambda rose above lambda0 are frozen at zero; the remaining
   support is optimised by projected accelerated gradient steps up to ``iterations``;
3. an image stops at its first adversarial iterate of a search step. Around this, a search on
   lambda0 per image (``search_steps``): a success raises lambda0 (x ``search_factor`` until a
   failure bounds it, then bisection), a failure lowers it to 0.9 * lower + 0.1 * lambda0;
   lambda0 starts at 1% of the largest lambda whose first proximal step is non-zero (closed
   form, :func:`largest_active_lambda`). The returned example is the success with the fewest
   non-zero ``patch`` x ``patch`` patches (d_2,0), GSE's measure of group sparsity.

Every step of every image is one forward and one backward pass (the gradient) plus one forward
pass (the success check). Inputs are in [0, 1]; the authors work on [-1, 1], where the same
problem has mu / 4 and a step 4 x sigma (docs/guide/design.md, "GSE in [0, 1]").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import Tensor

from ..result import AttackResult
from ..solver.groups import nonzero_windows
from ..solver.losses import hinge, is_adversarial
from ..validation import check_count, check_nonnegative, check_positive
from .call import attack_function
from .config import AttackConfig
from .projections import per_image
from .tracking import AttackCall, BestSoFar, Model

#: (54^(1/3) / 4): |z| must exceed this times lam^(2/3) for half-thresholding to keep it.
HALF_THRESHOLD = 54 ** (1 / 3) / 4


@dataclass(frozen=True)
class GSEConfig(AttackConfig):
    """The configuration of :func:`gse` (its keywords, documented there). The defaults are the
    authors' targeted CIFAR-10 settings in [0, 1] units; :data:`GSE_IMAGENET` their ImageNet
    ones."""

    confidence: float = 0.0
    mu: float = 4.0
    step_size: float = 1.25e-3
    k_hat: int = 50
    q: float = 0.25
    iterations: int = 200
    search_steps: int = 10
    search_factor: float = 2.0
    blur_size: int = 5
    blur_sigma: float = 1.5
    patch: int = 8

    def check(self) -> None:
        check_nonnegative("confidence", self.confidence)
        check_nonnegative("mu", self.mu)
        check_positive("step_size", self.step_size)
        check_count("k_hat", self.k_hat, minimum=0)
        if not 0 < self.q < 1:
            raise ValueError(f"q must be in (0, 1) (far pixels' lambda grows by 1/q), got {self.q}")
        check_count("iterations", self.iterations)
        check_count("search_steps", self.search_steps)
        if not self.search_factor > 1:
            raise ValueError(f"search_factor must be > 1, got {self.search_factor}")
        if self.blur_size % 2 == 0 or self.blur_size < 1:
            raise ValueError(f"blur_size must be an odd integer >= 1, got {self.blur_size}")
        check_positive("blur_sigma", self.blur_sigma)
        check_count("patch", self.patch)


#: The authors' ImageNet settings (mu = 0.1, sigma = 0.05, q = 0.9 on [-1, 1]) in [0, 1] units.
GSE_IMAGENET = GSEConfig(mu=0.4, step_size=1.25e-2, q=0.9)


# --- the operators -------------------------------------------------------------------------

def half_threshold(z: Tensor, lam: Tensor | float) -> Tensor:
    """argmin_x (x - z)^2 + lam * |x|^(1/2), entrywise: the half-thresholding of Xu et al.
    (2012, Thm. 1), 0 where |z| <= (54^(1/3)/4) lam^(2/3), else
    (2/3) z (1 + cos(2 pi/3 - (2/3) phi)), phi = arccos((lam/8) (|z|/3)^(-3/2))."""
    lam = torch.as_tensor(lam, dtype=z.dtype, device=z.device)
    mag = z.abs()
    keep = mag > HALF_THRESHOLD * lam ** (2 / 3)
    ratio = (lam / 8) * (mag.clamp_min(torch.finfo(z.dtype).tiny) / 3) ** -1.5
    phi = torch.arccos(ratio.clamp(-1.0, 1.0))
    value = (2 / 3) * z * (1 + torch.cos(2 * math.pi / 3 - 2 * phi / 3))
    return torch.where(keep, value, torch.zeros_like(z))


def largest_active_lambda(grad: Tensor, step_size: float) -> Tensor:
    """Per image, the lambda above which the first proximal step from delta = 0,
    half_threshold(step_size * grad, step_size * lambda), is zero everywhere (the threshold of
    :func:`half_threshold` solved for lambda at the largest |grad|)."""
    top = grad.flatten(1).abs().amax(dim=1)
    return (step_size * top / HALF_THRESHOLD) ** 1.5 / step_size


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The normalised 1-D Gaussian of ``size`` taps (a 2-D blur is two passes of it)."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(mask: Tensor, kernel: Tensor) -> Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with reflected borders."""
    r = kernel.numel() // 2
    rows = F.conv2d(F.pad(mask, (r, r, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(rows, (0, 0, r, r), mode="reflect"), kernel.view(1, 1, -1, 1))


def lower_lambda_near_perturbation(lam: Tensor, delta: Tensor, q: float, kernel: Tensor) -> Tensor:
    """GSE's lambda update: with b the blurred mask of perturbed pixels (any channel non-zero),
    lambda / (1 + b) where b > 0 (near a perturbed pixel: lower, so the group grows) and
    lambda / q elsewhere (far from any: higher). ``lam``: (N, 1, H, W)."""
    perturbed = (delta.abs().sum(dim=1, keepdim=True) > 0).to(lam.dtype)
    near = blur(perturbed, kernel)
    return lam / torch.where(near > 0, 1 + near, torch.full_like(near, q))


# --- the attack ----------------------------------------------------------------------------

def gse_core(model: Model, inputs: Tensor, labels: Tensor, config: GSEConfig, *,
             targeted: bool, true_labels: Tensor | None) -> AttackResult:
    """The work of :func:`gse` for a validated ``config``."""
    if inputs.ndim != 4:
        raise ValueError(f"gse needs images of shape (N, C, H, W), got {tuple(inputs.shape)}")
    call = AttackCall.start(model, inputs, labels, targeted, true_labels, config.confidence)
    x0 = call.x0
    best = BestSoFar(x0, call.already)                 # distance: d_2,0
    active = ~call.already
    iterations = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    if not active.any():
        return best.result(call, None, iterations)
    lam0 = 0.01 * initial_lambda(call, config, active)
    lower, upper = torch.zeros_like(lam0), torch.full_like(lam0, float("inf"))
    for step in range(config.search_steps):
        # The last two steps take a 10x larger step for the images still without a success.
        boost = ~best.found if step >= config.search_steps - 2 else torch.zeros_like(active)
        sigma = config.step_size * (1 + 9 * boost.to(x0.dtype))
        success = search_step(call, config, active, lam0, sigma, best, iterations)
        lam0, lower, upper = update_lambda0(lam0, lower, upper, success, active, config)
    return best.result(call, None, iterations)


def initial_lambda(call: AttackCall, config: GSEConfig, active: Tensor) -> Tensor:
    """Per image, :func:`largest_active_lambda` of the loss gradient at delta = 0 (one forward
    and one backward pass of the active images); 1 for the others."""
    idx = active.nonzero().squeeze(1)
    x = call.x0[idx].clone().requires_grad_(True)
    with torch.enable_grad():
        loss = hinge(call.margin(x, idx, "initial lambda"), call.confidence)
        grad, = torch.autograd.grad(loss.sum(), x)
    lam = torch.ones(call.x0.shape[0], dtype=call.x0.dtype, device=call.x0.device)
    lam[idx] = largest_active_lambda(grad, config.step_size)
    return lam


def update_lambda0(lam0: Tensor, lower: Tensor, upper: Tensor, success: Tensor, todo: Tensor,
                   config: GSEConfig) -> tuple[Tensor, Tensor, Tensor]:
    """The search on lambda0: a success makes lambda0 a lower bound and raises it (x
    search_factor while unbounded, else to the midpoint); a failure makes it an upper bound and
    lowers it to 0.9 * lower + 0.1 * lambda0."""
    won, lost = success & todo, ~success & todo
    raised = torch.where(torch.isfinite(upper), (upper + lam0) / 2, lam0 * config.search_factor)
    new = torch.where(won, raised, torch.where(lost, 0.9 * lower + 0.1 * lam0, lam0))
    return new, torch.where(won, lam0, lower), torch.where(lost, lam0, upper)


def search_step(call: AttackCall, config: GSEConfig, todo: Tensor, lam0: Tensor, sigma: Tensor,
                best: BestSoFar, iterations: Tensor) -> Tensor:
    """One run of the proximal method at lambda0 for the images ``todo``, each until its first
    adversarial iterate (offered to ``best``). Returns which images succeeded."""
    x0, n = call.x0, call.x0.shape[0]
    kernel = gaussian_kernel(config.blur_size, config.blur_sigma, x0.dtype, x0.device)
    delta, previous = torch.zeros_like(x0), torch.zeros_like(x0)
    lam = lam0.view(-1, 1, 1, 1).expand(n, 1, *x0.shape[2:]).clone()
    frozen = torch.zeros_like(lam, dtype=torch.bool)
    running, success = todo.clone(), torch.zeros_like(todo)
    t = 1.0
    for k in range(config.iterations):
        idx = running.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        if k == config.k_hat:                          # freeze the pixels lambda pushed away
            frozen = lam > per_image(lam0, lam)
            delta, previous = delta.masked_fill(frozen, 0.0), delta.masked_fill(frozen, 0.0)
        grad = loss_gradient(call, config, delta[idx], idx)
        moved, prox = proximal_step(config, delta[idx], previous[idx], grad, lam[idx],
                                    frozen[idx], sigma[idx], t / t_next, k)
        if k < config.k_hat:
            lam[idx] = lower_lambda_near_perturbation(lam[idx], moved, config.q, kernel)
        x0_i = x0[idx]
        moved = (x0_i + moved).clamp(0, 1) - x0_i
        delta[idx], previous[idx] = moved, prox
        iterations[idx] += 1
        t = t_next
        with torch.no_grad():
            adv = is_adversarial(call.margin(x0_i + moved, idx, "proximal gradient"),
                                 call.confidence)
        patches = nonzero_windows(moved, min(config.patch, *x0.shape[2:])).to(x0.dtype)
        best.update(idx, patches, moved, lam0[idx], candidate=adv)
        success[idx[adv]] = True
        running[idx[adv]] = False
    return success


def loss_gradient(call: AttackCall, config: GSEConfig, delta: Tensor, idx: Tensor) -> Tensor:
    """Gradient of f(x0 + delta) + mu ||delta||^2 for the images ``idx`` (one forward and one
    backward pass)."""
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        margin = call.margin(call.x0[idx] + delta, idx, "proximal gradient")
        loss = hinge(margin, call.confidence) + config.mu * delta.flatten(1).pow(2).sum(dim=1)
        grad, = torch.autograd.grad(loss.sum(), delta)
    return grad


def proximal_step(config: GSEConfig, delta: Tensor, previous: Tensor, grad: Tensor, lam: Tensor,
                  frozen: Tensor, sigma: Tensor, weight: float, k: int) -> tuple[Tensor, Tensor]:
    """(the momentum iterate, the new proximal or projected iterate): before k_hat the
    half-thresholding at sigma * lambda, after it the gradient step with the frozen pixels at
    zero; the momentum iterate is weight * new + (1 - weight) * previous (weight = t_k /
    t_{k+1}), as the authors' code."""
    step = delta - per_image(sigma, delta) * grad
    if k < config.k_hat:
        new = half_threshold(step, per_image(sigma, lam) * lam)
    else:
        new = step.masked_fill(frozen, 0.0)
    return weight * new + (1 - weight) * previous, new


@attack_function(GSEConfig(), gse_core, {"imagenet": GSE_IMAGENET})
def gse(model: Model, inputs: Tensor, labels: Tensor, *,
        targeted: bool = False,
        confidence: float = 0.0,
        mu: float = 4.0,
        step_size: float = 1.25e-3,
        k_hat: int = 50,
        q: float = 0.25,
        iterations: int = 200,
        search_steps: int = 10,
        search_factor: float = 2.0,
        blur_size: int = 5,
        blur_sigma: float = 1.5,
        patch: int = 8,
        true_labels: Tensor | None = None,
        preset: str | None = None) -> AttackResult:
    """GSE (Sadiku, Wagner & Pokutta, ICLR 2025): group-wise sparse adversarial examples by a
    proximal gradient method with the 1/2-quasinorm and per-pixel weights that fall next to
    perturbed pixels (the module docstring gives the algorithm).

    Args:
        confidence: kappa of the C&W hinge; success means the wanted class wins by kappa.
        mu: weight of ||delta||_2^2; step_size: sigma of the gradient steps (x10 in the last
            two search steps for the images still without an adversarial example).
        k_hat: iterations of the proximal phase before the support is frozen; q: far pixels'
            lambda is divided by q at every proximal iteration; blur_size, blur_sigma: the
            Gaussian blur of the perturbed-pixel mask in the lambda update.
        iterations, search_steps, search_factor: per search step, and the search on lambda0.
        patch: the window of d_2,0, by which the best success is chosen.
        preset: None (the authors' CIFAR-10 settings) or ``"imagenet"`` (their ImageNet ones,
            :data:`GSE_IMAGENET`); keywords given explicitly override the preset's values.

    Returns an :class:`AttackResult` (``const``: the lambda0 of the returned example, 0 for
    images already adversarial, inf where none was found; ``iterations``: proximal-gradient
    iterations per image).
    """
