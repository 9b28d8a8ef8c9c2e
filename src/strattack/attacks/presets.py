"""The named configurations of the ADMM attacks, each a value derived from another with
:meth:`~strattack.attacks.config.AttackConfig.replace`:

* :data:`APP_F`: Appendix F's settings, the defaults of :func:`~strattack.attacks.admm_attack`;
* :data:`STRATTACK`: the defaults of :func:`~strattack.attacks.str_attack` (README, "Design
  choices": tau = 1 and a shorter budget with rescue steps);
* :data:`STRATTACK_LINF`: the defaults of :func:`~strattack.attacks.str_attack_linf` (Table 2);
* :data:`AUTHORS_CODE`: ``str_attack(preset="authors_code")``, below;
* :data:`CLUSTERED`, :data:`CLUSTERED_MNIST`, :data:`CLUSTERED_IMAGENET`:
  ``str_attack(preset="clustered")`` (8 x 8 groups at stride 4, for 32 x 32 images such as
  CIFAR-10), ``"clustered_mnist"`` (4 x 4 at stride 2, 28 x 28 digits) and
  ``"clustered_imagenet"`` (the paper's 13 x 13 groups and c0 = 2.5, 224 x 224 images): the
  defaults with the group layout that puts the perturbation in few connected clusters at each
  image size (BENCHMARKS.md, "GSE").

``"authors_code"``: the ImageNet settings of the authors' TensorFlow code (KaidiXu/StrAttack,
``l2_LADMMST_attack_v3.py`` run by ``test_attack_iclr.py``), written in our parameter names.
Their iteration keeps scaled duals (u <- u + delta - z) and

    delta = rho/(rho + 2 gamma) (z - u),      z = (eta z + 2 rho (delta + u) + rho (w + s)
                                                   + rho (y + v) - grad) / (eta + 4 rho)

with rho = 15, gamma = 2, tau = 3, eta_k = 5 sqrt(k). That is exactly ADMM on (6) with its own
penalty rho_delta = 2 rho = 30 on the block z = delta and gamma = 4 (30/(30 + 2*4) = 15/19, the
same delta-step), tau = 3, rho = 15 on the y- and w-blocks: the problem they solve weighs
D by 4 and g by 3 (tau : gamma = 0.75, not App. F's 2). The deviations that remain are listed in
README.md ("The authors'-code preset").
"""
from __future__ import annotations

from .admm_config import ADMMConfig, StrAttackConfig

APP_F = ADMMConfig()

# tau = 1 and 3 x 100 iterations + refinement 2 x 80 with up to 2 rescue steps: on the MNIST
# speed task, 100% ASR below adv_lib's l0 and l2 at under 1,000 model passes per example
# (BENCHMARKS.md, section 11).
STRATTACK = StrAttackConfig(tau=1.0, binary_search_steps=3, max_iterations=100,
                            refine_iterations=80, rescue_steps=2)

# Table 2: App. F's budget, the refinement (20) at gamma = 0, and the images the search never
# fooled refined from their closest miss (REPRODUCTION.md, Table 2).
STRATTACK_LINF = StrAttackConfig(refine_gamma=0.0, refine_misses=True)

AUTHORS_CODE = STRATTACK.replace(
    # ADMM (Prop. 1): their rho = 15, tau = 3, gamma = 2 with the 2*rho weight on delta + u.
    rho=15.0,
    rho_delta=30.0,
    gamma=4.0,
    tau=3.0,
    alpha=5.0,               # eta_k = 5 sqrt(k), k restarting at 1 every c-step
    group_size=13,           # their ImageNet mask (image_size > 32): 13x13, stride 13
    stride=13,
    epsilon=0.5,             # their w-step clips to [-ep, ep] with ep = 0.5 (eq. 11)
    # The search on c: 1, x5 while failing, then bisection; success = the best l2 improved.
    initial_const=1.0,
    const_growth=5.0,
    success_rule="improved",
    warm_start=False,        # z, u, v, s (and k) reset at every c-step
    binary_search_steps=6,   # 2,000 + 1,000 * step iterations: 27,000 in all
    max_iterations=2000,
    iteration_growth=1000,
    check_every=1,           # the candidate y checked every iteration
    patience=None,           # no early stop
    # Refinement (Prop. 3): 8 rounds of 400 iterations, c restarted at 5, each round from the
    # current best on sigma (3% quantile) recomputed from it; their delta-step factor
    # rho/(rho + gamma/100) is (21) with gamma = 2/200 = 0.01.
    refine=True,
    refine_search_steps=8,
    refine_iterations=400,
    refine_initial_const=5.0,
    refine_quantile=0.03,
    refine_gamma=0.01,
    rescue_steps=0,          # they have none
)

# The defaults with 8 x 8 groups overlapping at stride 4 (Prop. 2): the perturbed pixels gather
# in one or two connected clusters (GSE's measure of group sparsity) at a lower l2 than 2 x 2
# groups and the defaults' budget (BENCHMARKS.md, "GSE").
CLUSTERED = STRATTACK.replace(group_size=8, stride=4)

# On 28 x 28 digits 8 x 8 groups are too coarse (more clusters than the defaults); 4 x 4 at
# stride 2 gives about two (BENCHMARKS.md, "GSE", MNIST).
CLUSTERED_MNIST = STRATTACK.replace(group_size=4, stride=2)

# At 224 x 224, 8 x 8 groups are too small; the paper's ImageNet groups (13 x 13, stride 13)
# with Table 1's first constant (c0 = 2.5) give fewer clusters than GSE at less l2
# (BENCHMARKS.md, "GSE", ImageNet).
CLUSTERED_IMAGENET = STRATTACK.replace(group_size=13, stride=13, initial_const=2.5)

#: The presets of ``str_attack(preset=NAME)``.
PRESETS: dict[str, StrAttackConfig] = {"authors_code": AUTHORS_CODE, "clustered": CLUSTERED,
                                       "clustered_mnist": CLUSTERED_MNIST,
                                       "clustered_imagenet": CLUSTERED_IMAGENET}
