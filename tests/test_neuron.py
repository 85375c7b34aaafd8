import pytest
import torch

from simulator import IFNeuron, simulate


def _count(x: float, T: int, **kwargs) -> int:
    layer = IFNeuron(v_threshold=1.0, **kwargs)
    return int(simulate(layer, torch.tensor([[x]]), T).outputs.sum())


def test_golden_spike_counts_input_075_T8():
    # Our rule is v >= V_th (spike_rule=">="); NIR's strict rule is available as ">".
    assert _count(0.75, 8, reset="subtract", spike_rule=">=") == 6
    assert _count(0.75, 8, reset="subtract", spike_rule=">") == 5
    assert _count(0.75, 8, reset="zero", spike_rule=">=") == 4


def test_golden_membrane_trajectory():
    layer = IFNeuron()
    layer.steps = 4
    spikes = layer(torch.tensor([[0.75]] * 4))
    assert spikes.flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    assert layer.v.item() == pytest.approx(0.0)  # 0.75, 1.5-1, 1.25-1, 1.0-1


def test_firing_rate_within_one_over_T_of_input():
    T = 100
    x = torch.linspace(0, 1, 257).view(-1, 1)
    rate = simulate(IFNeuron(), x, T).outputs.mean(0)
    assert (rate - x).abs().max().item() <= 1 / T + 1e-6


def test_rate_error_shrinks_with_T():
    x = torch.rand(500, 1)
    errors = [(simulate(IFNeuron(), x, T).outputs.mean(0) - x).abs().max().item() for T in (10, 100, 1000)]
    assert errors[0] <= 0.1 + 1e-6 and errors[1] <= 0.01 + 1e-6 and errors[2] <= 0.001 + 1e-6


def test_chunking_and_repeat_are_bitwise_identical():
    layer = torch.nn.Sequential(torch.nn.Linear(3, 4), IFNeuron(), torch.nn.Linear(4, 2), IFNeuron())
    x = torch.rand(5, 3)
    ref = simulate(layer, x, 23, time_chunk=None)
    for chunk in (1, 7, 10):
        assert torch.equal(simulate(layer, x, 23, time_chunk=chunk).outputs, ref.outputs)
    assert torch.equal(simulate(layer, x, 23).outputs, simulate(layer, x, 23).outputs)


def test_v_init_half_threshold_changes_first_spike():
    assert _count(0.5, 1, v_init=0.5) == 1 and _count(0.5, 1) == 0


def test_bad_neuron_settings_are_refused():
    with pytest.raises(ValueError, match="reset"):
        IFNeuron(reset="foo")
    with pytest.raises(ValueError, match="spike_rule"):
        IFNeuron(spike_rule="=>")
    with pytest.raises(ValueError, match="v_threshold"):
        IFNeuron(v_threshold=0.0)
    with pytest.raises(ValueError, match="T must be"):
        simulate(IFNeuron(), torch.ones(1, 1), 0)
    with pytest.raises(ValueError, match="encoding"):
        simulate(IFNeuron(), torch.ones(1, 1), 3, encoding="burst")


def test_poisson_encoding_rate_tracks_input():
    x = torch.full((1, 2000), 0.3)
    rate = simulate(torch.nn.Identity(), x, 200, encoding="poisson").outputs.mean()
    assert abs(rate.item() - 0.3) < 0.01
