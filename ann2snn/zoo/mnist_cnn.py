"""The seed tutorial's MNIST CNN and its shipped weights."""

from __future__ import annotations

import torch
from torch import nn

from ann2snn.zoo.mnist import embedded_data_dir

WEIGHTS_FILE = "mnist_cnn.pt"


class MnistCNN(nn.Module):
    """The seed CNN: three [Conv2d -> BatchNorm2d(eps=1e-3) -> ReLU -> AvgPool2d(2)] blocks,
    Flatten, Linear(32, 10), ReLU.

    Shape:
        Input ``[B, 1, 28, 28]``; output ``[B, 10]`` (non-negative class scores).
        Spatial sizes: 28 -> 26 -> 13 -> 11 -> 5 -> 3 -> 1.

    The final Linear's bias starts at 0.1 so that no output unit begins dead behind the
    final ReLU (a dead unit never recovers: its gradient is zero).
    """

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, 32, 3), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(), nn.AvgPool2d(2)]

        self.network = nn.Sequential(*block(1), *block(32), *block(32), nn.Flatten(), nn.Linear(32, 10), nn.ReLU())
        nn.init.constant_(self.network[-2].bias, 0.1)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def load_mnist_cnn() -> MnistCNN:
    """The seed CNN with the shipped trained weights, in eval mode, on the CPU."""
    model = MnistCNN()
    state = torch.load(embedded_data_dir() / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
