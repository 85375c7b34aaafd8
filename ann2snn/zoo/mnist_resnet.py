"""A small residual network for MNIST and its shipped weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ann2snn.zoo.mnist import embedded_data_dir

WEIGHTS_FILE = "mnist_resnet.pt"


class BasicBlock(nn.Module):
    """``y = relu(bn_b(conv_b(relu(bn_a(conv_a(x))))) + shortcut(x))``, 3×3 convolutions.

    The shortcut is the identity, or a 1×1 convolution + BatchNorm when the channel count changes.
    The two ReLU forms (``F.relu`` and ``Tensor.relu``) and the in-place add are deliberate: the
    converter must handle each.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        out += self.shortcut(x)
        return out.relu()


class MnistResNet(nn.Module):
    """Stem (3×3 conv, stride 2: 28 → 14), block(8), AvgPool2d(2) (14 → 7), block(8 → 16),
    AvgPool2d(2) (7 → 3), block(16), AvgPool2d(3) (3 → 1), Flatten, Linear(16, 10), ReLU.

    Shape:
        Input ``[B, 1, 28, 28]``; output ``[B, 10]`` (non-negative class scores).

    9,794 parameters; at most 16 channels. As in the seed CNN the output passes a final ReLU
    (so the SNN's output layer spikes and the class is the argmax of spike counts), but training
    uses the scores before it (:meth:`logits`): a unit dead behind the final ReLU gets no
    gradient and never recovers, which cost whole classes in a first attempt.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = BasicBlock(8, 8)
        self.pool1 = nn.AvgPool2d(2)
        self.block2 = BasicBlock(8, 16)
        self.pool2 = nn.AvgPool2d(2)
        self.block3 = BasicBlock(16, 16)
        self.pool3 = nn.AvgPool2d(3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10)
        self.out = nn.ReLU()
        nn.init.constant_(self.fc.bias, 0.1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The class scores before the final ReLU (used for training)."""
        x = self.pool1(self.block1(self.stem(x)))
        x = self.pool2(self.block2(x))
        x = self.pool3(self.block3(x))
        return self.fc(self.flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.logits(x))


def load_mnist_resnet() -> MnistResNet:
    """The residual network with the shipped trained weights, in eval mode, on the CPU."""
    model = MnistResNet()
    state = torch.load(embedded_data_dir() / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
