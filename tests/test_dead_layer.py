"""A ReLU that is zero on all calibration data converts with the fallback scale and a warning;
one whose mode gives scale 0 while it is positive somewhere is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from converter import Converter
from converter.modes import parse_mode
from converter.normalize import DEAD_LAYER_SCALE, scales_from_stats
from converter.statistics import ActivationStats, mse_optimal_scale
from simulator import simulate


def _loader(x):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)


def _net_with_a_dead_layer() -> nn.Module:
    """Linear -> ReLU -> Linear (all weights and biases < 0: dead on inputs >= 0) -> ReLU ->
    Linear (positive bias) -> ReLU -> Linear."""
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)
    )
    with torch.no_grad():
        ann[0].weight.abs_()
        ann[2].weight.copy_(-ann[2].weight.abs())
        ann[2].bias.fill_(-0.1)
        ann[4].bias.copy_(torch.tensor([0.3, 0.6, 0.2, 0.9]))
    return ann.eval()


X = torch.rand(64, 3, generator=torch.Generator().manual_seed(0))


def _output_error(ann, snn, T=200) -> float:
    with torch.no_grad():
        target = ann(X)
    return (simulate(snn, X, T).rates()[-1] - target).abs().max().item()


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "max"},
        {"mode": "99.9%"},
        {"mode": "1/2"},
        {"mode": "max", "channel_wise": True},
        {"mode": "99.9%", "calibrate_T": 32},
    ],
    ids=["max", "percentile", "fraction", "channel_wise", "calibrate_T"],
)
def test_dead_layer_converts_with_the_fallback_scale_and_a_warning(options):
    ann = _net_with_a_dead_layer()
    with torch.no_grad():
        assert float(ann[:4](X).max()) == 0.0 and float(ann[:6](X).min()) > 0.0
    with pytest.warns(UserWarning, match=r"ReLU '3' \(ReLU\) is zero on all calibration data.*λ = 1\b"):
        snn = Converter(dataloader=_loader(X), readout="spike_count", **options)(ann)
    meta = snn.meta["ann2snn"]
    dead = next(layer for layer, relu in meta["if_layers"].items() if relu == "_3")  # fx names ReLU '3' '_3'
    assert meta["lambdas"][dead] == DEAD_LAYER_SCALE
    assert all(lam > 0 for lam in meta["lambdas"].values())
    assert float(simulate(snn, X, 50).spike_counts[dead].sum()) == 0.0
    if options["mode"] != "1/2":  # the fraction mode clips the live layers at half their max
        # the ANN's output on the calibration data, reproduced to a few times a rate's 1/T (T = 200)
        assert _output_error(ann, snn) <= 4 / 200


def test_scale_zero_on_a_layer_that_is_positive_somewhere_is_refused():
    s = ActivationStats.empty(track_histogram=True)
    s.update(torch.cat([torch.zeros(999), torch.full((1,), 2.0)]))
    with pytest.raises(ValueError, match=r"ReLU 'block.relu' \(ReLU\) has scale 0 under mode '50%'.*larger percentile"):
        scales_from_stats({"relu": s}, parse_mode("50%"), {"relu": "'block.relu' (ReLU)"})
    assert scales_from_stats({"relu": s}, parse_mode("max")) == {"relu": 2.0}


def test_refused_through_the_converter_naming_the_layer():
    ann = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    nn.init.constant_(ann[0].weight, -1.0)
    nn.init.constant_(ann[0].bias, -1.0)
    x = torch.cat([torch.rand(8, 3), torch.full((1, 3), -5.0)])  # positive on the last sample only
    with pytest.raises(ValueError, match=r"ReLU '1' \(ReLU\) has scale 0 under mode '50%'"):
        Converter(mode="50%", dataloader=_loader(x))(ann)


def test_scale_search_keeps_the_scale_of_a_dead_layer():
    s = ActivationStats.empty(track_histogram=True)
    s.update(torch.zeros(100))
    assert mse_optimal_scale(s, 1.0, 16, 0.5).tolist() == [1.0]
    per_channel = ActivationStats.empty(track_histogram=True, channels=3)
    per_channel.update(torch.zeros(4, 3, 2))
    assert mse_optimal_scale(per_channel, torch.ones(3), 16, 0.5).tolist() == [1.0, 1.0, 1.0]
