"""The CIFAR-10 example networks (:class:`ResNet20`, :class:`VGG`) and their shipped weights.

Both take pixels in [0, 1] (``[N, 3, 32, 32]`` float) and return 10 class scores ``[N, 10]``.
Neither normalises its input (no mean/std layer): the BatchNorm after the first convolution absorbs
the scale, and a per-channel normalisation applied before the first convolution's zero padding is
not exactly foldable into that convolution (the padded border would see ``-mean/std`` instead of
0), so the converted SNN could not compute exactly what the ANN computes. Both are plain
Conv-BN-ReLU networks with average pooling only (no MaxPool, no Dropout), each ReLU its own
``nn.ReLU()`` module. Factories for the CLI::

    ann2snn.zoo.cifar10:resnet20               # He et al. 2016, CIFAR variant, 0.27 M parameters
    ann2snn.zoo.cifar10:vgg                    # 32-32 | pool | 64-64 | pool | 128-128 | pool | Linear
    ann2snn.zoo.cifar10:load_cifar10_resnet20  # with the shipped weights (use --no-weights)

The data is not shipped (62 MB): ``examples/cifar10.py`` reads the JPEG zip, and any image folder
or zip with one subfolder per class is a data source (``--data PATH``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ann2snn.zoo.mnist import embedded_data_dir

#: CIFAR-10's label order (label = index).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: The shipped state_dicts, in ``ann2snn/zoo/data``.
WEIGHTS_FILES = {"resnet20": "cifar10_resnet20.pt", "vgg": "cifar10_vgg.pt"}

#: The shipped QCFS fine-tunes (L = 4) of the same networks (``examples/train_cifar10.py
#: --init-weights <the weights above> --qcfs-levels 4 --max-lr 0.02 --threads 1``, 6 epochs for
#: the VGG, 5 for the ResNet-20; docs/benchmarks.md).
QCFS_WEIGHTS_FILES = {"resnet20": "cifar10_resnet20_qcfs4.pt", "vgg": "cifar10_vgg_qcfs4.pt"}


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU after the add.

    The shortcut is the identity where the shape is unchanged, otherwise a 1x1 convolution (with
    the block's stride) and BatchNorm (``shortcut``; ``None`` for the identity).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, c_out, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(*_conv_bn(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out else None
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + skip)


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2016): conv3x3(3->16)-BN-ReLU, three stages of three
    :class:`BasicBlock` (16, 32, 64 channels; the first block of stages 2 and 3 has stride 2 and a
    1x1 conv + BN projection shortcut), global average pooling, ``Linear(64, 10)``.

    Input: pixels in [0, 1], no normalisation inside (see the module docstring).
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 3) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, widths[0])
        self.relu1 = nn.ReLU()
        stages, c_in = [], widths[0]
        for s, width in enumerate(widths):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(c_in, width, 2 if s > 0 and b == 0 else 1))
                c_in = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[-1], num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


class VGG(nn.Module):
    """VGG-style CIFAR network: Conv3x3-BN-ReLU pairs 32-32 | AvgPool2d(2) | 64-64 | AvgPool2d(2) |
    128-128 | AvgPool2d(2), flatten, ``Linear(128 * 4 * 4, 10)``. No MaxPool, no Dropout.

    Input: pixels in [0, 1], no normalisation inside (see the module docstring).
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width in widths:
            for _ in range(2):
                layers += [*_conv_bn(c_in, width), nn.ReLU()]
                c_in = width
            layers.append(nn.AvgPool2d(2))
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        side = 32 >> len(widths)
        self.fc = nn.Linear(c_in * side * side, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


def resnet20() -> ResNet20:
    """A freshly initialised :class:`ResNet20` (the CLI's ``ann2snn.zoo.cifar10:resnet20``)."""
    return ResNet20()


def vgg() -> VGG:
    """A freshly initialised :class:`VGG` (the CLI's ``ann2snn.zoo.cifar10:vgg``)."""
    return VGG()


MODELS = {"resnet20": resnet20, "vgg": vgg}


def _load(name: str, qcfs: bool = False) -> nn.Module:
    from converter.qcfs import with_qcfs_layers  # the application layer may use the converter

    files = QCFS_WEIGHTS_FILES if qcfs else WEIGHTS_FILES
    state = torch.load(embedded_data_dir() / files[name], map_location="cpu", weights_only=True)
    model = with_qcfs_layers(MODELS[name](), state)
    model.load_state_dict(state)
    return model.eval()


def load_cifar10_resnet20(qcfs: bool = False) -> ResNet20:
    """:class:`ResNet20` with the shipped weights (87.13 % on the 10,000 CIFAR-10 test images;
    ``examples/train_cifar10.py --model resnet20 --epochs 40``), in eval mode, on the CPU. The CLI's
    ``--model ann2snn.zoo.cifar10:load_cifar10_resnet20 --no-weights``.

    ``qcfs=True``: the QCFS fine-tune of those weights instead (L = 4, 84.51 %; each ReLU a
    :class:`converter.qcfs.QCFS` whose trained λ the converter takes as the layer's scale; Bu et
    al., ICLR 2022), :data:`QCFS_WEIGHTS_FILES`."""
    return cast(ResNet20, _load("resnet20", qcfs))


def load_cifar10_vgg(qcfs: bool = False) -> VGG:
    """:class:`VGG` with the shipped weights (87.77 % on the 10,000 CIFAR-10 test images;
    ``examples/train_cifar10.py --model vgg --epochs 30``), in eval mode, on the CPU. The CLI's
    ``--model ann2snn.zoo.cifar10:load_cifar10_vgg --no-weights``.

    ``qcfs=True``: the QCFS fine-tune of those weights instead (L = 4, 86.70 %; see
    :func:`load_cifar10_resnet20`)."""
    return cast(VGG, _load("vgg", qcfs))
