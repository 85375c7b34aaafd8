"""CIFAR-10 models (:class:`ResNet20`, :class:`VGG`) and data (the JPEG zip, decoded once and cached).

Both models take pixels in [0, 1] (``[N, 3, 32, 32]`` float) and return 10 class scores. Neither
normalises its input (no mean/std layer): the BatchNorm after the first convolution absorbs the
scale, and a per-channel normalisation applied before the first convolution's zero padding is not
exactly foldable into that convolution (the padded border would see ``-mean/std`` instead of 0),
so the converted SNN could not compute exactly what the ANN computes. Both are plain
Conv-BN-ReLU networks with average pooling only (no MaxPool, no Dropout), each ReLU its own
``nn.ReLU()`` module. Factories for the CLI (``--model examples/cifar10.py:resnet20``)::

    resnet20()  # He et al. 2016, CIFAR variant, 1x1 conv + BN projection shortcuts, 0.27 M parameters
    vgg()       # 32-32 | pool | 64-64 | pool | 128-128 | pool | Linear(2048, 10), 0.31 M parameters

Data: :func:`read_cifar10_zip` reads ``train/<class>/NNNN.jpg`` or ``test/<class>/NNNN.jpg`` from
the zip (``../shared/data/cifar10/cifar10-jpeg.zip``) in sorted name order, label = the class
folder's index in :data:`CLASSES`; :func:`load_cifar10` caches both splits as uint8 tensors in
``runs/cifar10/cifar10_uint8.pt`` (decoding all 60,000 takes about 10-20 s).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: CIFAR-10's label order (label = index).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

ROOT = Path(__file__).resolve().parents[1]
#: The JPEG re-encoding of CIFAR-10 beside the repository (see its README.md).
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"
DEFAULT_CACHE = ROOT / "runs" / "cifar10" / "cifar10_uint8.pt"


# ----------------------------------------------------------------------------------------- models


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
    """A freshly initialised :class:`ResNet20` (the CLI's ``examples/cifar10.py:resnet20``)."""
    return ResNet20()


def vgg() -> VGG:
    """A freshly initialised :class:`VGG` (the CLI's ``examples/cifar10.py:vgg``)."""
    return VGG()


MODELS = {"resnet20": resnet20, "vgg": vgg}


# ------------------------------------------------------------------------------------------- data


def read_cifar10_zip(path: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``<split>/<class>/*.jpg`` from the zip in sorted name order.

    Returns ``(images, labels)``: uint8 ``[N, 3, 32, 32]`` (RGB) and int64 ``[N]``, the label being
    the class folder's index in :data:`CLASSES`.
    """
    from PIL import Image

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.startswith(split + "/") and n.lower().endswith(".jpg"))
        if not names:
            raise ValueError(f"{path} has no {split}/<class>/*.jpg files")
        images = np.empty((len(names), 32, 32, 3), dtype=np.uint8)
        labels = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            cls = name.split("/")[1]
            if cls not in CLASSES:
                raise ValueError(f"{name}: unknown class folder {cls!r}")
            labels[i] = CLASSES.index(cls)
            with Image.open(io.BytesIO(z.read(name))) as im:
                images[i] = np.asarray(im.convert("RGB"))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def load_cifar10(
    zip_path: str | os.PathLike = DEFAULT_ZIP, cache: str | os.PathLike | None = DEFAULT_CACHE
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both splits as ``{"train": (images, labels), "test": (images, labels)}`` (see
    :func:`read_cifar10_zip`), decoded once and cached at ``cache`` (``None``: no cache).

    The cache records the zip's size and is rebuilt when it differs; it is written atomically.
    """
    size = os.path.getsize(zip_path)
    if cache is not None and os.path.exists(cache):
        data = torch.load(cache, weights_only=True)
        if data.get("zip_size") == size:
            return {s: (data[s + "_images"], data[s + "_labels"]) for s in ("train", "test")}
    splits = {s: read_cifar10_zip(zip_path, s) for s in ("train", "test")}
    if cache is not None:
        cache = Path(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        blob = {"zip_size": size}
        for s, (x, y) in splits.items():
            blob[s + "_images"], blob[s + "_labels"] = x, y
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, cache)
    return splits


def augment(images: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel zero-padded crop back to the input size plus a random horizontal flip,
    one draw per image, as a single gather on the batch (``[N, C, H, W]``, any dtype)."""
    n, c, h, w = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.arange(w)
    cols = torch.where(flip[:, None], dx[:, None] + (w - 1) - cols, dx[:, None] + cols)  # [N, W]
    rows = dy[:, None] + torch.arange(h)  # [N, H]
    return padded[
        torch.arange(n)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
