"""The shipped seed CNN on real MNIST, and the IDX reader on the real files."""

import gzip

import numpy as np
import pytest
import torch

from ann2snn.zoo import load_embedded, load_mnist_cnn, read_idx, read_mnist_folder
from ann2snn.zoo.mnist import parse_idx, write_idx
from converter import Converter
from simulator import accuracy_per_t


@pytest.fixture(scope="module")
def shipped():
    return load_mnist_cnn(), load_embedded("test").subset(1000), load_embedded("calib")


def test_shipped_cnn_and_9999_snn_on_1000_test_images(shipped):
    ann, test, calib = shipped
    with torch.no_grad():
        ann_acc = 100.0 * (ann(test.images).argmax(1) == test.labels).float().mean().item()
    snn = Converter(mode="99.9%", dataloader=calib.loader(500))(ann)
    snn_acc = accuracy_per_t(snn, test.loader(200), 50)[-1].item()
    assert ann_acc >= 98.0
    assert snn_acc >= ann_acc - 1.5, f"SNN {snn_acc:.2f} % vs ANN {ann_acc:.2f} % at T=50"


def test_shipped_cnn_has_no_dead_output_unit(shipped):
    ann, _, calib = shipped
    with torch.no_grad():
        out = ann(calib.images[:2000])
    assert (out.max(0).values > 0).all()


def test_embedded_test_set_equals_real_mnist(shared_mnist):
    real = read_mnist_folder(shared_mnist, "test")
    embedded = load_embedded("test")
    assert len(embedded) == 10_000
    assert torch.equal(real.images, embedded.images) and torch.equal(real.labels, embedded.labels)


def test_split_part_files_are_joined(shared_mnist):
    train = read_mnist_folder(shared_mnist, "train")
    assert train.images.shape == (60_000, 1, 28, 28) and train.labels.shape == (60_000,)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_idx_round_trip_and_errors(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    with pytest.raises(ValueError, match="header says 24 payload bytes, file has 23"):
        parse_idx(raw[:-1], "cut")
    with pytest.raises(ValueError, match="not an IDX file: junk"):
        parse_idx(b"\x01\x02\x03", "junk")
    with pytest.raises(FileNotFoundError, match="nothing"):
        read_idx(tmp_path / "nothing")
