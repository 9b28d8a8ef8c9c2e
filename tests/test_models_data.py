"""Tests for the model definitions, dataset loaders and shipped weights.

Dataset loaders are exercised on tiny synthetic files written to ``tmp_path``,
so no real dataset is needed. The pretrained-model tests use only the weights
and sample images shipped inside the package.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from strattack.data import default_data_root, load_cifar10, load_mnist, load_samples
from strattack.models import CIFAR10Net, MNISTNet, Normalized, load_pretrained

# --------------------------------------------------------------------------- helpers


def _write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def _fake_mnist(root: Path, n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make range checks meaningful
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return images, labels


def _fake_cifar(root: Path, n: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        batches[name] = (data, labels)
    return batches


# --------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("subdir", ["", "mnist"])
def test_load_mnist_parses_idx(tmp_path: Path, subdir: str) -> None:
    images, labels = _fake_mnist(tmp_path / subdir if subdir else tmp_path)
    x, y = load_mnist(tmp_path, split="test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (5,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_allclose(x[:, 0].numpy(), images / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y.numpy(), labels)
    xt, _ = load_mnist(tmp_path, split="train")
    assert xt.shape == (5, 1, 28, 28)


def test_load_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        load_mnist(tmp_path, split="test")
    msg = str(exc.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "download" in msg


def test_load_mnist_bad_magic(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)), magic=0x1234)
    with pytest.raises(ValueError, match="magic"):
        load_mnist(tmp_path, split="test")


def test_load_mnist_truncated(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x0801, 10) + b"\x01\x02")
    with pytest.raises(ValueError):
        load_mnist(tmp_path, split="test")


def test_load_mnist_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_mnist(tmp_path, split="validation")


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("layout", ["root", "batchdir", "cifar10"])
def test_load_cifar10_parses_batches(tmp_path: Path, layout: str) -> None:
    base = tmp_path / "cifar10" if layout == "cifar10" else tmp_path
    batches = _fake_cifar(base)
    root = tmp_path / "cifar-10-batches-py" if layout == "batchdir" else tmp_path
    x, y = load_cifar10(root, split="test")
    data, labels = batches["test_batch"]
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == labels
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # Channel-major layout: the first 1024 values are the red plane, row by row.
    np.testing.assert_allclose(x[0, 0].numpy().ravel(), data[0, :1024] / 255.0, atol=1e-7)
    np.testing.assert_allclose(x[1, 2, 3, 5].item(), data[1, 2048 + 3 * 32 + 5] / 255.0, atol=1e-7)
    xt, yt = load_cifar10(root, split="train")
    assert xt.shape == (20, 3, 32, 32) and yt.shape == (20,)
    assert yt.tolist()[:4] == batches["data_batch_1"][1]


def test_load_cifar10_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        load_cifar10(tmp_path, split="train")
    msg = str(exc.value)
    assert all(f"data_batch_{i}" in msg for i in range(1, 6))
    assert "cifar-10-batches-py" in msg and "prepare_cifar10.py" in msg and "download" in msg


def test_load_cifar10_malformed(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(ValueError):
        load_cifar10(tmp_path, split="test")


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATTACK_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("STRATTACK_DATA")
    assert default_data_root() == Path("./data")


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize(
    ("net", "shape"), [(MNISTNet(), (3, 1, 28, 28)), (CIFAR10Net(), (3, 3, 32, 32))]
)
def test_nets_output_logits(net: nn.Module, shape: tuple[int, ...]) -> None:
    net.eval()
    out = net(torch.rand(shape))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_cifar_net_without_batchnorm_matches_paper_layout() -> None:
    net = CIFAR10Net(batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_normalized_applies_mean_std() -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    wrapped = Normalized(nn.Identity(), mean, std)
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(wrapped(x), expected)
    assert {"mean", "std"} <= set(dict(wrapped.named_buffers()))


def test_normalized_rejects_bad_std() -> None:
    with pytest.raises(ValueError):
        Normalized(nn.Identity(), (0.5,), (0.0,))


# --------------------------------------------------------------------------- shipped weights


@pytest.mark.parametrize(("name", "min_acc"), [("mnist", 0.95), ("cifar10", 0.70)])
def test_pretrained_accuracy_on_bundled_samples(name: str, min_acc: float) -> None:
    model = load_pretrained(name)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    images, labels, indices = load_samples(name)
    assert images.dtype == torch.float32 and 0 <= float(images.min()) <= float(images.max()) <= 1
    assert indices.tolist() == list(range(len(labels)))
    with torch.no_grad():
        acc = (model(images).argmax(1) == labels).float().mean().item()
    assert acc >= min_acc, f"{name}: accuracy {acc:.3f} on bundled samples"


def test_pretrained_input_gradients_flow() -> None:
    model = load_pretrained("mnist")
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_load_pretrained_unknown_name() -> None:
    with pytest.raises(ValueError, match="mnist"):
        load_pretrained("imagenet")


@pytest.mark.parametrize("spec, user", [("mnist", False), ("efficientnet_lite0", False),
                                         ("my_pkg.nets:build", True), ("gap_model:make", True)])
def test_is_user_model_tells_module_callable_from_bundled_names(spec: str, user: bool) -> None:
    from strattack.models.loading import is_user_model

    assert is_user_model(spec) is user


def test_load_samples_unknown_name() -> None:
    with pytest.raises(ValueError):
        load_samples("svhn")


def test_robust_mnist_model_is_accurate_and_resists_a_small_pgd() -> None:
    """The shipped adversarially trained model (Table 2): accurate on the bundled images, and a
    short PGD at eps = 0.3 flips few of them (the undefended model loses almost all)."""
    from strattack.models.adversarial_training import robust_accuracy

    images, labels, _ = load_samples("mnist")
    images, labels = images[:50], labels[:50]
    torch.manual_seed(0)
    accs = {}
    for name in ("mnist_robust", "mnist"):
        model = load_pretrained(name)
        with torch.no_grad():
            clean = (model(images).argmax(1) == labels).float().mean().item()
        accs[name] = (clean, robust_accuracy(model, images, labels, 0.3, steps=10,
                                             step_size=0.05))
    assert accs["mnist_robust"][0] >= 0.96 and accs["mnist_robust"][1] >= 0.8, accs
    assert accs["mnist"][1] <= 0.2, accs
