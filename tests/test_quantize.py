"""Integer quantisation (converter.quantize): scale invariance, integer parameters, sum pools,
residual joins, bad settings, and the seed CNN at 16 bits."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ann2snn.zoo import load_embedded, load_mnist_cnn, load_mnist_resnet
from converter import Converter, QuantizationError, quantize
from simulator import IFNeuron, Integrator, Scale, simulate
from simulator.graph import trace_snn
from tests.nets import cnn, inputs, mlp, randomize_bn


def _loader(x):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)


def _spikes(snn, x, T, **kwargs):
    return simulate(snn, x, T, record=True, **kwargs).spikes


def _is_integer(t: torch.Tensor) -> bool:
    return bool((t == torch.round(t)).all())


@pytest.mark.filterwarnings("ignore:IF layer")  # a random layer may stay silent
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    factor=st.integers(1, 1000),
    v_init=st.sampled_from([0.0, 0.5, 0.25]),
    spike_rule=st.sampled_from([">=", ">"]),
)
def test_common_integer_factor_leaves_spikes_identical(seed, factor, v_init, spike_rule):
    """W, b, V_th and V[0] times one positive factor: the same spikes (integers, so exact)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randint(-8, 9, (6, 5), generator=g).double()
    bias = torch.randint(-3, 4, (6,), generator=g).double()
    theta = float(torch.randint(4, 40, (1,), generator=g)) * 4  # V[0] = v_init V_th an integer
    x = torch.randint(0, 2, (3, 5), generator=g).double()

    def net(c):
        linear = nn.Linear(5, 6).double()
        linear.weight.data.copy_(weight * c)
        linear.bias.data.copy_(bias * c)
        return nn.Sequential(linear, IFNeuron(theta * c, v_init=v_init, spike_rule=spike_rule).double())

    assert torch.equal(_spikes(net(1), x, 20)["1"], _spikes(net(factor), x, 20)["1"])


@pytest.mark.filterwarnings("ignore:IF layer")
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), exponent=st.integers(-20, 20))
def test_common_power_of_two_leaves_float_spikes_identical(seed, exponent):
    """Float parameters times 2^k (exact in floating point): the same spikes."""
    g = torch.Generator().manual_seed(seed)
    c = 2.0**exponent
    linear = nn.Linear(4, 3)
    nn.init.normal_(linear.weight, generator=g)
    x = torch.rand(5, 4, generator=g)
    scaled = nn.Linear(4, 3)
    scaled.weight.data.copy_(linear.weight * c)
    scaled.bias.data.copy_(linear.bias * c)
    a = nn.Sequential(linear, IFNeuron(0.7, v_init=0.5))
    b = nn.Sequential(scaled, IFNeuron(0.7 * c, v_init=0.5))
    assert torch.equal(_spikes(a, x, 16)["1"], _spikes(b, x, 16)["1"])


@pytest.fixture(scope="module")
def small_cnn():
    x = inputs((1, 8, 8), 128)
    return Converter(mode="99.9%", dataloader=_loader(x))(randomize_bn(cnn())), x


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_parameters_are_integers_in_range(small_cnn, bits):
    snn, _ = small_cnn
    q = quantize(snn, weight_bits=bits)
    qmax = 2 ** (bits - 1) - 1
    for name, m in q.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert _is_integer(m.weight) and m.weight.abs().max() <= qmax, name
            assert m.bias is None or _is_integer(m.bias), name
        if isinstance(m, IFNeuron):
            assert m.v_threshold.numel() == 1 and _is_integer(m.v_threshold), name
            assert _is_integer(m.initial_potential(torch.zeros(1))), name
        if isinstance(m, nn.AvgPool2d):
            assert m.divisor_override == 1, name  # a sum pool
    info = q.meta["ann2snn"]["quantization"]
    assert info["weight_bits"] == bits and set(info["layers"]) == {"if_2", "if_5", "if_8", "readout"}
    assert info["sum_pools"] == ["_3", "_6"]
    for layer, entry in info["layers"].items():
        if layer != "readout":
            assert q.get_submodule(layer).v_threshold.item() == entry["threshold"]


