"""The residual example: the shipped MNIST ResNet converts, simulates and reloads from NIR exactly."""

import sys

import nir
import pytest
import torch

from ann2snn.zoo import load_embedded, load_mnist_resnet
from converter import Converter
from exporters import compare_spike_counts, export_nir, import_nir
from simulator import Scale, accuracy_per_t


@pytest.fixture(scope="module")
def converted():
    ann = load_mnist_resnet()
    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").loader(500), v_init=0.5)(ann)
    return ann, snn, load_embedded("test").subset(500)


def test_shipped_resnet_ann_and_snn_accuracy(converted):
    ann, snn, test = converted
    with torch.no_grad():
        ann_acc = 100.0 * (ann(test.images).argmax(1) == test.labels).float().mean().item()
    snn_acc = accuracy_per_t(snn, test.loader(250), 64)
    assert ann_acc >= 97.0
    assert snn_acc[63].item() >= ann_acc - 2.0, f"SNN {snn_acc[63]:.2f} % vs ANN {ann_acc:.2f} % at T=64"
    assert snn_acc[63] > snn_acc[7]


def test_shipped_resnet_has_identity_skip_scale_nodes_and_reloads_exactly(converted, tmp_path):
    _, snn, test = converted
    scales = [m for m in snn.modules() if isinstance(m, Scale)]
    assert len(scales) == 2  # block1 and block3 have identity skips; block2's projection is folded
    path = export_nir(snn, tmp_path / "resnet.nir", T=32)
    graph = nir.read(path, type_check=True)
    assert sum(isinstance(n, nir.Scale) for n in graph.nodes.values()) == 2
    report = compare_spike_counts(snn, import_nir(path), test.images[:50], 32)
    assert report.equal and report.layers == 7  # eight ReLUs: seven IF layers and the membrane readout


def test_example_script_runs(monkeypatch, tmp_path, capsys):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "examples"))
    try:
        import mnist_resnet
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(
        sys,
        "argv",
        ["mnist_resnet.py", "--limit", "100", "--T", "4", "8", "--check-samples", "10", "--out", str(tmp_path)],
    )
    mnist_resnet.main()
    out = capsys.readouterr().out
    assert "| SNN |" in out and "identical spike counts on 10 images, 7 IF layers: True" in out
    assert (tmp_path / "mnist_resnet.nir").is_file()
