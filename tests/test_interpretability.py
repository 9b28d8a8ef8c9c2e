"""Interpretability tools (Section 6, Appendix E) against hand computations: ASM eqs. (60)/(61) in
closed form for a linear model and from a full Jacobian for a small CNN, CAM from the features
and the last layer's weights, B_ASM thresholds against numpy.percentile, IS of eq. (23), and
the figure functions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import count_passes, small_cnn
from strattack.interpretability import (GAPNet, asm, asm_mask, cam, cam_mask, find_cam_layers,
                                        interpretability_curve, interpretability_score,
                                        percentile_threshold)
from strattack.models import MNISTNet, Normalized
from strattack.viz.interpretability import (plot_asm_panels, plot_cam_panels,
                                            plot_is_vs_percentile)


pytestmark = pytest.mark.usefixtures("one_thread")


def close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """numpy comparison (torch.testing.assert_close imports torch.distributed: seconds)."""
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=rtol, atol=atol)


def asm_by_hand(g_t: np.ndarray, g_o: np.ndarray) -> np.ndarray:
    """Eqs. (60)/(61) written case by case: 0 if g_t < 0 or g_o > 0, else g_t * |g_o|."""
    out = g_t * np.abs(g_o)
    out[(g_t < 0) | (g_o > 0)] = 0.0
    return out


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def tiny_gap(seed: int = 0, channels: int = 3, classes: int = 4) -> nn.Sequential:
    """conv -> ReLU -> AdaptiveAvgPool2d(1) -> Flatten -> Linear: the CAM structure."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(5, classes)).double().eval()


# ---------------------------------------------------------------- ASM


@pytest.mark.parametrize("variant", ["61", "60"])
def test_asm_linear_model_closed_form(variant):
    """The gradients of Z = W x + b are the rows of W: eq. (61) uses W_t and W_t0, eq. (60) W_t
    and sum_{j != t} W_j."""
    rng = np.random.default_rng(0)
    k, shape = 6, (2, 4, 3)
    w = rng.normal(size=(k, int(np.prod(shape))))
    model = Linear(torch.tensor(w), torch.tensor(rng.normal(size=k)))
    x = torch.rand(4, *shape, dtype=torch.float64)
    t0, t = np.array([0, 1, 2, 5]), np.array([3, 0, 4, 5])   # last: t == t0 gives all zeros
    got = asm(model, x, torch.tensor(t0), torch.tensor(t), variant=variant)
    assert got.shape == x.shape and got.dtype == x.dtype
    for n in range(4):
        g_o = w[t0[n]] if variant == "61" else w.sum(0) - w[t[n]]
        want = asm_by_hand(w[t[n]].copy(), g_o).reshape(shape)
        np.testing.assert_allclose(got[n].numpy(), want, rtol=1e-12, atol=1e-12)
    if variant == "61":
        assert (got[3] == 0).all()


def test_asm_matches_full_jacobian_of_small_cnn():
    model = small_cnn(channels=2, classes=5, dtype=torch.float64)
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(model, x)[0, :, 0].numpy()   # (K, C, H, W)
    t0, t = 1, 3
    np.testing.assert_allclose(asm(model, x, t0, t).numpy()[0],
                               asm_by_hand(jac[t], jac[t0]), rtol=1e-10, atol=1e-12)
    others = jac.sum(0) - jac[t]
    np.testing.assert_allclose(asm(model, x, None, t, variant="60").numpy()[0],
                               asm_by_hand(jac[t], others), rtol=1e-10, atol=1e-12)


def test_asm_batch_equals_single_calls_with_two_backward_passes():
    model = small_cnn(channels=3, classes=5, dtype=torch.float64)
    x = torch.rand(5, 3, 6, 6, dtype=torch.float64)
    t0, t = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 3, 0, 1, 2])
    seen = count_passes(model)
    batch = asm(model, x, t0, t)
    assert seen == {"fwd": 5, "bwd": 10}          # one forward, one backward per logit
    singles = torch.cat([asm(model, x[i:i + 1], int(t0[i]), int(t[i])) for i in range(5)])
    close(batch, singles, rtol=1e-12, atol=1e-14)
    assert (batch >= 0).all() and not x.requires_grad


def test_asm_rejects_bad_arguments():
    model = small_cnn(channels=1, classes=5)
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="variant"):
        asm(model, x, 0, 1, variant="62")
    with pytest.raises(ValueError, match="true_labels"):
        asm(model, x, None, 1)
    with pytest.raises(ValueError, match="targets"):
        asm(model, x, 0, torch.tensor([1, 5]))


# ---------------------------------------------------------------- masks and IS


