"""Calibration through residual joins and on the truncated network (issue 14)."""

import pytest
import torch

from converter import Converter, layer_fidelity
from converter.calibrate import _calibrated_producer, _pack, _Trains, _unpack, calibrate_biases, calibrate_weights
from examples.cifar10 import ResNet20
from simulator import IFNeuron, simulate
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


def _if_nodes(snn):
    modules = dict(snn.named_modules())
    return [n for n in snn.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], IFNeuron)]


@pytest.mark.parametrize("cache_bytes", [None, 0])
def test_the_kept_trains_give_the_spikes_of_the_whole_network(ann, cache_bytes):
    snn = _convert(ann).double()
    x = X[:10].double()
    whole = simulate(snn, x, 6, time_chunk=1)
    trains = _Trains(snn, x, 6, cache_bytes)
    for node in _if_nodes(snn):  # in graph order, as the calibrations ask
        counts = trains.counts(node) if node.target.endswith("relu2") else trains.mean(node) * 6
        assert torch.equal(counts, whole.spike_counts[node.target].double()), node.target
    if cache_bytes == 0:
        assert not trains.kept
    else:  # only the trains the layers after the last join still need
        assert 0 < len(trains.kept) <= 2 and trains.kept_bytes < 10 * 6 * 8 * 4 * 4


def test_the_trains_are_packed_8_spikes_per_byte():
    spikes = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0)) < 0.4
    packed = _pack(spikes)
    assert packed.dtype == torch.uint8 and packed.numel() == (3 * 5 * 7 + 7) // 8
    assert torch.equal(_unpack(packed, spikes.shape, torch.float32), spikes.float())


def test_calibration_with_kept_trains_equals_calibration_from_the_start(ann):
    snn = _convert(ann).double()
    x, modules = X[:16].double(), dict(snn.named_modules())
    targets = {n.target: simulate(snn, x, 4).spike_counts[n.target].double().clamp(max=3) / 3 for n in _if_nodes(snn)}
    results = []
    for cache_bytes in (None, 0):
        copy = _convert(ann).double()
        calibrate_biases(copy, targets, x, 4, cache_bytes=cache_bytes)
        calibrate_weights(copy, targets, x, 4, iterations=3, cache_bytes=cache_bytes)
        results.append(copy.state_dict())
    assert modules and results[0].keys() == results[1].keys()
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key]), key


def test_weight_calibration_centres_the_rates_it_fits(ann):
    """The fit models each IF layer as driven by its mean current; the layer's actual rates
    differ (inputs that turn negative after a spike cannot take it back), and the bias shift
    after each fit removes the mean of that difference per channel."""
    x = X[:32].double()
    reference = _convert(ann).double()  # targets: the rates at T = 64 (the ANN's, clipped, to 1/64)
    targets = {k: c / 64 for k, c in _counts(reference, x, 64).items()}
    errors = {}
    for correct in (True, False):
        snn = _convert(ann).double()
        fitted = calibrate_weights(snn, targets, x, 4, iterations=30, correct_biases=correct)
        counts = _counts(snn, x, 4)
        per_channel = [(targets[k] - counts[k] / 4).transpose(0, 1).flatten(1).mean(1).abs() for k in fitted]
        errors[correct] = torch.cat(per_channel).mean().item()
    assert len(fitted) == 12  # every IF layer but the first (it sees the analog input)
    assert errors[True] < 0.6 * errors[False]  # measured: 0.0045 vs 0.0100


def _counts(snn, x, T):
    """IF layer path → its spike counts ``[N, C, H, W]`` in ``T`` steps."""
    return {k: c.double() for k, c in simulate(snn, x, T).spike_counts.items()}


@pytest.mark.parametrize("per", ["channel", "neuron"])
def test_the_bias_shift_is_a_current_for_any_threshold(ann, per):
    """A rate error e is a current e·V_th: with thresholds 0.5, 1, 2, 4 per channel (or per
    neuron), each channel's bias moves by the channel's mean of (target - rate)·V_th."""
    snn, T, name = _convert(ann).double(), 8, "if_layer1_0_relu1"
    x, neuron = X[:16].double(), snn.get_submodule(name)
    threshold = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64).view(4, 1, 1)
    shape = simulate(snn, x, 1).spike_counts[name].shape[1:]
    neuron.v_threshold = threshold if per == "channel" else threshold.expand(shape).clone()
    rate = simulate(snn, x, T).spike_counts[name].double() / T
    target = (rate + 0.05).clamp(max=1)
    producer, _ = _calibrated_producer(_node(snn, name), dict(snn.named_modules()))
    bias = snn.get_submodule(producer.target).bias
    before = bias.detach().clone()
    calibrate_biases(snn, {name: target}, x, T)
    expected = ((target - rate) * neuron.v_threshold).transpose(0, 1).flatten(1).mean(1)
    assert torch.allclose(bias.detach() - before, expected, rtol=0, atol=1e-12)
    assert expected[3] > 3 * expected[1]  # the V_th = 4 channel moves most


def _node(snn, target):
    return next(n for n in snn.graph.nodes if n.target == target)


@pytest.mark.parametrize("cache_bytes", [None, 150_000])  # 150 kB: one 4 x 16 x 16 train of 10 samples x 6 steps
def test_burst_trains_are_kept_exactly_and_within_the_budget(ann, cache_bytes):
    """Burst trains (several spikes per step) are kept as int8/int16 counts, not bit-packed; a pass
    stops keeping trains once the budget would be exceeded, while it runs (not only at its end)."""
    snn = _convert(ann, spike_rule="multi").double()
    x = X[:10].double()
    whole = simulate(snn, x, 6)
    trains, int16 = _Trains(snn, x, 6, cache_bytes), set()
    for node in _if_nodes(snn):
        counts = trains.counts(node) if node.target.endswith("relu2") else trains.mean(node) * 6
        assert torch.equal(counts, whole.spike_counts[node.target].double()), node.target
        assert trains.kept_bytes <= trains.cache_bytes
        ints = (torch.int8, torch.int16)
        int16 |= {n.target for n, entries in trains.kept.items() if all(d.dtype in ints for d, _, _ in entries)}
    assert len(int16) >= 2
    assert max(c.max() for c in whole.spike_counts.values()) > 6  # some neuron fired twice in a step


def test_signed_trains_are_kept_exactly(ann):
    """Signed trains (-1, 0, 1 per step) are kept as int8 and give the whole network's net counts;
    the weight calibration runs on them."""
    snn = _convert(ann, spike_rule="signed").double()
    x = X[:10].double()
    whole = simulate(snn, x, 6, record=True)
    trains = _Trains(snn, x, 6)
    for node in _if_nodes(snn):
        counts = trains.counts(node) if node.target.endswith("relu2") else trains.mean(node) * 6
        assert torch.equal(counts, whole.spike_counts[node.target].double()), node.target
    assert any(bool((t == -1).any()) for t in whole.spikes.values())  # some neuron took a spike back
    assert {entries[0][0].dtype for entries in trains.kept.values()} == {torch.int8}
    fitted = _convert(ann, spike_rule="signed", calibrate_T=4, calibrate_weights=True, calibration_iterations=5)
    assert set(JOINS) <= set(fitted.meta["ann2snn"]["weight_calibrated_layers"])
