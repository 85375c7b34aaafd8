"""Calibration and evaluation data for the command line: ``mnist`` (the embedded default), a
folder of MNIST IDX files, a ``.npz`` with ``x`` and ``y``, a ``.npy`` of inputs only, or an
image folder (a folder or ``.zip`` with one subfolder per class, :func:`read_image_folder`)."""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ann2snn.zoo import load_embedded, read_mnist_folder
from ann2snn.zoo.mnist import MNIST_FILES

#: Evaluation samples every command (and a job file without ``limit``) uses when none is given:
#: 1,000 gives an accuracy within about ±1 point (one standard error ≈ 0.3 points at 99 %) in
#: seconds on a CPU; 0 means all samples. The library's own functions default to all samples.
DEFAULT_LIMIT = 1000
LIMIT_HELP = f"Evaluation samples (default {DEFAULT_LIMIT}, as in every command; 0: all)."

KINDS = ("mnist", "idx", "npz", "npy", "images")
#: File name endings read as images by an image-folder source (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class DataSource:
    """Where the data comes from: ``kind`` in :data:`KINDS` and a path (None for ``mnist``)."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return "mnist" if self.path is None else str(self.path)

    @classmethod
    def parse(cls, text: str) -> DataSource:
        """``'mnist'``, an existing folder (MNIST IDX files, or an image folder: one subfolder per
        class), an existing ``.zip`` image folder, or an existing ``.npz`` / ``.npy`` file.

        Raises:
            ValueError: anything else, saying what was expected; an empty folder or a folder with
                neither IDX files nor class subfolders.
        """
        if text == "mnist":
            return cls("mnist")
        path = Path(text)
        if path.is_dir():
            if any(path.glob(MNIST_FILES["test_images"] + "*")):
                _check_idx_folder(path)
                return cls("idx", path)
            try:
                _image_layout(_listing(path))
            except ValueError as exc:
                raise ValueError(
                    f"folder {str(path)!r} has no MNIST IDX test files and is not an image folder: {exc}"
                ) from None
            return cls("images", path)
        if path.is_file() and path.suffix in (".npz", ".npy"):
            return cls(path.suffix[1:], path)
        if path.is_file() and path.suffix.lower() == ".zip":
            _image_layout(_listing(path))  # a bad zip or layout is refused here, naming the file
            return cls("images", path)
        if not path.exists():
            raise ValueError(f"{text!r} is not 'mnist' and no such file or folder exists")
        raise ValueError(
            f"{text!r}: expected 'mnist', a folder of IDX files, an image folder or .zip (one subfolder per class), "
            "a .npz (x, y) or a .npy (x)"
        )


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
        classes: the class names, index = label (an image folder's class folders), or None.
    """

    calib: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor | None
    note: str
    classes: list[str] | None = None

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
    elif source.kind == "images":
        data = _images(Path(str(source.path)), calib_size if calibrate else 0, limit)
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
    return DataSet(calib, _reshape(x, shape, "evaluation"), y, data.note, data.classes)


# ------------------------------------------------------------------------------- image folders

#: Folders of an image folder or zip that hold no data and are skipped (macOS's resource forks; any
#: folder or file whose name starts with a dot is skipped too).
JUNK_FOLDERS = ("__MACOSX",)
#: Folder names of an evaluation split beside ``train/``, in order of preference (ImageNet's is ``val``).
TEST_SPLITS = ("test", "val")
#: Pillow modes read as one grey-scale channel (``I`` and ``I;16*``: 16-bit, scaled by 65535).
GREY_MODES = ("1", "L", "LA", "La")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


@dataclass
class _Listing:
    """The files and folders of an image folder or zip (``/``-separated relative paths)."""

    where: str
    files: list[str]
    folders: set[str]
    read: Callable[[str], bytes]


def _skipped(name: str) -> bool:
    parts = name.split("/")
    return parts[0] in JUNK_FOLDERS or any(p.startswith(".") for p in parts)


def _listing(path: Path) -> _Listing:
    """List ``path`` (a folder or a zip), without junk (:data:`JUNK_FOLDERS`, dot names).

    Raises:
        ValueError: neither a folder nor a readable zip (naming the path).
    """
    where = str(path)
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                entries = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"cannot read {where} as a zip: {exc}") from None
        files = [e.filename for e in entries if not e.is_dir() and not _skipped(e.filename)]
        folders = {e.filename.rstrip("/") for e in entries if e.is_dir() and not _skipped(e.filename)}
        read: Callable[[str], bytes] = _ZipReader(path).read
    elif path.is_dir():
        files, folders = [], set()
        for p in path.rglob("*"):
            name = p.relative_to(path).as_posix()
            if _skipped(name):
                continue
            if p.is_file():
                files.append(name)
            elif p.is_dir():
                folders.add(name)

        def read(name: str) -> bytes:
            return (path / name).read_bytes()

    else:
        raise ValueError(f"{where}: no such image folder or zip")
    for f in files:  # a file's parent folders exist even where a zip lists no entry for them
        parts = f.split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return _Listing(where, sorted(files), folders, read)


