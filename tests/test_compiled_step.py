"""Issue 17 section 3: the ADMM iteration's arithmetic captured by torch.compile
(``compile_step``). The capture must be one graph (``fullgraph``: a graph break is an error) and
give the eager step's numbers, through a change of the active set (dynamic shapes)."""
from __future__ import annotations

import functools

import pytest
import torch
from torch._dynamo.utils import counters

from strattack import str_attack
from strattack.solver.admm import ADMMParams, RefineADMM, StructuredADMM, feasible_bounds
from strattack.solver.groups import GroupSpec

from helpers import small_cnn


@pytest.fixture
def fast_capture(monkeypatch):
    """torch.compile with the aot_eager backend: the same capture (dynamo + AOT autograd, full
    graph) without the C++ code generation, so the solver cases stay quick."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))


def _run_both(make_core, x: torch.Tensor, gen: torch.Generator, iterations: int = 12):
    """Eager and compiled cores from the same state and gradients; halfway, the active set
    shrinks (a window's gather), as in the search."""
    graphs_before = counters["stats"]["unique_graphs"]
    eager, captured = make_core(False), make_core(True)
    a = eager.init_state(torch.randn(x.shape, generator=gen, dtype=x.dtype) * 0.1)
    b = type(a)({k: v.clone() for k, v in a.items()})
    idx = torch.arange(x.shape[0])
    for k in range(1, iterations + 1):
        if k == iterations // 2:
            idx = torch.tensor([0, 2])
            a, b = a.gather(torch.tensor([0, 2])), b.gather(torch.tensor([0, 2]))
        grad = torch.randn(a["z"].shape, generator=gen, dtype=x.dtype)
        a, b = eager.step(a, grad, k, idx), captured.step(b, grad, k, idx)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-12, atol=1e-12)
    assert counters["stats"]["unique_graphs"] > graphs_before     # it was captured


# Overlapping groups with a per-image rho (every branch of the group path), and no group term.
@pytest.mark.parametrize("size,stride,tau,adaptive", [(3, 2, 0.7, True), (2, 2, 0.0, False)])
def test_captured_structured_step_equals_the_eager_step(fast_capture, size, stride, tau, adaptive):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 7, 7, generator=gen, dtype=torch.float64)
    lo, hi = feasible_bounds(x, 0.3)
    params = ADMMParams(tau=tau, adaptive_rho=adaptive)
    _run_both(lambda c: StructuredADMM(params, GroupSpec(2, 7, 7, size, stride), lo, hi,
                                       compiled=c), x, gen)


def test_captured_refine_step_equals_the_eager_step(fast_capture):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 5, 5, generator=gen, dtype=torch.float64)
    support = torch.rand(x.shape, generator=gen, dtype=torch.float64) > 0.4
    lo, hi = feasible_bounds(x, None, ~support)
    _run_both(lambda c: RefineADMM(ADMMParams(gamma=0.3), lo, hi, support.double(), c), x, gen)


def test_compile_step_reproduces_the_attack_with_inductor():
    """End to end with the default backend (C++ code generation on the CPU): the same examples,
    norms and iteration counts as the eager attack, on a batch whose images stop at different
    windows (so the compiled graph meets several shapes)."""
    torch.manual_seed(0)
    model = small_cnn(channels=1, classes=5)
    x0 = torch.rand(4, 1, 8, 8)
    labels = model(x0).argmax(1)
    targets = (labels + 1) % 5
    kw = dict(targeted=True, binary_search_steps=2, max_iterations=30, refine_iterations=20,
              patience=10)
    eager = str_attack(model, x0, targets, **kw)
    captured = str_attack(model, x0, targets, compile_step=True, **kw)
    assert torch.equal(captured.success, eager.success)
    torch.testing.assert_close(captured.adv, eager.adv, rtol=0, atol=1e-5)
    assert torch.equal(captured.iterations, eager.iterations)


def test_compile_step_without_a_compiler_is_a_clear_error_before_any_work(monkeypatch):
    import strattack.attacks.admm_framework as framework
    monkeypatch.setattr(framework.shutil, "which", lambda name: None)
    calls = []

    def model(x):
        calls.append(1)
        return torch.zeros(x.shape[0], 3)

    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        str_attack(model, torch.rand(1, 1, 4, 4), torch.tensor([1]), targeted=True,
                   compile_step=True)
    assert not calls
