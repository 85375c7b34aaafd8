"""MNIST IDX reader and the embedded default data set.

MNIST: Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0.
The IDX format is a big-endian header (magic, then one uint32 per dimension) followed by the
raw uint8 payload. Files may be gzip-compressed and may be split into ``NAME.part00``,
``NAME.part01``, ... pieces whose concatenated bytes form the original file.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from exporters.atomic import atomic_path

_IDX_DTYPES: dict[int, np.dtype | type | str] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

#: File names of the four standard MNIST files (each may carry ``.gz`` and/or ``.partNN``).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class MnistArrays:
    """Images and labels as tensors ready for a model.

    Attributes:
        images: ``[N, 1, 28, 28]`` float32 in [0, 1] (pixel / 255).
        labels: ``[N]`` int64 class indices 0-9.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, limit: int | None) -> MnistArrays:
        """The first ``limit`` samples (all when ``limit`` is None or 0)."""
        if not limit:
            return self
        return MnistArrays(self.images[:limit], self.labels[:limit])

    def loader(self, batch_size: int = 256, with_labels: bool = True) -> torch.utils.data.DataLoader:
        """A non-shuffling DataLoader of ``(images, labels)`` batches (or images alone)."""
        tensors = (self.images, self.labels) if with_labels else (self.images,)
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(*tensors), batch_size=batch_size, shuffle=False
        )


def _read_bytes(path: Path) -> bytes:
    """Bytes of ``path``, or of its ``.partNN`` pieces joined in order; gunzipped if gzip."""
    if path.exists():
        raw = path.read_bytes()
    else:
        parts = sorted(path.parent.glob(path.name + ".part*"))
        if not parts:
            raise FileNotFoundError(f"no IDX file or .part* pieces at {path}")
        raw = b"".join(p.read_bytes() for p in parts)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"corrupt gzip data in {path}: {exc}") from exc
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the stored dtype and shape.

    Raises:
        ValueError: bad magic number, unknown dtype code, or a payload whose size does not
            match the header; the message names ``name``.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"not an IDX file: {name}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"unknown IDX dtype code 0x{code:02x} in {name}")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{name}: header says {expected} payload bytes, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain, ``.gz``, or split into ``.partNN`` pieces).

    ``path`` may name the file with or without its ``.gz`` suffix; the reader tries
    ``path``, ``path.gz``, then the ``.part*`` pieces of each.

    Raises:
        FileNotFoundError: none of those exist. ValueError: the bytes are not valid IDX.
    """
    path = Path(path)
    candidates = [path] if path.suffix == ".gz" else [path, path.with_name(path.name + ".gz")]
    for candidate in candidates:
        if candidate.exists() or any(candidate.parent.glob(candidate.name + ".part*")):
            return parse_idx(_read_bytes(candidate), str(candidate))
    raise FileNotFoundError(f"no IDX file at {path} (also tried .gz and .part* pieces)")


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file, atomically (:func:`exporters.atomic.atomic_path`)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=9, mtime=0))


def to_arrays(images: np.ndarray, labels: np.ndarray) -> MnistArrays:
    """uint8 ``[N, 28, 28]`` images and ``[N]`` labels to :class:`MnistArrays`."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return MnistArrays(x, torch.from_numpy(labels.astype(np.int64)))


def read_mnist_folder(folder: str | Path, split: str = "test") -> MnistArrays:
    """Read the ``'train'`` or ``'test'`` split from a folder of MNIST IDX files.

    Raises:
        ValueError: ``split`` is not 'train' or 'test'. FileNotFoundError: files missing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(folder)
    images = read_idx(folder / MNIST_FILES[f"{split}_images"])
    labels = read_idx(folder / MNIST_FILES[f"{split}_labels"])
    return to_arrays(images, labels)


def embedded_data_dir() -> Path:
    """Folder of the embedded default data inside the installed package."""
    return Path(str(resources.files("ann2snn.zoo") / "data"))


def load_embedded(split: str = "test") -> MnistArrays:
    """The embedded default MNIST data, shipped inside the package.

    Args:
        split: ``'test'`` (all 10,000 MNIST test images) or ``'calib'`` (a fixed subset of
            the training set, for calibration).

    Returns:
        :class:`MnistArrays` with images ``[N, 1, 28, 28]`` in [0, 1].
    """
    folder = embedded_data_dir()
    if split == "test":
        return read_mnist_folder(folder, "test")
    if split == "calib":
        return to_arrays(
            read_idx(folder / "calib-images-idx3-ubyte.gz"), read_idx(folder / "calib-labels-idx1-ubyte.gz")
        )
    raise ValueError(f"embedded split must be 'test' or 'calib', got {split!r}")
