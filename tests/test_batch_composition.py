"""An attack treats each image of a batch on its own: with a model whose output for an image does
not depend on the other images of its batch, the same examples give the same bits whatever batch
they are attacked in (alone, in halves, all together). What a `--ray` run can change is the
model's own arithmetic: PyTorch's CPU kernels choose their summation order by batch size and
thread count, so a plain model may give another last bit for an image alone than in a batch
(README, "On a cluster")."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from helpers import small_cnn
from strattack import attacks

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {
    "str_attack": dict(binary_search_steps=2, max_iterations=30),
    "cw_l2": dict(binary_search_steps=2, max_iterations=30, initial_const=10.0),
    "ead": dict(binary_search_steps=2, max_iterations=30, initial_const=10.0),
    "ifgsm": dict(steps=3, grid_steps=3, search_steps=3, random_start=True),
}
IMAGES = 6
COMPOSITIONS = {"halves": [[0, 2, 4], [1, 3, 5]], "alone": [[i] for i in range(IMAGES)]}


class EachImageAlone(nn.Module):
    """``model`` run on one image at a time: its kernels see the same batch size (1) for every
    image, so an image's logits and gradients cannot depend on its batch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.model(image[None]) for image in x])


def _attack_in(parts: list[list[int]], name: str, model: nn.Module, x: Tensor,
               target: Tensor) -> Tensor:
    """The perturbation of every image, attacking the batches ``parts`` (rows of x) in turn."""
    out = torch.empty_like(x)
    for rows in map(torch.tensor, parts):
        seeds = {"seeds": rows.to(torch.int64)} if name == "ifgsm" else {}
        result = getattr(attacks, name)(model, x[rows], target[rows], targeted=True,
                                        **FAST[name], **seeds)
        out[rows] = result.perturbation.detach()
    return out


@pytest.mark.parametrize("name", sorted(FAST))
def test_an_images_result_does_not_depend_on_its_batch(name):
    model = EachImageAlone(small_cnn(1, seed=3))
    x = torch.rand(IMAGES, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = (model(x).argmax(1) + 1) % 5
    together = _attack_in([list(range(IMAGES))], name, model, x, target)
    assert together.abs().sum() > 0                     # the attacks did something
    for composition, parts in COMPOSITIONS.items():
        assert torch.equal(_attack_in(parts, name, model, x, target), together), composition
