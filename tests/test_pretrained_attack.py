"""StrAttack on the shipped MNIST model and bundled images (the demo's setting), and the CLI."""
from __future__ import annotations

import torch
from click.testing import CliRunner

from strattack import admm_attack, str_attack
from strattack.cli import main
from strattack.data import load_samples
from strattack.models import load_pretrained


def demo_batch(n: int = 5):
    model = load_pretrained("mnist")
    x, y, _ = load_samples("mnist")
    with torch.no_grad():
        ok = (model(x).argmax(1) == y).nonzero().squeeze(1)[:n]
    return model, x[ok], y[ok]


def test_strattack_succeeds_on_demo_images_with_half_the_l0_of_the_dense_baseline():
    model, x, y = demo_batch()
    t = (y + 1) % 10
    sparse = str_attack(model, x, t, targeted=True, true_labels=y)
    dense = admm_attack(model, x, t, targeted=True, true_labels=y, tau=0.0, refine=False)
    assert sparse.success.all() and dense.success.all()
    l0_sparse = sparse.norms()["l0"].float()
    l0_dense = dense.norms()["l0"].float()
    assert (l0_sparse <= 0.5 * l0_dense).all(), (l0_sparse, l0_dense)
    with torch.no_grad():
        assert (model(sparse.adv).argmax(1) == t).all()


def test_demo_command_passes_its_options_and_prints_the_table_and_figure(tmp_path, monkeypatch):
    """The command only parses and prints: the library's demo (run at a small budget by
    test_commands.py, at the real one by README's demo command in test_docs.py) is replaced by
    a recorder."""
    import strattack.commands.demo as demo_module

    calls = []

    def recorded(*args):
        calls.append(args)
        args[3].write_bytes(b"\x89PNG\r\n\x1a\n")
        return demo_module.DemoResult(["| StrAttack | 1 | passes/ex |"], [], args[3])

    monkeypatch.setattr(demo_module, "demo", recorded)
    out = tmp_path / "fig.png"
    result = CliRunner().invoke(main, ["demo", "-n", "2", "--target-offset", "3", "-o", str(out),
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert calls == [("mnist", 2, 3, out, "cpu", 1)]
    assert "| StrAttack |" in result.output and "passes/ex" in result.output
    assert f"figure written to {out.resolve()}" in result.output
