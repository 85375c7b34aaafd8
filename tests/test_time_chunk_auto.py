"""``simulate(time_chunk="auto")``: the chunk it picks, and that the pick changes no result."""

import importlib

import pytest
import torch
from torch import nn

from simulator import IFNeuron, Integrator, auto_time_chunk, simulate

simulate_module = importlib.import_module("simulator.simulate")  # the name `simulate` is the function

B, C, H = 8, 4, 8  # a conv layer of C x H x H = 256 values per sample feeding an IF layer


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, C, 3, padding=1), IFNeuron(), nn.Conv2d(C, C, 3, padding=1), IFNeuron(), nn.Flatten()
    )


def test_auto_fills_the_budget_with_the_widest_time_varying_layer(monkeypatch):
    x = torch.rand(B, 1, H, H)
    widest = C * H * H
    monkeypatch.setattr(simulate_module, "AUTO_CHUNK_VALUES", 3 * B * widest + B * widest // 2)
    assert auto_time_chunk(net(), x, T=16) == 3
    assert auto_time_chunk(net(), x, T=2) == 2  # never more than T
    assert auto_time_chunk(net(), torch.rand(4 * B, 1, H, H), T=16) == 1  # never less than 1
    assert auto_time_chunk(net(), x, T=16, encoding="poisson") == simulate_module.DEFAULT_TIME_CHUNK
    monkeypatch.setattr(simulate_module, "AUTO_CHUNK_VALUES", 100 * B * widest)
    assert auto_time_chunk(net(), x, T=16) == simulate_module.DEFAULT_TIME_CHUNK  # never above the old default


def test_auto_gives_the_outputs_of_its_chunk(monkeypatch):
    x = torch.rand(B, 1, H, H)
    monkeypatch.setattr(simulate_module, "AUTO_CHUNK_VALUES", 3 * B * C * H * H)
    auto = simulate(net(), x, T=10, record=True)
    fixed = simulate(net(), x, T=10, time_chunk=3, record=True)
    assert torch.equal(auto.outputs, fixed.outputs)
    assert auto.spikes is not None and fixed.spikes is not None
    assert all(torch.equal(auto.spikes[k], fixed.spikes[k]) for k in fixed.spikes)
    assert auto.outputs.sum() > 0  # the network fires: the comparison is not of zeros


def test_auto_matches_single_step_in_float64():
    x = torch.rand(B, 1, H, H, dtype=torch.float64)
    model = net().double()
    auto = simulate(model, x, T=12)
    single = simulate(model, x, T=12, execution="single")
    assert torch.equal(auto.outputs, single.outputs)


@pytest.mark.parametrize("bad", ["fast", "5", 0])
def test_bad_time_chunk_is_refused(bad):
    with pytest.raises(ValueError, match="time_chunk"):
        simulate(net(), torch.rand(B, 1, H, H), T=4, time_chunk=bad)


def test_membrane_readout_does_not_depend_on_the_chunks_in_float64():
    # weights scaled by 1.1 hold values only float64 has, so a regrouped sum moves the last bit
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, C, 3, padding=1), IFNeuron(), nn.Flatten(), nn.Linear(C * H * H, 10), Integrator()
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    x = torch.rand(4, 1, H, H, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    single = simulate(model, x, 16, execution="single").outputs
    for chunk in ("auto", 1, 3, 5, None):
        assert torch.equal(simulate(model, x, 16, time_chunk=chunk).outputs, single), chunk


@pytest.mark.parametrize("bad", [2.5, True])
def test_a_time_chunk_of_another_type_is_refused(bad):
    with pytest.raises(TypeError, match="time_chunk"):
        simulate(net(), torch.rand(B, 1, H, H), T=4, time_chunk=bad)
