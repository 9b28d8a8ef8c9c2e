"""The search budget of the ADMM attacks (issue 17): rescue steps for the images still without an
adversarial example, the windowed inner loop, and str_attack's defaults."""
from __future__ import annotations

import inspect

import pytest
import torch
from helpers import TwoClassLinear, count_passes, small_cnn

from strattack import admm_attack, str_attack, str_attack_linf
from strattack.attacks import ADMMConfig
from strattack.attacks.admm_search import window_end


def two_margins():
    """A linear two-class model and two images at margins ~0.18 (easy) and ~4.8 (hard) from the
    target class 1. With D = ||.||^2 the ADMM minimiser moves along w by c w / 2 while the hinge
    is active, i.e. closes c ||w||^2 / 2 ~ 8 c of margin: c = 0.05 reaches the easy image only,
    the hard one needs c > 0.6 (c = 5 after two growths by 10)."""
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4)
    model = TwoClassLinear(w, -0.5 * w.sum().item())
    x = torch.full((2, 1, 4, 4), 0.5)
    x[0] -= 0.015 * w.sign()
    x[1] -= 0.4 * w.sign()
    return model, x.clamp(0, 1), torch.ones(2, dtype=torch.long)


def run(rescue_steps: int):
    model, x, t = two_margins()
    return admm_attack(model, x, t, targeted=True, tau=0.0, refine=False, initial_const=0.05,
                       binary_search_steps=1, max_iterations=20, patience=None,
                       rescue_steps=rescue_steps)


def test_rescue_steps_run_only_for_images_without_an_adversarial_example():
    plain, rescued = run(0), run(2)
    assert plain.success.tolist() == [True, False]
    assert rescued.success.tolist() == [True, True]
    # the easy image costs nothing more; the hard one ran c = 0.05, 0.5, 5 (x 20 iterations)
    assert plain.iterations.tolist() == [20, 20]
    assert rescued.iterations.tolist() == [20, 60]
    assert rescued.const[1].item() == pytest.approx(5.0)
    assert torch.equal(rescued.adv[0], plain.adv[0])


def test_rescue_stops_as_soon_as_every_image_has_succeeded():
    assert run(5).iterations.tolist() == [20, 60]


def test_rescue_steps_must_be_a_count():
    with pytest.raises(ValueError, match="rescue_steps"):
        ADMMConfig(rescue_steps=-1)


@pytest.mark.parametrize("k, last, patience, expected", [
    (1, 100, 40, 40), (41, 100, 40, 80), (81, 100, 40, 100), (40, 100, 40, 40),
    (1, 100, None, 100), (1, 30, 40, 30), (6, 10, 5, 10)])
def test_window_end_is_the_next_early_stop_point_or_the_last_iteration(k, last, patience,
                                                                       expected):
    assert window_end(k, last, patience) == expected


def test_windowed_loop_with_early_stops_matches_each_image_alone():
    """Images that stop early leave the batch at window ends; the others must not notice: each
    image attacked alone gives the same result and the same iteration count."""
    model = small_cnn(1, 5, seed=3)
    torch.manual_seed(4)
    x = torch.rand(4, 1, 8, 8)
    t = (model(x).argmax(1) + 1) % 5
    kw = dict(targeted=True, patience=5, tol=0.01, check_every=5, max_iterations=60,
              binary_search_steps=2, refine_iterations=20)
    batch = str_attack(model, x, t, **kw)
    assert len(set(batch.iterations.tolist())) > 1     # the early stop did act
    for i in range(4):
        alone = str_attack(model, x[i:i + 1], t[i:i + 1], **kw)
        assert alone.iterations.item() == batch.iterations[i].item()
        torch.testing.assert_close(alone.adv[0], batch.adv[i], atol=1e-5, rtol=0)


