"""The image-folder data source (folder or zip, one subfolder per class) and its refusals."""

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ann2snn.data import DataSource, load_data, read_image_folder


def _png(path, value, size=(4, 3), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    array = np.full((size[1], size[0], channels), value, dtype=np.uint8).squeeze(-1 if channels == 1 else None)
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def folder(tmp_path):
    """dog/ (2 images) and cat/ (1 image): sorted classes cat=0, dog=1; pixel value marks the file."""
    root = tmp_path / "imgs"
    _png(root / "dog" / "b.png", 30)
    _png(root / "dog" / "a.png", 20)
    _png(root / "cat" / "z.png", 10)
    return root


def _zip(folder, path, prefix=""):
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(folder.rglob("*.png")):
            z.write(f, prefix + f.relative_to(folder).as_posix())
    return path


def _expected_pixels(values):
    return torch.tensor(values, dtype=torch.float32).div(255).view(-1, 1, 1, 1).expand(-1, 3, 3, 4)


def test_folder_and_zip_give_sorted_classes_labels_and_pixels(folder, tmp_path):
    for source in (folder, _zip(folder, tmp_path / "imgs.zip")):
        x, y, classes = read_image_folder(source)
        assert classes == ["cat", "dog"]
        assert y.tolist() == [0, 1, 1]
        assert x.shape == (3, 3, 3, 4) and x.dtype == torch.float32
        assert torch.equal(x, _expected_pixels([10, 20, 30]))  # cat/z, dog/a, dog/b


def test_split_zip_calibrates_on_train_and_evaluates_on_test(folder, tmp_path):
    path = tmp_path / "split.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(folder.rglob("*.png")):
            z.write(f, "train/" + f.relative_to(folder).as_posix())
            z.write(f, "test/" + f.relative_to(folder).as_posix())
    source = DataSource.parse(str(path))
    assert source.kind == "images"
    data = load_data(source, calib_size=2, limit=2)
    assert data.y.tolist() == [0, 1] and data.x.shape == (2, 3, 3, 4)
    assert torch.equal(data.calib, _expected_pixels([10, 20]))  # spread over train: index 0 and 1 of 3
    assert "train/ split" in data.note


def test_folder_source_from_the_parser_needs_no_input_shape(folder):
    with pytest.warns(UserWarning, match="no separate calibration samples"):
        data = load_data(DataSource.parse(str(folder)), calib_size=3)
    assert data.x.shape == (3, 3, 3, 4) and data.y.tolist() == [0, 1, 1]


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty\b.*is empty: expected one subfolder per class"):
        DataSource.parse(str(tmp_path / "empty"))


def test_folder_without_class_subfolders_is_refused(tmp_path):
    _png(tmp_path / "flat" / "a.png", 1)
    with pytest.raises(ValueError, match=r"flat has no class subfolders with images \(1 images at its top level\)"):
        DataSource.parse(str(tmp_path / "flat"))


def test_unreadable_image_is_named(folder):
    (folder / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read the image .*imgs/cat/broken\.png: UnidentifiedImageError"):
        read_image_folder(folder)


def test_mixed_image_sizes_are_refused_naming_both_files(folder):
    _png(folder / "dog" / "c.png", 40, size=(5, 3))
    with pytest.raises(ValueError, match=r"dog/c\.png is 5x3 with 3 channels but .*cat/z\.png is 4x3 with 3 channels"):
        read_image_folder(folder)


def test_a_limit_spreads_the_evaluation_images_over_every_class(tmp_path):
    root = tmp_path / "many"
    for c, name in enumerate(("cat", "dog", "eel")):
        for i in range(4):
            _png(root / name / f"{i}.png", 10 * c + i)
    x, y, classes = read_image_folder(root, limit=3)
    assert classes == ["cat", "dog", "eel"] and y.tolist() == [0, 1, 2]  # indices 0, 4, 8 of 12
    assert torch.equal(x, _expected_pixels([0, 10, 20]))
    spread = load_data(DataSource.parse(str(_zip(root, tmp_path / "many.zip"))), calib_size=0, limit=6)
    assert spread.y.tolist() == [0, 0, 1, 1, 2, 2]
