"""The CIFAR-10 example models and data reader (examples/cifar10.py): shapes, parameter counts,
structure the converter relies on, the zip reader on a tiny zip, the batch augmentation."""

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
try:
    import cifar10
finally:
    sys.path.pop(0)


@pytest.mark.parametrize(("factory", "params"), [(cifar10.resnet20, 272_474), (cifar10.vgg, 307_946)])
def test_model_forward_shape_and_parameter_count(factory, params):
    model = factory().eval()
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.no_grad():
        out = model(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("factory", [cifar10.resnet20, cifar10.vgg])
def test_model_has_no_maxpool_dropout_or_shared_relu(factory):
    model = factory()
    kinds = {type(m) for m in model.modules()}
    assert nn.MaxPool2d not in kinds and nn.Dropout not in kinds
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not r.inplace for r in relus)
    assert len({id(r) for r in relus}) == len(
        [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.ReLU)]
    )


def test_resnet20_projection_shortcuts():
    model = cifar10.resnet20()
    blocks = [m for m in model.modules() if isinstance(m, cifar10.BasicBlock)]
    assert len(blocks) == 9
    projections = [b.shortcut for b in blocks if b.shortcut is not None]
    assert len(projections) == 2  # first block of stages 2 and 3
    for p in projections:
        assert isinstance(p[0], nn.Conv2d) and p[0].kernel_size == (1, 1) and p[0].stride == (2, 2)
        assert isinstance(p[1], nn.BatchNorm2d)


def _tiny_zip(path: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    with zipfile.ZipFile(path, "w") as z:
        for split, cls, i in [
            ("train", "truck", 0),
            ("train", "airplane", 1),
            ("train", "airplane", 0),
            ("test", "cat", 0),
        ]:
            img = np.full((32, 32, 3), rng.integers(0, 256, 3), dtype=np.uint8)  # flat colour: JPEG keeps it closely
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            name = f"{split}/{cls}/{i:04d}.jpg"
            z.writestr(name, buf.getvalue())
            written[name] = img
    return written


def test_zip_reader_sorted_order_labels_and_pixels(tmp_path):
    written = _tiny_zip(tmp_path / "tiny.zip")
    images, labels = cifar10.read_cifar10_zip(tmp_path / "tiny.zip", "train")
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 9]  # airplane/0000, airplane/0001, truck/0000
    order = ["train/airplane/0000.jpg", "train/airplane/0001.jpg", "train/truck/0000.jpg"]
    for got, name in zip(images, order, strict=True):
        expected = torch.from_numpy(written[name]).permute(2, 0, 1).int()
        assert (got.int() - expected).abs().max() <= 3
    test_images, test_labels = cifar10.read_cifar10_zip(tmp_path / "tiny.zip", "test")
    assert test_images.shape == (1, 3, 32, 32) and test_labels.tolist() == [3]


def test_load_cifar10_writes_and_reuses_cache(tmp_path):
    _tiny_zip(tmp_path / "tiny.zip")
    cache = tmp_path / "cache.pt"
    first = cifar10.load_cifar10(tmp_path / "tiny.zip", cache)
    assert cache.is_file()
    second = cifar10.load_cifar10(tmp_path / "tiny.zip", cache)
    for split in ("train", "test"):
        assert torch.equal(first[split][0], second[split][0]) and torch.equal(first[split][1], second[split][1])


def test_augment_is_a_padded_crop_or_its_mirror():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).reshape(2, 3, 32, 32) % 251 + 1
    out = cifar10.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    for n in range(2):
        crops = [
            padded[n, :, dy : dy + 32, dx : dx + 32].flip(-1) if f else padded[n, :, dy : dy + 32, dx : dx + 32]
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
        ]
        assert any(torch.equal(out[n], c) for c in crops)


CIFAR_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"


@pytest.mark.parametrize(("loader", "cls"), [("load_cifar10_resnet20", "ResNet20"), ("load_cifar10_vgg", "VGG")])
def test_shipped_weights_load_in_eval_mode_and_are_the_examples_models(loader, cls):
    from ann2snn.zoo import cifar10 as zoo

    model = getattr(zoo, loader)()
    assert type(model).__name__ == cls and not model.training
    assert cifar10.ResNet20 is zoo.ResNet20 and cifar10.MODELS is zoo.MODELS
    fresh = zoo.MODELS[cls.lower()]()
    assert fresh.state_dict().keys() == model.state_dict().keys()


@pytest.mark.skipif(not CIFAR_ZIP.exists(), reason=f"no CIFAR-10 zip at {CIFAR_ZIP}")
def test_shipped_weights_classify_cifar10():
    from ann2snn.zoo.cifar10 import load_cifar10_resnet20, load_cifar10_vgg

    x, y = cifar10.read_cifar10_zip(CIFAR_ZIP, "test")
    pick = torch.arange(0, len(x), 20)  # 500 images, 50 per class (the split is sorted by class)
    x, y = x[pick].float() / 255, y[pick]
    with torch.no_grad():
        nets = [(load_cifar10_resnet20(), 87.13), (load_cifar10_vgg(), 87.77)]
        nets += [(load_cifar10_resnet20(qcfs=True), 84.51), (load_cifar10_vgg(qcfs=True), 86.70)]
        for model, measured in nets:
            accuracy = 100.0 * float((model(x).argmax(1) == y).double().mean())
            assert abs(accuracy - measured) < 4, (type(model).__name__, accuracy)  # 500 of 10,000 images


@pytest.mark.parametrize(("loader", "relus"), [("load_cifar10_resnet20", 19), ("load_cifar10_vgg", 6)])
def test_shipped_qcfs_fine_tunes_have_a_qcfs_layer_of_4_levels_per_relu(loader, relus):
    from ann2snn.zoo import cifar10 as zoo
    from converter.qcfs import QCFS

    model = getattr(zoo, loader)(qcfs=True)
    layers = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(layers) == relus and {int(m.levels) for m in layers} == {4} and not model.training
    assert all(0 < float(m.threshold) < 20 for m in layers)  # trained λ, in the activations' units
    plain = getattr(zoo, loader)()
    assert not any(isinstance(m, QCFS) for m in plain.modules())
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), plain(x))  # other weights, not the plain ones relabelled