def test_sum_pools_fold_the_divisor_exactly(small_cnn):
    """Before rounding, the sum-pool rewrite computes what the average pools did."""
    from converter.quantize import sum_pools

    snn, x = small_cnn
    import copy

    rewritten = copy.deepcopy(snn)
    assert sum_pools(rewritten) == ["_3", "_6"]
    rewritten.recompile()
    a = simulate(snn, x[:16], 12).spike_counts
    b = simulate(rewritten, x[:16], 12).spike_counts
    differ = sum(int((a[k] != b[k]).sum()) for k in a)
    total = sum(a[k].numel() for k in a)
    assert differ <= total * 1e-3  # x·w/4 against (x/4)·w: float rounding at threshold only


def test_spikes_are_integer_exact_with_spike_input(small_cnn):
    """With binary input every current is an integer: float32 and float64 give the same spikes."""
    snn, x = small_cnn
    q = quantize(snn, weight_bits=8)
    binary = (x[:16] > 0.5).float()
    a = _spikes(q, binary, 16)
    b = _spikes(q.double(), binary.double(), 16)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_plain_rounding_is_available_and_differs(small_cnn):
    snn, _ = small_cnn
    q = quantize(snn, weight_bits=4, rounding="plain")
    assert q.meta["ann2snn"]["quantization"]["rounding"] == "plain"
    assert q.get_submodule("0").weight.abs().max() == 7


