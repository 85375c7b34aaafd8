"""Calibration through residual joins and on the truncated network (issue 14)."""

import pytest
import torch

from converter import Converter, layer_fidelity
from converter.calibrate import _up_to
from examples.cifar10 import ResNet20
from simulator import simulate
from tests.nets import randomize_bn

X = torch.rand(48, 3, 16, 16, generator=torch.Generator().manual_seed(21))
JOINS = [f"if_layer{s}_{b}_relu2" for s in (1, 2, 3) for b in (0, 1)]  # IF(branch + shortcut)


@pytest.fixture(scope="module")
def ann():
    torch.manual_seed(22)
    return randomize_bn(ResNet20(widths=(4, 6, 8), blocks=2))


def _convert(ann, **options):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X), batch_size=16)
    return Converter(mode="max", dataloader=loader, calibration_samples=len(X), **options)(ann)


def test_bias_calibration_reaches_the_residual_joins_and_centres_their_rates(ann):
    plain, calibrated = _convert(ann), _convert(ann, calibrate_T=4)
    done = calibrated.meta["ann2snn"]["bias_calibrated_layers"]
    assert set(JOINS) <= set(done) and len(done) == 13  # every IF layer (6 joins were skipped before)

    def mean_error(snn):  # |mean rate - mean activation| at the joins, in units of λ, T = 4
        report = {f.layer: f for f in layer_fidelity(ann, snn, X, T=4).layers}
        return sum(abs(report[j].mean_rate - min(report[j].mean_activation, 1.0)) for j in JOINS) / len(JOINS)

    assert mean_error(calibrated) < 0.5 * mean_error(plain)  # measured: 0.0039 vs 0.027


def test_weight_calibration_fits_the_branch_of_each_join(ann):
    snn = _convert(ann, calibrate_T=4, calibrate_weights=True, calibration_iterations=5)
    assert set(JOINS) <= set(snn.meta["ann2snn"]["weight_calibrated_layers"])


def test_the_truncated_network_gives_the_layers_spikes_of_the_whole_one(ann):
    snn = _convert(ann)
    node = next(n for n in snn.graph.nodes if n.target == "if_layer2_0_relu2")
    part = _up_to(snn, node)
    assert "if_layer3_0_relu1" not in dict(part.named_modules())  # layers after it are not run
    whole, cut = simulate(snn, X[:8], 6), simulate(part, X[:8], 6)
    assert torch.equal(whole.spike_counts["if_layer2_0_relu2"], cut.spike_counts["if_layer2_0_relu2"])
    before = ("if_relu1", "if_layer1", "if_layer2_0")
    assert sorted(cut.spike_counts) == sorted(k for k in whole.spike_counts if k.startswith(before))
