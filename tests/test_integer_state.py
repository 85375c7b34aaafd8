"""Integer-exact, saturating IF state (IFNeuron(state_bits=, integer=)) and rate-coded spike input."""

import copy

import pytest
import torch
from torch import nn

from converter import quantize
from simulator import IFNeuron, Integrator, rate_spikes, simulate
from simulator.graph import trace_snn


def test_saturation_golden_trajectory():
    # state_bits=4: V in [-8, 7]; input 10 saturates to 7 before the comparison with V_th = 4
    layer = IFNeuron(4.0, state_bits=4, integer=True)
    out = simulate(layer, torch.tensor([[10.0, 3.0]]), T=4).outputs[:, 0]
    assert out.tolist() == [[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    assert layer.v.dtype == torch.float64 and layer.v.tolist() == [[3.0, 0.0]]
    free = IFNeuron(4.0)  # without saturation the excess stays in V: 4 * 10 - 4 spikes * 4 = 24
    assert simulate(free, torch.tensor([[10.0]]), T=4).outputs.sum().item() == 4.0
    assert free.v.tolist() == [[24.0]]


def test_state_bits_refused_when_threshold_does_not_fit():
    with pytest.raises(ValueError, match=r"state_bits=4 holds potentials up to 7, but v_threshold reaches 9"):
        IFNeuron(9.0, state_bits=4)
    with pytest.raises(ValueError, match="state_bits must be from 2 to 53, got 1"):
        IFNeuron(1.0, state_bits=1)
    with pytest.raises(TypeError, match="state_bits must be an int"):
        IFNeuron(1.0, state_bits="16")


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), IFNeuron(1.0, v_init=0.5), nn.Linear(8, 3), Integrator())
    return quantize(trace_snn(net), weight_bits=6)


def test_integer_state_equals_float_parameters_of_the_same_integers():
    q = _net()
    assert all(m.integer for m in q.modules() if isinstance(m, IFNeuron))
    floats = copy.deepcopy(q)
    for m in floats.modules():
        if isinstance(m, IFNeuron):
            m.integer = False
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(1))
    a, b = simulate(q, x, 30, record=True), simulate(floats, x, 30, record=True)
    assert torch.equal(a.spikes["1"], b.spikes["1"])
    assert int(a.spikes["1"].sum()) > 0
    assert a.spike_counts["1"].dtype == torch.float64


def test_saturation_changes_spikes_and_multi_equals_single():
    q = _net()
    x = 4 * torch.rand(64, 6, generator=torch.Generator().manual_seed(2))
    threshold = int(q.get_submodule("1").v_threshold.item())
    narrow = copy.deepcopy(q)
    narrow.get_submodule("1").state_bits = threshold.bit_length() + 1
    free, sat = simulate(q, x, 20, record=True), simulate(narrow, x, 20, record=True)
    assert int((free.spikes["1"] != sat.spikes["1"]).sum()) > 0
    single = simulate(narrow, x, 20, record=True, execution="single")
    assert torch.equal(single.spikes["1"], sat.spikes["1"])


def test_rate_spikes_are_an_if_encoder():
    x = torch.tensor([[0.0, 0.125, 0.5, 0.75, 1.0]], dtype=torch.float64)  # dyadic: the IF is exact
    encoder = simulate(IFNeuron(1.0, v_init=0.5), x, 16, record=True).outputs
    assert torch.equal(encoder, rate_spikes(x, 16))
    assert rate_spikes(x, 16).sum(0).tolist() == [[0.0, 2.0, 8.0, 12.0, 16.0]]
    # over chunks the train continues: the same as one chunk of all steps
    out = simulate(nn.Identity(), x.float(), 16, encoding="rate", time_chunk=3).outputs
    assert torch.equal(out, rate_spikes(x.float(), 16))


@pytest.mark.parametrize("value", [-0.5, 1.5])
def test_rate_input_outside_unit_interval_refused(value):
    with pytest.raises(ValueError, match=r"encoding='rate' takes inputs in \[0, 1\]"):
        simulate(IFNeuron(), torch.full((1, 2), value), 4, encoding="rate")
