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
    with pytest.raises(ValueError, match=r"flat has no class subfolders with images \(1 images at its top level, e\.g"):
        DataSource.parse(str(tmp_path / "flat"))


def test_unreadable_image_is_named(folder):
    (folder / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read the image .*imgs/cat/broken\.png: UnidentifiedImageError") as e:
        read_image_folder(folder)
    assert "BytesIO" not in str(e.value)


def test_mixed_image_sizes_are_refused_naming_both_files(folder):
    _png(folder / "dog" / "c.png", 40, size=(5, 3))
    with pytest.raises(ValueError, match=r"dog/c\.png is 5x3 but .*cat/z\.png is 4x3: all images of a data source"):
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


def test_an_empty_class_folder_is_refused_naming_it_in_a_folder_and_a_zip(folder, tmp_path):
    (folder / "bird").mkdir()  # sorted: bird, cat, dog: without it cat would silently become 0
    with pytest.raises(ValueError, match=r"the class folder bird has no images: every class folder needs one"):
        read_image_folder(folder)
    path = _zip(folder, tmp_path / "empty_class.zip")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("bird/", "")  # a folder entry, no files
    with pytest.raises(ValueError, match=r"class folder bird has no images"):
        DataSource.parse(str(path))


def test_labels_follow_the_classes_of_every_split(folder, tmp_path):
    root = tmp_path / "split"
    for name, value in (("cat", 10), ("dog", 20), ("eel", 30)):
        _png(root / "train" / name / "0.png", value)
    _png(root / "test" / "cat" / "0.png", 11)
    _png(root / "test" / "eel" / "0.png", 31)  # no test/dog: eel is still label 2, as in train/
    x, y, classes = read_image_folder(root, split="test")
    assert classes == ["cat", "dog", "eel"] and y.tolist() == [0, 2]
    assert torch.equal(x, _expected_pixels([11, 31]))
    assert read_image_folder(root, split="train")[1].tolist() == [0, 1, 2]


def test_a_zip_of_a_folder_with_val_split_and_macos_junk_is_read(folder, tmp_path):
    path = tmp_path / "rooted.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(folder.rglob("*.png")):
            rel = f.relative_to(folder).as_posix()
            z.write(f, "data/train/" + rel)
            z.write(f, "data/val/" + rel)
            z.writestr("__MACOSX/data/val/._" + rel.replace("/", "_"), b"junk")
        z.writestr("data/.DS_Store", b"junk")
    x, y, classes = read_image_folder(path)  # val/ is the evaluation split
    assert classes == ["cat", "dog"] and y.tolist() == [0, 1, 1]
    assert torch.equal(x, _expected_pixels([10, 20, 30]))
    data = load_data(DataSource.parse(str(path)), calib_size=3, limit=0)
    assert data.y.tolist() == [0, 1, 1] and "train/ split" in data.note


def test_images_too_deep_are_reported_with_their_depth(folder, tmp_path):
    _png(tmp_path / "deep" / "a" / "b" / "c" / "x.png", 1)
    _png(tmp_path / "deep" / "q" / "r" / "s" / "y.png", 1)  # two top folders: no enclosing one to step into
    with pytest.raises(ValueError, match=r"with images \(2 images 3 folder\(s\) deep, e.g. a/b/c/x\.png\)"):
        read_image_folder(tmp_path / "deep")


def test_16_bit_grey_pngs_are_scaled_by_65535_and_grey_among_colour_becomes_rgb(tmp_path):
    root = tmp_path / "depth"
    root.joinpath("a").mkdir(parents=True)
    values = np.array([[0, 257, 65535, 40000]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    image.save(root / "a" / "x.png")
    x, _, _ = read_image_folder(root)
    assert x.shape == (1, 1, 1, 4)
    assert torch.equal(x.flatten(), torch.tensor([0, 257, 65535, 40000], dtype=torch.float32) / 65535)
    mixed = tmp_path / "mixed"
    _png(mixed / "a" / "grey.png", 50, mode="L")
    _png(mixed / "b" / "rgb.png", 70)
    x, y, _ = read_image_folder(mixed)
    assert x.shape == (2, 3, 3, 4) and torch.equal(x, _expected_pixels([50, 70]))


def test_a_file_that_is_not_a_zip_is_refused_naming_it(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.zip as a zip"):
        DataSource.parse(str(bad))