def test_str_attack_defaults_and_the_budget_they_imply():
    """The issue-17 defaults, and their cost bound: per image at most (3 + 2 rescue) x 100 main +
    2 x 80 refinement iterations, each one forward + one backward, plus a check every 5."""
    d = {k: v.default for k, v in inspect.signature(str_attack).parameters.items()}
    assert (d["tau"], d["binary_search_steps"], d["max_iterations"], d["refine_search_steps"],
            d["refine_iterations"], d["rescue_steps"]) == (1.0, 3, 100, 2, 80, 2)
    linf = {k: v.default for k, v in inspect.signature(str_attack_linf).parameters.items()}
    assert (linf["tau"], linf["binary_search_steps"], linf["max_iterations"],
            linf["refine_iterations"], linf["rescue_steps"]) == (2.0, 5, 200, 100, 0)
    model = small_cnn(1, 5, seed=1)
    x = torch.rand(3, 1, 8, 8)
    t = (model(x).argmax(1) + 1) % 5
    seen = count_passes(model)
    r = str_attack(model, x, t, targeted=True)
    assert (r.iterations <= 5 * 100 + 2 * 80).all()
    assert seen["bwd"] == r.iterations.sum().item()


# --- refine_misses: the l_inf attack refines its closest misses too (issue 17 section 2) ------

def linf_task():
    """Linear two-class model with positive weights; images 0.05 and 0.12 below the boundary
    in every pixel, so the box eps = 0.15 contains an adversarial example for both."""
    torch.manual_seed(0)
    w = torch.rand(1, 4, 4) + 0.5
    model = TwoClassLinear(w, -0.5 * w.sum().item())
    x = torch.full((2, 1, 4, 4), 0.5)
    x[0] -= 0.05
    x[1] -= 0.12
    return model, x, torch.ones(2, dtype=torch.long)


def linf_run(refine_misses: bool, initial_const: float = 0.5):
    model, x, t = linf_task()
    return str_attack_linf(model, x, t, targeted=True, epsilon=0.15, tau=0.5,
                           initial_const=initial_const, binary_search_steps=1,
                           max_iterations=20, patience=None, refine_misses=refine_misses)


def test_refining_the_closest_miss_can_turn_a_failure_into_a_success_within_eps():
    plain, refined = linf_run(False), linf_run(True)
    assert plain.success.tolist() == [True, False]
    assert refined.success.tolist() == [True, True]
    assert (refined.adv - linf_task()[1]).abs().max() <= 0.15 + 1e-6
    assert torch.equal(refined.adv[0], plain.adv[0])       # a success is refined as before
    assert refined.iterations[1] == 20 + 2 * 100            # the miss ran the refinement too


def test_a_miss_without_any_perturbed_pixel_stays_a_clean_failure():
    """c = 0.01 keeps every candidate at 0: an empty support, nothing to refine."""
    r = linf_run(True, initial_const=0.01)
    assert not r.success.any()
    assert torch.equal(r.adv, linf_task()[1])


def test_nearest_miss_keeps_the_non_adversarial_candidate_of_smallest_margin():
    from strattack.attacks.tracking import NearestMiss
    near = NearestMiss(torch.zeros(3, 2))
    idx = torch.tensor([0, 2])
    near.update(idx, torch.tensor([0.5, -1.0]), torch.ones(2, 2), torch.tensor([1.0, 2.0]),
                adversarial=torch.tensor([False, True]))
    near.update(idx, torch.tensor([0.7, 0.25]), 2 * torch.ones(2, 2), torch.tensor([3.0, 4.0]),
                adversarial=torch.tensor([False, False]))
    assert near.margin.tolist() == [0.5, float("inf"), 0.25]
    assert near.delta[:, 0].tolist() == [1.0, 0.0, 2.0]
    assert near.const.tolist() == [1.0, 1.0, 4.0]


def test_rescue_steps_run_without_early_stop():
    """tol = 1 stalls every image at its second early-stop point (iteration 10) in the main
    search; a rescue step runs all its iterations."""
    model, x, t = two_margins()
    r = admm_attack(model, x, t, targeted=True, tau=0.0, refine=False, initial_const=0.05,
                    binary_search_steps=1, max_iterations=20, patience=5, tol=1.0,
                    rescue_steps=2)
    assert r.iterations[1].item() == 10 + 20 + 20
    assert r.success[1]