class _ZipReader:
    """Reads members of one zip, opening it once (on first use) rather than per image."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None

    def read(self, name: str) -> bytes:
        if self.archive is None:
            self.archive = zipfile.ZipFile(self.path)
        return self.archive.read(name)

    def __del__(self) -> None:
        if self.archive is not None:
            self.archive.close()


@dataclass
class _Layout:
    """An image folder's splits (``{"": images}``, or ``{"train": ..., "test": ...}``, each a sorted
    list of full names) and its class names (the label order)."""

    splits: dict[str, list[str]]
    classes: list[str]


def _subfolders(folders: set[str], parent: str) -> list[str]:
    """The names of the folders directly inside ``parent`` (``""``: the top level)."""
    depth = parent.count("/") + 1 if parent else 0
    prefix = parent + "/" if parent else ""
    return sorted({f[len(prefix) :] for f in folders if f.startswith(prefix) and f.count("/") == depth})


def _image_layout(listing: _Listing) -> _Layout:
    """The layout of an image folder: ``<class>/<image>``, or ``train/<class>/<image>`` beside
    ``test/`` (or ``val/``) ``<class>/<image>`` (torchvision's ``ImageFolder``, once per split),
    possibly inside one enclosing folder (a zip of a folder). The classes are the class folders'
    names, sorted, over all splits: a label means the same class in every split.

    Raises:
        ValueError: no files at all; no images inside class folders (saying where the images
            are); a class folder without any image (its label would be missing, shifting the
            others), naming it.
    """
    where = listing.where
    if not listing.files:
        raise ValueError(f"{where} is empty: expected one subfolder per class holding its images (class/image.png)")
    images = [n for n in listing.files if n.lower().endswith(IMAGE_SUFFIXES)]
    root = ""
    for _ in range(3):  # <class>/<image> or <split>/<class>/<image>, inside at most 2 enclosing folders
        layout = _layout_at(listing, images, root)
        if layout is not None:
            return layout
        inside = {n[len(root) :].split("/")[0] for n in listing.files if n.startswith(root)}
        enclosing = inside.pop() if len(inside) == 1 else None
        if enclosing is None or root + enclosing not in listing.folders:
            break
        root += enclosing + "/"
    if not images:
        found = f"{len(listing.files)} files but no images ({', '.join(IMAGE_SUFFIXES)})"
    else:
        depths = sorted({n.count("/") for n in images})
        at = "at its top level" if depths == [0] else f"{', '.join(str(d) for d in depths)} folder(s) deep"
        found = f"{len(images)} images {at}, e.g. {images[0]}"
    raise ValueError(
        f"{where} has no class subfolders with images ({found}): expected one subfolder per class, "
        f"e.g. cat/0001.png and dog/0001.png, or train/<class>/... beside test/<class>/... (or val/)"
    )


def _layout_at(listing: _Listing, images: list[str], root: str) -> _Layout | None:
    """The layout starting in folder ``root`` (``""`` or ending in ``/``), or None if there is none."""
    rel = {n: n[len(root) :] for n in images if n.startswith(root)}
    base = root.rstrip("/")
    test = next(
        (s for s in TEST_SPLITS if any(r.startswith(s + "/") and r.count("/") == 2 for r in rel.values())), None
    )
    if test is not None:
        folders = {"train": "train", "test": test}  # split -> its folder
        splits = {
            key: names
            for key, folder in folders.items()
            if (names := [n for n, r in rel.items() if r.startswith(folder + "/") and r.count("/") == 2])
        }
        parents = [(f"{base}/{folders[k]}" if base else folders[k]) for k in splits]
    else:
        nested = [n for n, r in rel.items() if r.count("/") == 1]
        if not nested:
            return None
        splits, parents = {"": nested}, [base]
    classes = sorted({c for p in parents for c in _subfolders(listing.folders, p)})
    labelled = {n.split("/")[-2] for names in splits.values() for n in names}
    for c in classes:
        if c not in labelled:
            holder = next(p for p in parents if c in _subfolders(listing.folders, p))
            raise ValueError(
                f"{listing.where}: the class folder {holder + '/' if holder else ''}{c} has no images: every class "
                "folder needs one (its label would be missing and shift the labels after it); remove it or add images"
            )
    return _Layout(splits, classes)


def _pixels(im, where: str, name: str) -> np.ndarray:
    """One decoded image as ``[H, W, C]`` float32 in [0, 1]: C = 1 for grey-scale modes (8-bit /255,
    16-bit /65535), else 3 (RGB)."""
    if im.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(im).astype(np.int64)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(f"{where}/{name}: a {im.mode} image with values outside 0..65535 (expected 16-bit grey)")
        return (array.astype(np.float32) / np.float32(65535.0))[:, :, None]
    if im.mode == "F":
        raise ValueError(f"{where}/{name} is a 32-bit float image: save it with 8 or 16 bits per channel")
    array = np.asarray(im.convert("L" if im.mode in GREY_MODES else "RGB"))
    if array.ndim == 2:
        array = array[:, :, None]
    return array.astype(np.float32) / np.float32(255.0)


def _decode(read: Callable[[str], bytes], names: list[str], where: str) -> torch.Tensor:
    """Decode ``names`` with Pillow into ``[N, C, H, W]`` float pixels in [0, 1]: C = 1 when every
    image is grey-scale, else 3 (RGB; grey images among colour ones repeated over the 3 channels,
    as Pillow's ``convert("RGB")`` does)."""
    from PIL import Image

    arrays: list[np.ndarray] = []
    first = ""
    for name in names:
        try:
            with Image.open(io.BytesIO(read(name))) as im:
                im.load()
                array = _pixels(im, where, name)
        except ValueError:
            raise
        except Exception as exc:  # Pillow raises several types (UnidentifiedImageError, OSError, ...)
            message = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the file", str(exc))
            raise ValueError(f"cannot read the image {where}/{name}: {type(exc).__name__}: {message}") from None
        if arrays and array.shape[:2] != arrays[0].shape[:2]:
            raise ValueError(
                f"{where}/{name} is {_size(array)} but {where}/{first} is {_size(arrays[0])}: all images of a "
                "data source must have one size (resize them first)"
            )
        first = first or name
        arrays.append(array)
    if any(a.shape[2] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _size(array: np.ndarray) -> str:
    h, w = array.shape[:2]
    return f"{w}x{h}"


def _labelled(names: list[str], classes: list[str]) -> torch.Tensor:
    return torch.tensor([classes.index(n.split("/")[-2]) for n in names], dtype=torch.int64)


def read_image_folder(
    path: str | Path, split: str | None = None, limit: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read an image folder: a folder or ``.zip`` with one subfolder per class (torchvision's
    ``ImageFolder`` layout), optionally once per split (``train/<class>/...`` beside
    ``test/<class>/...`` or ``val/<class>/...``, as in ``cifar10-jpeg.zip``), possibly inside one
    enclosing folder (a zip made of a folder). ``__MACOSX`` and names starting with a dot are skipped.

    Images are read in sorted path order (so by class, then by file name), decoded with Pillow
    and returned as ``(images, labels, classes)``: float ``[N, C, H, W]`` pixels in [0, 1]
    (C = 1 when every image is grey-scale, 8-bit ones divided by 255 and 16-bit ones by 65535;
    else C = 3, RGB, grey images repeated over the channels), int64 ``[N]`` labels (the index of
    the image's class folder in ``classes``) and the sorted class folder names of all splits (so a
    label is the same class in ``train`` and ``test``, even if a class is missing from one).

    Args:
        split: ``"train"`` or ``"test"`` (``test`` also names a ``val/`` split) for a folder with
            splits; None for a plain class folder (for a split folder, None means ``"test"``).
        limit: read only ``limit`` images spread evenly over the split, in sorted order (0: all);
            the split is sorted by class, so its first images would be of one class only.

    Raises:
        ValueError: an empty folder, no class subfolders (saying where the images are), a class
            folder without images (naming it), an image Pillow cannot read or a 32-bit float image
            (naming the file), images of different sizes (naming two of them), an unknown split,
            a file that is not a zip.
    """
    listing = _listing(Path(path))
    return _read_split(listing, _image_layout(listing), split, limit)


def _read_split(listing: _Listing, layout: _Layout, split: str | None, limit: int):
    where = listing.where
    key = "" if "" in layout.splits else (split or "test")
    if split is not None and key != split:
        raise ValueError(f"{where} has no {split!r} split (it has one class folder per class, no train/ and test/)")
    if key not in layout.splits:
        raise ValueError(f"{where} has no {key!r} split (it has {', '.join(sorted(layout.splits))})")
    chosen = layout.splits[key]
    picked = [chosen[i] for i in _spread(len(chosen), limit)] if limit else chosen
    return _decode(listing.read, picked, where), _labelled(picked, layout.classes), layout.classes


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return [int(i * n / k) for i in range(k)]


def _images(path: Path, calib_size: int, limit: int) -> DataSet:
    """An image folder: evaluation on ``limit`` images spread over the ``test`` split (or the only
    one; all with 0); calibration on
    ``calib_size`` images of the ``train`` split spread evenly over it (so over every class), or,
    without a train split, the first evaluation images."""
    listing = _listing(path)
    layout = _image_layout(listing)
    x, y, classes = _read_split(listing, layout, None, limit)
    if "train" not in layout.splits or not calib_size:
        return DataSet(x, x, y, f"the first images of {path} (no train/ split)", classes)
    train = layout.splits["train"]
    chosen = [train[i] for i in _spread(len(train), calib_size)]
    calib = _decode(listing.read, chosen, str(path))
    note = f"{len(chosen)} images spread over the train/ split of {path} ({len(classes)} classes)"
    return DataSet(calib, x, y, note, classes)