def test_bias_none_removes_every_bias(small_cnn):
    snn, _ = small_cnn
    q = quantize(snn, weight_bits=8, bias="none")
    assert all(m.bias is None for m in q.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def _biased_net():
    first = nn.Linear(2, 2)
    first.weight.data = torch.tensor([[1.0, -0.5], [0.25, 0.5]])
    first.bias.data = torch.tensor([4.0, -1.0])  # at 127 / max|W| = 127 the bias 4 would need 10 bits
    last = nn.Linear(2, 2, bias=False)
    last.weight.data = torch.tensor([[1.0, -1.0], [0.5, 1.0]])
    return trace_snn(nn.Sequential(first, IFNeuron(1.0, v_init=0.0), last, Integrator()))


def test_bias_bits_cap_the_factor_by_hand():
    # the cap: round(k * 4) <= 127 -> k <= 31; every multiple of 4 rounds exactly, the largest is 28
    q = quantize(_biased_net(), weight_bits=8, bias="leak", bias_bits=8)
    assert q.get_submodule("1").v_threshold.item() == 28
    assert q.get_submodule("0").weight.tolist() == [[28.0, -14.0], [7.0, 14.0]]
    assert q.get_submodule("0").bias.tolist() == [112.0, -28.0]
    record = q.meta["ann2snn"]["quantization"]
    assert (record["bias"], record["bias_bits"], record["layers"]["1"]["bias_bits"]) == ("leak", 8, 8)
    free = quantize(_biased_net(), weight_bits=8, bias="keep")  # no cap: the weights use all 8 bits
    assert free.get_submodule("0").weight.abs().max().item() >= 120
    assert free.get_submodule("0").bias.abs().max().item() > 127
    assert free.meta["ann2snn"]["quantization"]["bias_bits"] is None


def test_bias_bits_clamp_the_corrected_biases(small_cnn):
    snn, x = small_cnn
    q = quantize(snn, weight_bits=8, bias="leak", bias_bits=4, calibration=x[:64], calibration_T=8)
    biases = [m.bias for m in q.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    assert biases and max(float(b.detach().abs().max()) for b in biases) <= 7
    assert q.meta["ann2snn"]["quantization"]["bias_corrected_layers"]  # "leak" corrects as "keep" does
    with pytest.raises(ValueError, match="bias_bits=8 limits kept biases; bias='none' removes them"):
        quantize(snn, weight_bits=8, bias="none", bias_bits=8)
    with pytest.raises(ValueError, match="bias_bits"):
        quantize(snn, weight_bits=8, bias_bits=1)


def test_bias_correction_records_layers(small_cnn):
    snn, x = small_cnn
    q = quantize(snn, weight_bits=4, calibration=x[:64], calibration_T=8)
    corrected = q.meta["ann2snn"]["quantization"]["bias_corrected_layers"]
    assert corrected and set(corrected) <= {"if_2", "if_5", "if_8", "readout"}
    assert all(_is_integer(m.bias) for m in q.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)


def test_mlp_readout_and_original_untouched():
    x = inputs((16,), 128)
    snn = Converter(mode="max", dataloader=_loader(x))(randomize_bn(mlp()))
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    q = quantize(snn, weight_bits=6)
    assert all(torch.equal(before[k], v) for k, v in snn.state_dict().items())
    assert isinstance(q.get_submodule("readout"), Integrator)
    agree = (simulate(q, x, 32).predictions()[-1] == simulate(snn, x, 32).predictions()[-1]).float().mean()
    assert agree > 0.8


def test_residual_joins_share_one_factor():
    """The MNIST ResNet: identity skips get integer Scale factors; predictions mostly kept."""
    calib = load_embedded("calib")
    snn = Converter(mode="99.9%", dataloader=calib.loader(250))(load_mnist_resnet())
    q = quantize(snn, weight_bits=8)
    scales = [m for m in q.modules() if isinstance(m, Scale)]
    assert len(scales) == 2 and all(_is_integer(s.scale) and s.scale.abs().max() <= 127 for s in scales)
    assert all(m.divisor_override == 1 for m in q.modules() if isinstance(m, nn.AvgPool2d))
    x = calib.images[:64]
    agree = (simulate(q, x, 32).predictions()[-1] == simulate(snn, x, 32).predictions()[-1]).float().mean()
    assert agree >= 0.9


def test_bias_correction_from_kept_trains_gives_the_biases_of_whole_network_simulations():
    """Each IF layer's correction runs from the kept spike trains of the corrected layers before
    it (``converter.calibrate._Trains``); simulating the whole network for each layer instead, as
    the correction did before, gives identical parameters (MNIST ResNet, two residual joins)."""
    from unittest import mock

    calib = load_embedded("calib")
    snn = Converter(mode="99.9%", dataloader=calib.loader(250))(load_mnist_resnet())
    x = calib.images[:48]

    class WholeNetwork:
        def __init__(self, gm, x, T):
            self.gm, self.x, self.T = gm, x, T

        def counts(self, node):
            return simulate(self.gm, self.x, self.T, warn_silent=False).spike_counts[str(node.target)]

    kept = quantize(snn, weight_bits=6, calibration=x, calibration_T=8)
    with mock.patch("converter.quantize._Trains", WholeNetwork):
        whole = quantize(snn, weight_bits=6, calibration=x, calibration_T=8)
    with mock.patch("converter.quantize._Trains", lambda gm, x, T: None):  # the Poisson path: _prefix
        prefix = quantize(snn, weight_bits=6, calibration=x, calibration_T=8)
    corrected = kept.meta["ann2snn"]["quantization"]["bias_corrected_layers"]
    assert len(corrected) >= 4 and corrected == whole.meta["ann2snn"]["quantization"]["bias_corrected_layers"]
    a, b, c = kept.state_dict(), whole.state_dict(), prefix.state_dict()
    assert a.keys() == b.keys() == c.keys() and all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    uncorrected = quantize(snn, weight_bits=6)
    assert any(not torch.equal(a[k], uncorrected.state_dict()[k]) for k in a)  # the correction did something


def test_bias_correction_simulates_each_layer_up_to_itself_with_the_counts_of_the_whole_network():
    """The bias correction runs, per IF layer, only the part of the network the layer depends on
    (``_prefix``): on the MNIST ResNet (two residual joins) every IF layer in that part spikes
    exactly as in the whole network, and the part ends at the layer."""
    from converter.quantize import _prefix

    calib = load_embedded("calib")
    snn = Converter(mode="99.9%", dataloader=calib.loader(250))(load_mnist_resnet())
    q = quantize(snn, weight_bits=8)  # integer weights: every sum exact, in any order
    x = calib.images[:32]
    whole = simulate(q, x, 8).spike_counts
    nodes = [n for n in q.graph.nodes if n.op == "call_module" and isinstance(q.get_submodule(n.target), IFNeuron)]
    assert len(nodes) == len(whole) >= 5
    for node in nodes:
        part = _prefix(q, node)
        counts = simulate(part, x, 8).spike_counts
        assert node.target in counts and set(counts) <= set(whole)
        assert all(torch.equal(counts[k], whole[k]) for k in counts)
        assert next(n for n in part.graph.nodes if n.op == "output").args[0].target == node.target
    assert len(simulate(_prefix(q, nodes[0]), x, 8).spike_counts) == 1  # nothing after the layer runs


#: The largest fraction of the seed CNN's spikes that 16-bit weights may change, counted
#: against the float SNN's spikes (measured: 3,084 of 1.39 M, 0.22 %, on 50 test images at
#: T = 16; a neuron that flips changes the input of the 288 neurons it drives, so single
#: rounding differences near a threshold cascade).
MAX_CHANGED_16 = 5e-3


def test_seed_cnn_at_16_bits_changes_a_tiny_fraction_of_spikes():
    calib, test = load_embedded("calib"), load_embedded("test")
    snn = Converter(mode="99.9%", dataloader=calib.loader(500))(load_mnist_cnn())
    q = quantize(snn, weight_bits=16)
    x = test.images[:50]
    a, b = _spikes(snn, x, 16), _spikes(q, x, 16)
    changed = sum(int((a[k] != b[k]).sum()) for k in a)
    fired = sum(int(a[k].sum()) for k in a)
    assert changed <= MAX_CHANGED_16 * fired


@pytest.mark.parametrize("bits", [0, 1, 17, "abc", 4.0, True, None])
def test_bad_weight_bits(small_cnn, bits):
    with pytest.raises(ValueError, match="weight_bits must be an integer from 2 to 16"):
        quantize(small_cnn[0], weight_bits=bits)


def test_state_bits_too_small_names_layer_and_width(small_cnn):
    with pytest.raises(QuantizationError, match=r"IF layer 'if_\d+': its integer threshold \d+ needs \d+ state bits"):
        quantize(small_cnn[0], weight_bits=16, state_bits=8)


def test_bad_bias_and_rounding(small_cnn):
    with pytest.raises(ValueError, match="bias must be one of"):
        quantize(small_cnn[0], 8, bias="drop")
    with pytest.raises(ValueError, match="rounding must be one of"):
        quantize(small_cnn[0], 8, rounding="stochastic")


def test_per_channel_threshold_refused():
    net = trace_snn(nn.Sequential(nn.Linear(3, 2), IFNeuron(torch.tensor([1.0, 2.0])), nn.Linear(2, 2), Integrator()))
    with pytest.raises(QuantizationError, match="IF layer '1' has one threshold per neuron"):
        quantize(net, 8)


def test_two_linear_layers_in_a_row_refused():
    net = trace_snn(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2), IFNeuron()))
    with pytest.raises(QuantizationError, match="two linear layers without a neuron"):
        quantize(net, 8)