@pytest.mark.parametrize("percentile", [0, 30, 50, 73.5, 90, 100])
def test_asm_mask_matches_numpy_percentile_and_keeps_the_right_fraction(percentile):
    torch.manual_seed(1)
    scores = torch.rand(3, 3, 5, 7, dtype=torch.float64)   # distinct values, d = 105
    mask = asm_mask(scores, percentile, strict=False)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    d = scores[0].numel()
    for n in range(3):
        thr = np.percentile(scores[n].numpy(), percentile)
        np.testing.assert_array_equal(mask[n].numpy(), scores[n].numpy() >= thr)
        kept = mask[n].double().mean().item()
        assert abs(kept - (1 - percentile / 100)) <= 1 / d + 1e-12
        strict = asm_mask(scores, percentile, strict=True)[n].numpy()
        np.testing.assert_array_equal(strict, scores[n].numpy() > thr)


def test_mask_ties_and_cam_mask_shape():
    zeros = torch.zeros(2, 1, 4, 4)
    assert asm_mask(zeros, 50, strict=False).all() and not asm_mask(zeros, 50, strict=True).any()
    cams = torch.rand(4, 6, 6)
    m = cam_mask(cams, 75, strict=False)
    assert m.shape == (4, 6, 6) and m.dtype == torch.bool
    np.testing.assert_allclose(percentile_threshold(cams, 75).numpy(),
                               np.percentile(cams.flatten(1).numpy(), 75, axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="percentile"):
        asm_mask(cams, 101)


def test_interpretability_score_bounds_support_and_zero_delta():
    torch.manual_seed(2)
    delta = torch.randn(4, 3, 6, 6) * (torch.rand(4, 1, 6, 6) < 0.3)
    delta[3] = 0
    support = delta != 0
    full = interpretability_score(delta, support)
    assert torch.equal(full[:3], torch.ones(3)) and torch.isnan(full[3])
    assert torch.equal(interpretability_score(delta, ~support)[:3], torch.zeros(3))
    random = interpretability_score(delta, torch.rand(4, 3, 6, 6) < 0.5)[:3]
    assert ((random >= 0) & (random <= 1)).all()
    pixel = torch.rand(4, 1, 6, 6) < 0.5                 # one mask for all channels
    want = interpretability_score(delta, pixel.expand(-1, 3, -1, -1))
    close(interpretability_score(delta, pixel), want)
    close(interpretability_score(delta, pixel[:, 0]), want)
    d0, m0 = delta[0].flatten().numpy(), pixel[0].expand(3, -1, -1).flatten().numpy()
    assert float(want[0]) == pytest.approx(np.linalg.norm(d0 * m0) / np.linalg.norm(d0))
    with pytest.raises(ValueError, match="mask"):
        interpretability_score(delta, torch.ones(4, 2, 6, 6, dtype=torch.bool))
    curve = interpretability_curve(torch.rand(4, 3, 6, 6), delta, [0, 50, 90], strict=False)
    assert curve.shape == (3, 4) and torch.equal(curve[0, :3], torch.ones(3))


# ---------------------------------------------------------------- CAM


def cam_by_hand(features: torch.Tensor, weight: torch.Tensor, classes, size) -> torch.Tensor:
    raw = torch.einsum("nk,nkhw->nhw", weight[classes], features)
    up = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    lo = up.flatten(1).min(1).values[:, None, None]
    hi = up.flatten(1).max(1).values[:, None, None]
    return (up - lo) / (hi - lo)


def test_cam_equals_hand_computation():
    model = tiny_gap()
    x = torch.rand(3, 3, 5, 6, dtype=torch.float64)
    classes = torch.tensor([0, 3, 1])
    feats = model[1](model[0](x)).detach()
    want = cam_by_hand(feats, model[4].weight.detach(), classes, (5, 6))
    got = cam(model, x, classes)                                   # auto-detected layers
    assert got.shape == (3, 5, 6)
    close(got, want, rtol=1e-10, atol=1e-12)
    assert got.amin(dim=(1, 2)).eq(0).all() and got.amax(dim=(1, 2)).eq(1).all()
    explicit = cam(model, x, classes, features=model[1], classifier=model[4])
    close(explicit, want, rtol=1e-10, atol=1e-12)
    raw = cam(model, x, classes, normalize=False)
    # GAP identity behind CAM (Zhou et al.): mean of the un-upsampled map + bias = logit
    m = torch.einsum("nk,nkhw->nhw", model[4].weight[classes], feats).mean(dim=(1, 2))
    close(m + model[4].bias[classes], model(x).gather(1, classes[:, None])[:, 0])
    assert raw.shape == (3, 5, 6)
    singles = torch.cat([cam(model, x[i:i + 1], int(classes[i])) for i in range(3)])
    close(got, singles, rtol=1e-10, atol=1e-12)


def test_cam_through_normalized_wrapper_and_functional_pooling():
    torch.manual_seed(3)
    net = GAPNet(in_channels=1, num_classes=3, widths=(4, 6)).double().eval()
    wrapped = Normalized(net, [0.5], [0.25]).double()
    features, classifier = find_cam_layers(wrapped, torch.rand(1, 1, 8, 8, dtype=torch.float64))
    assert features is net.features and classifier is net.classifier
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    feats = net.features((x - 0.5) / 0.25).detach()
    want = cam_by_hand(feats, net.classifier.weight.detach(), torch.tensor([2, 0]), (8, 8))
    close(cam(wrapped, x, torch.tensor([2, 0])), want, rtol=1e-10, atol=1e-12)


def test_cam_rejects_models_without_gap_linear_head():
    with pytest.raises(ValueError, match="global average pooling"):
        cam(MNISTNet().eval(), torch.rand(1, 1, 28, 28), 0)
    with pytest.raises(ValueError, match="global average pooling"):   # AdaptiveAvgPool2d(2)
        cam(small_cnn(channels=1), torch.rand(1, 1, 6, 6), 0)
    model = tiny_gap()
    with pytest.raises(ValueError, match="GAP"):                     # pre-activation map
        cam(model, torch.rand(1, 3, 5, 5, dtype=torch.float64), 0,
            features=model[0], classifier=model[4])
    with pytest.raises(ValueError, match="both"):
        cam(model, torch.rand(1, 3, 5, 5, dtype=torch.float64), 0, features=model[1])


# ---------------------------------------------------------------- figures


def is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_write_png(tmp_path):
    """Fig. 3(a), Fig. 3(b) with a 1-channel image, Fig. 4 with a 3-channel image."""
    torch.manual_seed(4)
    p1 = plot_is_vs_percentile([30, 50, 70, 90], {"StrAttack": torch.tensor([0.9, 0.8, 0.7, 0.5]),
                                                  "C&W": np.array([0.8, 0.7, 0.5, 0.3])},
                               tmp_path / "is.png")
    paths = [p1]
    for channels in (1, 3):
        model = GAPNet(in_channels=channels, num_classes=3, widths=(4,)).eval()
        x = torch.rand(1, channels, 8, 8)
        deltas = {"StrAttack": torch.randn(1, channels, 8, 8) * (torch.rand(1, 1, 8, 8) < 0.2),
                  "C&W": 0.05 * torch.randn(1, channels, 8, 8)}
        if channels == 1:
            paths.append(plot_asm_panels(x[0], asm(model, x, 0, 1)[0],
                                         {k: v[0] for k, v in deltas.items()}, 90,
                                         tmp_path / "asm.png", class_names=("cat", "dog")))
            continue
        adv = {k: (x + v).clamp(0, 1) for k, v in deltas.items()}
        cams = {"original": (cam(model, x, 0)[0], cam(model, x, 1)[0])}
        cams.update({k: (cam(model, a, 0)[0], cam(model, a, 1)[0]) for k, a in adv.items()})
        paths.append(plot_cam_panels(x[0], {k: a[0] for k, a in adv.items()}, cams,
                                     tmp_path / "sub" / "cam.png", class_names=("cat", "dog")))
    assert all(is_png(p) for p in paths)


def test_measure_interpretability_equals_direct_computation_in_any_batching():
    from strattack.interpretability.analysis import measure_interpretability

    model = tiny_gap(seed=3, channels=3, classes=4).double()
    torch.manual_seed(3)
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    y, t = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 0, 2])
    deltas = {"sparse": torch.randn_like(x) * (torch.rand_like(x) < 0.2),
              "dense": torch.randn_like(x)}
    got = measure_interpretability(model, x, y, t, deltas, (30, 60, 90), batch_size=2)
    whole = measure_interpretability(model, x, y, t, deltas, (30, 60, 90), batch_size=5)
    scores = asm(model, x, y, t)
    maps = cam(model, x, y)[:, None]
    for name, d in deltas.items():
        want = torch.stack([interpretability_score(d, asm_mask(scores, p)) for p in (30, 60, 90)])
        close(got.asm_is[name], want)
        close(whole.asm_is[name], want)
        want_cam = torch.stack([interpretability_score(d, cam_mask(maps, p)) for p in (30, 60, 90)])
        close(got.cam_is[name], want_cam)
    means = got.means()
    assert set(means) == {"asm", "cam"} and len(means["asm"]["dense"]) == 3
    mean, se, n = got.paired_difference("sparse", "dense", "cam")
    diff = got.cam_is["sparse"] - got.cam_is["dense"]
    keep = ~diff.isnan().any(dim=0)
    assert n == int(keep.sum()) and n > 1
    close(torch.tensor(mean, dtype=diff.dtype), diff[:, keep].mean(dim=1))
    close(torch.tensor(se, dtype=diff.dtype),
          torch.tensor([float(np.std(row, ddof=1)) / n ** 0.5 for row in diff[:, keep].numpy()],
                       dtype=diff.dtype))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(192, 4)).double()
    no_cam = measure_interpretability(linear, x, y, t, deltas)
    assert no_cam.cam_is is None and "global average pooling" in no_cam.cam_unavailable
    with pytest.raises(ValueError, match="global average pooling"):
        measure_interpretability(linear, x, y, t, deltas, use_cam=True)
