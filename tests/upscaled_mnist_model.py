"""A user model for the transfer tests (``upscaled_mnist_model:build``): the bundled MNIST net
behind a 32x32 input, declared by an ``input_size`` attribute, as `strattack transfer` reads it."""
import torch.nn.functional as F
from torch import Tensor, nn

from strattack.models import load_pretrained


class Upscaled(nn.Module):
    input_size = (32, 32)

    def __init__(self) -> None:
        super().__init__()
        self.net = load_pretrained("mnist")

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != (1, 32, 32):
            raise ValueError(f"expected (N, 1, 32, 32), got {tuple(x.shape)}")
        return self.net(F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False))


def build() -> nn.Module:
    return Upscaled()