def test_quantised_export_import_gives_identical_spikes(small_cnn, tmp_path):
    """Integer-valued parameters and sum pools survive NIR: the same spikes after reloading."""
    import nir

    from exporters import compare_spike_counts, export_nir, import_nir

    snn, x = small_cnn
    q = quantize(snn, weight_bits=8)
    path = export_nir(q, tmp_path / "q.nir", T=8)
    graph = nir.read(path)
    assert sum(isinstance(n, nir.SumPool2d) for n in graph.nodes.values()) == 2
    back = import_nir(path)
    for name, m in back.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert _is_integer(m.weight), name
    report = compare_spike_counts(q, back, x[:16], 16)
    assert report.equal, report


def test_export_writes_bit_widths_and_factors_and_inspect_shows_them(small_cnn, tmp_path):
    import json

    from click.testing import CliRunner

    from ann2snn.cli import main
    from exporters import export_nir, import_nir

    snn, _ = small_cnn
    q = quantize(snn, weight_bits=6, state_bits=16)
    path = export_nir(q, tmp_path / "q6.nir", T=4)
    meta = import_nir(path).meta["ann2snn"]
    assert meta["weight_bits"] == 6 and meta["state_bits"] == 16
    assert meta["quantization"] == json.loads(json.dumps(q.meta["ann2snn"]["quantization"]))  # a dict again
    shown = CliRunner().invoke(main, ["inspect", str(path)])
    assert shown.exit_code == 0 and "weight_bits" in shown.output and "state_bits" in shown.output


def test_converter_weight_bits_hookup():
    x = inputs((16,), 128)
    snn = Converter(mode="max", dataloader=_loader(x), weight_bits=6, state_bits=24)(randomize_bn(mlp()))
    info = snn.meta["ann2snn"]["quantization"]
    assert info["weight_bits"] == 6 and info["state_bits"] == 24 and info["bias_corrected_layers"]
    assert snn.meta["ann2snn"]["mode"] == "max"  # the conversion's own metadata is kept
    assert all(m.weight.abs().max() <= 31 for m in snn.modules() if isinstance(m, nn.Linear))
    for bad in (0, 1, 17, "abc"):
        with pytest.raises(ValueError, match="weight_bits must be an integer from 2 to 16"):
            Converter(mode="max", dataloader=[x], weight_bits=bad)
    with pytest.raises(ValueError, match="state_bits needs weight_bits"):
        Converter(mode="max", dataloader=[x], state_bits=16)
