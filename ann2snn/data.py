"""Calibration and evaluation data for the command line: ``mnist`` (the embedded default), a
folder of MNIST IDX files, a ``.npz`` with ``x`` and ``y``, or a ``.npy`` of inputs only."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ann2snn.zoo import load_embedded, read_mnist_folder
from ann2snn.zoo.mnist import MNIST_FILES

KINDS = ("mnist", "idx", "npz", "npy")


@dataclass(frozen=True)
class DataSource:
    """Where the data comes from: ``kind`` in :data:`KINDS` and a path (None for ``mnist``)."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return "mnist" if self.path is None else str(self.path)

    @classmethod
    def parse(cls, text: str) -> DataSource:
        """``'mnist'``, an existing folder (IDX files), or an existing ``.npz`` / ``.npy`` file.

        Raises:
            ValueError: anything else, saying what was expected.
        """
        if text == "mnist":
            return cls("mnist")
        path = Path(text)
        if path.is_dir():
            _check_idx_folder(path)
            return cls("idx", path)
        if path.is_file() and path.suffix in (".npz", ".npy"):
            return cls(path.suffix[1:], path)
        if not path.exists():
            raise ValueError(f"{text!r} is not 'mnist' and no such file or folder exists")
        raise ValueError(f"{text!r}: expected 'mnist', a folder of IDX files, a .npz (x, y) or a .npy (x)")


def _check_idx_folder(folder: Path) -> None:
    """Raise ValueError unless ``folder`` holds MNIST's test IDX files (plain, .gz or .part*)."""
    missing = [
        name for name in (MNIST_FILES["test_images"], MNIST_FILES["test_labels"]) if not any(folder.glob(name + "*"))
    ]
    if missing:
        raise ValueError(f"folder {str(folder)!r} has no MNIST IDX test files ({', '.join(missing)}[.gz])")


@dataclass(frozen=True)
class DataSet:
    """Inputs for calibration and evaluation.

    Attributes:
        calib: ``[N_c, ...]`` calibration inputs.
        x: ``[N, ...]`` evaluation inputs.
        y: ``[N]`` integer labels, or None (no accuracy can be computed).
        note: where the calibration inputs came from.
    """

    calib: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor | None
    note: str

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(x, y)`` evaluation batches in order (``y`` None without labels)."""
        for start in range(0, len(self.x), batch_size):
            end = start + batch_size
            yield self.x[start:end], None if self.y is None else self.y[start:end]

    def calib_loader(self, batch_size: int = 500) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.calib), batch_size=batch_size)


def load_data(
    source: DataSource,
    calib_size: int,
    limit: int = 0,
    input_shape: tuple[int, ...] | None = None,
    calibrate: bool = True,
) -> DataSet:
    """Read ``source``: the first ``limit`` evaluation samples (0: all) and ``calib_size``
    calibration samples (the embedded calibration subset for ``mnist``, the training split of
    an IDX folder when it has one, else the first samples of the evaluation inputs, or the
    array ``calib`` of a ``.npz`` when present).

    ``input_shape`` (without the batch axis) reshapes every sample, e.g. flat ``[N, 784]``
    arrays to ``(1, 28, 28)``. Integer arrays are divided by 255 (8-bit pixels); float arrays are
    used as they are. With ``calibrate=False`` (simulation of a converted file) no calibration
    samples are read or checked.

    Warns (``UserWarning``): calibration falls back to the first evaluation samples (no
    training split or ``calib`` array), or ``calib_size`` exceeds the calibration samples there
    are (all of them are used).

    Raises:
        ValueError: missing arrays, mismatched lengths, non-integer labels, or an
            ``input_shape`` whose size does not match the samples'.
        FileNotFoundError: an IDX folder without the test files.
    """
    if source.kind == "mnist":
        test, calib = load_embedded("test"), load_embedded("calib")
        data = DataSet(calib.images, test.images, test.labels, "the embedded calibration subset of MNIST train")
    elif source.kind == "idx":
        data = _idx(Path(str(source.path)), calibrate)
    else:
        data = _numpy(source)
    if calibrate and data.calib is data.x:
        warnings.warn(
            f"calibrating on {data.note}: the data has no separate calibration samples, so the accuracy is "
            "measured on samples the conversion has seen",
            UserWarning,
            stacklevel=2,
        )
    if calibrate and calib_size > len(data.calib):
        warnings.warn(
            f"calib_size {calib_size} is more than the {len(data.calib)} calibration samples of {source}: "
            f"using all {len(data.calib)}",
            UserWarning,
            stacklevel=2,
        )
    return _trim(data, calib_size if calibrate else 0, limit, input_shape)


def _idx(folder: Path, calibrate: bool = True) -> DataSet:
    test = read_mnist_folder(folder, "test")
    train_files = [MNIST_FILES["train_images"], MNIST_FILES["train_labels"]]
    if calibrate and all(any(folder.glob(name + "*")) for name in train_files):
        return DataSet(
            read_mnist_folder(folder, "train").images, test.images, test.labels, f"the training split of {folder}"
        )
    return DataSet(test.images, test.images, test.labels, f"the first test images of {folder} (no training split)")


def _numpy(source: DataSource) -> DataSet:
    path = Path(str(source.path))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if source.kind == "npy":
        x = _inputs(loaded, f"{path}")
        return DataSet(x, x, None, f"the first inputs of {path}")
    with loaded:
        if "x" not in loaded.files:
            raise ValueError(f"{path} has no array 'x' (it has {', '.join(loaded.files) or 'none'})")
        x = _inputs(loaded["x"], f"{path}['x']")
        y = _labels(loaded["y"], len(x), f"{path}['y']") if "y" in loaded.files else None
        if "calib" in loaded.files:
            return DataSet(_inputs(loaded["calib"], f"{path}['calib']"), x, y, f"{path}['calib']")
    return DataSet(x, x, y, f"the first inputs of {path}['x']")


def _inputs(array: np.ndarray, name: str) -> torch.Tensor:
    if array.ndim < 2:
        raise ValueError(f"{name} has shape {array.shape}: expected (N, ...) samples")
    if np.issubdtype(array.dtype, np.integer):
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} has dtype {array.dtype}: expected numbers")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _labels(array: np.ndarray, n: int, name: str) -> torch.Tensor:
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"{name} has shape {array.shape}: expected ({n},) labels, one per sample of x")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} has dtype {array.dtype}: expected integer class labels")
    return torch.from_numpy(array.astype(np.int64))


def _reshape(x: torch.Tensor, shape: tuple[int, ...] | None, what: str) -> torch.Tensor:
    if shape is None:
        return x
    if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
        raise ValueError(
            f"the {what} samples have shape {tuple(x.shape[1:])} ({int(np.prod(x.shape[1:]))} values), which cannot "
            f"be reshaped to {shape} ({int(np.prod(shape))} values): is this the right data for this model or file?"
        )
    return x.reshape(len(x), *shape)


def _trim(data: DataSet, calib_size: int, limit: int, shape: tuple[int, ...] | None) -> DataSet:
    """The first ``limit`` evaluation samples (0: all) and ``calib_size`` calibration samples
    (0: none are needed), reshaped to ``shape``."""
    x, y = (data.x, data.y) if not limit else (data.x[:limit], None if data.y is None else data.y[:limit])
    calib = data.calib[:calib_size]
    if len(x) == 0 or (calib_size and len(calib) == 0):
        raise ValueError("no samples to calibrate on or to evaluate")
    calib = _reshape(calib, shape, "calibration") if calib_size else calib
    return DataSet(calib, _reshape(x, shape, "evaluation"), y, data.note)
