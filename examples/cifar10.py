"""CIFAR-10 data (the JPEG zip, decoded once and cached) for the example networks, which live in
the package with their shipped weights (:mod:`ann2snn.zoo.cifar10`: :class:`ResNet20`,
:class:`VGG`; re-exported here, so ``--model examples/cifar10.py:resnet20`` keeps working).

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

from ann2snn.zoo.cifar10 import (
    CLASSES,
    MODELS,
    VGG,
    BasicBlock,
    ResNet20,
    load_cifar10_resnet20,
    load_cifar10_vgg,
    resnet20,
    vgg,
)

__all__ = [
    "CLASSES",
    "MODELS",
    "VGG",
    "BasicBlock",
    "ResNet20",
    "load_cifar10",
    "load_cifar10_resnet20",
    "load_cifar10_vgg",
    "read_cifar10_zip",
    "resnet20",
    "vgg",
]

ROOT = Path(__file__).resolve().parents[1]
#: The JPEG re-encoding of CIFAR-10 beside the repository (see its README.md).
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"
DEFAULT_CACHE = ROOT / "runs" / "cifar10" / "cifar10_uint8.pt"


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

    Raises:
        FileNotFoundError: no zip at ``zip_path`` (the message says where it was looked for and
            how to give another path).
    """
    if not os.path.isfile(zip_path):
        raise FileNotFoundError(
            f"no CIFAR-10 zip at {zip_path}: pass --zip PATH to cifar10-jpeg.zip (the default is "
            "../shared/data/cifar10/cifar10-jpeg.zip beside this checkout)"
        )
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
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
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
