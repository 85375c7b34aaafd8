"""Per-layer fidelity (converter.diagnostics) and spike rasters (simulator.raster)."""

import copy

import pytest
import torch
from torch import nn

from converter import Converter, layer_fidelity
from converter.diagnostics import LayerFidelity, fidelity_warnings, first_growing_layer, growing_layer
from exporters import export_nir, import_nir
from simulator import META_KEY, simulate, spike_raster
from simulator.graph import input_shape_problem


def three_layer_net() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    ).eval()


X = torch.rand(128, 8, generator=torch.Generator().manual_seed(6))


def convert(ann):
    return Converter("max", dataloader=[X])(ann)


def halve_lambda(snn, layer: str, producer: str, consumer: str):
    """The SNN the converter gives when IF layer ``layer``'s λ is halved: the Linear feeding it
    doubled, the Linear it feeds halved, the metadata's λ halved."""
    bad = copy.deepcopy(snn)
    with torch.no_grad():
        bad.get_submodule(producer).weight.mul_(2)
        bad.get_submodule(producer).bias.mul_(2)
        bad.get_submodule(consumer).weight.mul_(0.5)
    bad.meta = copy.deepcopy(snn.meta)
    bad.meta[META_KEY]["lambdas"][layer] /= 2
    return bad


def test_a_halved_lambda_is_the_first_growing_error():
    ann = three_layer_net()
    snn = convert(ann)
    assert list(snn.meta[META_KEY]["if_layers"]) == ["if_1", "if_3", "if_5"]
    good = layer_fidelity(ann, snn, X, T=64)
    bad = layer_fidelity(ann, halve_lambda(snn, "if_3", "2", "4"), X, T=64)
    assert good.first_growing is None
    assert bad.first_growing == "if_3"
    assert [r.layer for r in bad.layers] == ["if_1", "if_3", "if_5"]
    assert bad.layers[0] == good.layers[0]  # layer 1 is untouched: the same numbers
    assert bad.layers[1].mae > 2 * bad.layers[0].mae + 1 / (2 * 64) > good.layers[1].mae
    assert bad.layers[1].saturated > 0.01 and good.layers[1].saturated == 0
    assert good.layers[1].mae < 1 / (2 * 64)


@pytest.mark.parametrize("T", [8, 16, 1000])
def test_a_halved_lambda_is_found_at_small_and_large_T(T):
    ann = three_layer_net()
    snn = convert(ann)
    good = layer_fidelity(ann, snn, X, T=T)
    bad = layer_fidelity(ann, halve_lambda(snn, "if_3", "2", "4"), X, T=T)
    assert (good.first_growing, good.reason, good.warnings) == (None, None, [])
    assert bad.first_growing == "if_3" and bad.warnings == []
    assert [r.clipped for r in good.layers] == [0.0, 0.0, 0.0]
    assert bad.layers[1].clipped > 0.01 and bad.layers[0].clipped == bad.layers[2].clipped == 0
    if T == 8:  # the MAE rule alone misses it: 1/(2T) = 0.0625 is above every MAE
        assert max(r.mae for r in bad.layers) < 2 * bad.layers[0].mae + 1 / 16
        assert (
            bad.reason == f"{100 * bad.layers[1].clipped:.2f} % of its activations exceed λ (a > 1): its λ is too small"
        )


def test_silent_counts_only_activations_a_rate_can_show():
    ann = three_layer_net()
    snn = convert(ann)
    T = 8
    good = layer_fidelity(ann, snn, X, T=T)
    assert good.layers[0].silent == 0  # exact input: every a >= 1/T spikes (a in (0, 1/(2T)) rounds to 0)
    dead = copy.deepcopy(snn)
    with torch.no_grad():  # plant a layer that never spikes: if_3's input current is 0
        dead.get_submodule("2").weight.zero_()
        dead.get_submodule("2").bias.zero_()
    report = layer_fidelity(ann, dead, X, T=T)
    assert report.layers[1].mean_rate == 0
    with torch.no_grad():
        a = ann[:4](X) / snn.meta[META_KEY]["lambdas"]["if_3"]
    expected = float((a >= 1 / T).double().mean())
    assert 0.1 < expected < float((a > 0).double().mean())  # the threshold matters here
    assert report.layers[1].silent == pytest.approx(expected, abs=1e-12)


def test_wrong_weights_give_a_warning_and_the_first_layer():
    ann = three_layer_net()
    wrong = copy.deepcopy(convert(ann))
    torch.manual_seed(1)
    with torch.no_grad():
        for m in wrong.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.3)
    report = layer_fidelity(ann, wrong, X, T=8)
    assert all(r.correlation is not None and r.correlation < 0.5 for r in report.layers)
    assert report.first_growing == "if_1"
    assert report.warnings == [
        "correlation < 0.5 in every layer: the weights may not match the model "
        "(is the .nir file converted from these weights?)"
    ]


def test_correlations_are_one_within_1_over_T_at_large_T():
    ann = three_layer_net()
    T = 1000
    report = layer_fidelity(ann, convert(ann), X, T=T)
    for row in report.layers:
        assert row.correlation is not None and row.correlation >= 1 - 1 / T, row
        assert row.mae <= 1 / T, row  # a rate after T steps is exact to 1/T
        assert row.saturated <= 1 / X.shape[0]  # 'max' mode: at most the max itself reaches rate 1
    assert report.samples == 128 and report.T == T


def test_a_nir_file_gives_the_same_table_by_name(tmp_path):
    ann = three_layer_net()
    snn = convert(ann)
    export_nir(snn, tmp_path / "net.nir", T=16)
    loaded = import_nir(tmp_path / "net.nir")
    assert loaded.meta[META_KEY]["lambdas"] == pytest.approx(snn.meta[META_KEY]["lambdas"])
    assert loaded.meta[META_KEY]["if_layers"] == {"if_1": "_1", "if_3": "_3", "if_5": "_5"}
    expected = layer_fidelity(ann, snn, X, T=16, batch_size=50).to_dict()
    assert layer_fidelity(ann, loaded, X, T=16, batch_size=50).to_dict() == expected
    del loaded.meta[META_KEY]["if_layers"]  # older files: IF node names follow if_<ReLU path>
    assert layer_fidelity(ann, loaded, X, T=16, batch_size=50).to_dict() == expected


def test_a_model_that_does_not_match_is_refused():
    ann = three_layer_net()
    snn = convert(ann)
    other = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    with pytest.raises(ValueError, match=r"IF layer 'if_3' of the SNN has no ReLU in the ANN .*if_1 \(_1\)"):
        layer_fidelity(other, snn, X, T=4)
    wide = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    ).eval()
    with pytest.raises(ValueError, match=r"IF layer 'if_1' has shape \[32\] but ReLU '_1' of the ANN gives \[16\]"):
        layer_fidelity(wide, snn, X, T=4)
    del snn.meta[META_KEY]["lambdas"]["if_5"]
    with pytest.raises(ValueError, match="IF layer 'if_5' has no λ"):
        layer_fidelity(ann, snn, X, T=4)
    with pytest.raises(ValueError, match="T and batch_size must be >= 1, got T=0"):
        layer_fidelity(ann, snn, X, T=0)


def test_first_growing_layer_rule():
    names = ["a", "b", "c"]
    assert first_growing_layer([0.004, 0.006, 0.2], names, T=100) == "c"
    assert first_growing_layer([0.01, 0.015, 0.02], names, T=100) == "a"  # 0.01 > 0 + 1/200
    assert first_growing_layer([0.004, 0.013, 0.03], names, T=100) is None  # 0.013 = 2·0.004 + 0.005, not more
    assert first_growing_layer([0.004, 0.02, 0.06], names, T=100, growth=5) is None
    mae = [0.01, 0.01, 0.01]  # below 1/(2T) at T = 8: the MAE rule flags nothing
    assert first_growing_layer(mae, names, T=8, correlations=[0.99, 0.95, 0.9]) is None
    assert first_growing_layer(mae, names, T=8, correlations=[0.99, 0.85, 0.9]) == "b"  # drop > 0.1
    slow = [0.95, 0.87, 0.79, 0.71, 0.63, 0.55, 0.49]  # no drop of 0.1, but below 0.5 at the last
    assert first_growing_layer([0.01] * 7, list("abcdefg"), T=8, correlations=slow) == "g"
    assert first_growing_layer(mae, names, T=8, correlations=[0.3, 0.25, 0.2]) == "a"  # 0.3 < 1 - 0.1
    assert first_growing_layer(mae, names, T=8, correlations=[None, 0.95, 0.9]) is None  # None: skipped
    assert first_growing_layer(mae, names, T=8, clipped=[0.0, 0.01, 0.011]) == "c"  # more than 1 %
    assert (
        growing_layer(mae, names, T=8, correlations=[0.99, 0.85, 0.9])[1]
        == "correlation 0.8500 < previous 0.9900 − 0.1"
    )
    with pytest.raises(ValueError, match="one value per layer: 3 names, 2 MAEs"):
        growing_layer([0.1, 0.2], names, T=8)


def test_raster_counts_are_the_simulators():
    ann = three_layer_net()
    snn = convert(ann)
    sample, T = 7, 20
    counts = simulate(snn, X, T).spike_counts["if_3"][sample]
    raster = spike_raster(snn, X[sample], T, "if_3", neurons=5)
    assert raster.spikes.shape == (T, 5) and raster.T == T
    assert raster.layer_spikes == int(counts.sum())
    assert raster.spikes.sum(0).tolist() == counts[raster.neurons].long().tolist()
    assert sorted(counts.tolist(), reverse=True)[:5] == sorted(counts[raster.neurons].tolist(), reverse=True)
    whole = spike_raster(snn, X[sample], T, "if_3", neurons=None)
    assert int(whole.spikes.sum()) == int(counts.sum()) and whole.spikes.shape == (T, 32)


def test_raster_refuses_an_unknown_layer():
    snn = convert(three_layer_net())
    with pytest.raises(ValueError, match="no IF layer 'if_9'; the IF layers are: if_1, if_3, if_5"):
        spike_raster(snn, X[0], 4, "if_9")
    with pytest.raises(ValueError, match="neurons must be >= 1"):
        spike_raster(snn, X[0], 4, "if_1", neurons=0)


def cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


IMAGES = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))


def test_calibration_data_read_once_from_a_generator_and_as_a_list_pair():
    ann = cnn()
    labels = torch.arange(16) % 3
    expected = Converter("max", dataloader=IMAGES)(ann).meta[META_KEY]["lambdas"]
    one_shot = (IMAGES[i : i + 4] for i in range(0, 16, 4))
    assert Converter("max", dataloader=one_shot)(ann).meta[META_KEY]["lambdas"] == expected
    assert Converter("max", dataloader=[IMAGES, labels])(ann).meta[META_KEY]["lambdas"] == expected
    assert Converter("max", dataloader=(IMAGES, labels))(ann).meta[META_KEY]["lambdas"] == expected
    with pytest.raises(ValueError, match="calibration data: the generator yielded no batches"):
        Converter("max", dataloader=(b for b in []))
    # two batches of images, not a pair: the second is not 1-D integer labels
    two = [IMAGES[:8], IMAGES[8:]]
    assert Converter("max", dataloader=two)(ann).meta[META_KEY]["lambdas"] == expected


def test_mis_shaped_inputs_name_the_expected_and_the_got_shape():
    ann = cnn()
    with pytest.raises(
        ValueError, match=r"calibration data does not fit the model: expected \[B, 1, H, W\] .*got \[1, 8, 8\]"
    ):
        Converter("max", dataloader=[IMAGES[0]])(ann)  # one [C, H, W] image, no batch axis
    with pytest.raises(ValueError, match=r"expected \[B, 1, H, W\] .*got \[1, 64\]"):  # the first sample
        Converter("max", dataloader=IMAGES.flatten(1))(ann)
    snn = Converter("max", dataloader=IMAGES)(ann)
    with pytest.raises(
        ValueError, match=r"one sample without the batch axis, got shape \[1, 1, 8, 8\]; .*got \[1, 1, 1, 8, 8\]"
    ):
        spike_raster(snn, IMAGES[:1], 4, "if_1")
    with pytest.raises(ValueError, match=r"got shape \[64\]; .*expected \[B, 1, H, W\]"):
        spike_raster(snn, IMAGES[0].flatten(), 4, "if_1")
    with pytest.raises(ValueError, match=r"the inputs x do not fit the SNN: expected \[B, 1, H, W\] .*got \[1, 8, 8\]"):
        layer_fidelity(ann, snn, IMAGES[0], T=4)
    assert spike_raster(snn, IMAGES[0], 4, "if_1").spikes.shape[0] == 4


class ClassifierRegisteredFirst(nn.Module):
    """Registers its Linear before its Conv2d: the shape check must follow the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_the_shape_check_follows_the_forward_not_the_registration_order():
    ann = ClassifierRegisteredFirst().eval()
    snn = Converter("max", dataloader=IMAGES)(ann)  # [N, 1, 8, 8] fits conv, the first layer called
    assert input_shape_problem(ann, IMAGES.shape) is None
    assert simulate(snn, IMAGES[:2], 8).outputs.shape == (8, 2, 3)
    with pytest.raises(ValueError, match=r"expected \[B, 1, H, W\] \(the first layer, conv, is Conv2d.*got \[1, 64\]"):
        Converter("max", dataloader=IMAGES.flatten(1))(ann)


def test_a_channel_wise_snn_is_diagnosed_with_each_channels_lambda(tmp_path):
    ann = three_layer_net()
    snn = Converter("max", dataloader=[X], channel_wise=True)(ann)
    info = snn.meta[META_KEY]
    assert info["channel_wise_layers"] == ["if_1", "if_3", "if_5"]
    for layer, values in info["channel_lambdas"].items():  # λ_c = λ × ratio_c, the largest is λ
        assert len(values) == 32 and max(values) == pytest.approx(info["lambdas"][layer])
        assert min(values) < 0.9 * max(values)  # the channels' scales differ: one λ would be wrong
    T = 1000
    report = layer_fidelity(ann, snn, X, T=T)
    for row in report.layers:  # each channel divided by its own λ_c: exact to 1/T, as layer-wise
        assert row.per_channel and row.lam == pytest.approx(info["lambdas"][row.layer])
        assert row.correlation is not None and row.correlation >= 1 - 1 / T, row
        assert row.mae <= 1 / T and abs(row.mean_rate - row.mean_activation) <= 1 / T, row
    assert report.first_growing is None
    export_nir(snn, tmp_path / "cw.nir", T=16)
    loaded = import_nir(tmp_path / "cw.nir")
    assert loaded.meta[META_KEY]["channel_lambdas"] == info["channel_lambdas"]  # JSON keeps floats exactly
    expected = layer_fidelity(ann, snn, X, T=16).to_dict()
    assert layer_fidelity(ann, loaded, X, T=16).to_dict() == expected
    del snn.meta[META_KEY]["channel_lambdas"]["if_3"]  # converted before channel_lambdas was recorded
    with pytest.raises(ValueError, match="IF layer 'if_3' was scaled per channel but its per-channel λ"):
        layer_fidelity(ann, snn, X, T=4)


def test_channel_wise_lambdas_in_the_table_and_in_inspect(tmp_path):
    from ann2snn.diagnose import format_fidelity
    from ann2snn.nirinfo import describe_graph
    from exporters import read_nir

    ann = three_layer_net()
    snn = Converter("max", dataloader=[X], channel_wise=True)(ann)
    table = format_fidelity(layer_fidelity(ann, snn, X, T=8))
    for layer, lam in snn.meta[META_KEY]["lambdas"].items():
        if layer != "readout":
            assert f" {lam:.4g} (max, per channel) |" in table
    export_nir(snn, tmp_path / "cw.nir", T=8)
    shown = describe_graph(read_nir(tmp_path / "cw.nir"))["metadata"]["channel_lambdas"]
    lists = snn.meta[META_KEY]["channel_lambdas"]
    assert shown == "; ".join(f"{k}: 32 values [{min(v):.4g}, {max(v):.4g}]" for k, v in sorted(lists.items()))


def test_progress_is_called_once_per_batch_with_its_samples():
    ann = three_layer_net()
    done = []
    layer_fidelity(ann, convert(ann), X, T=4, batch_size=50, progress=done.append)
    assert done == [50, 50, 28]


def test_the_report_repr_is_a_line_per_layer():
    ann = three_layer_net()
    bad = layer_fidelity(ann, halve_lambda(convert(ann), "if_3", "2", "4"), X, T=8)
    lines = repr(bad).splitlines()
    assert lines[0] == f"FidelityReport: T=8, 128 samples, 3 IF layers, first growing layer: if_3 ({bad.reason})"
    assert [line.split(":")[0] for line in lines[1:]] == ["  if_1", "  if_3", "  if_5"]
    assert f"corr {bad.layers[1].correlation:.4f}, MAE {bad.layers[1].mae:.4f}" in lines[2]
    assert len(repr(bad)) < 500


def test_inputs_of_another_dtype_are_refused_naming_both():
    ann = three_layer_net()
    snn = convert(ann)
    pixels = (X * 255).to(torch.uint8)
    hint = r"convert them with x.to\(torch.float32\) \(8-bit pixels: x.float\(\) / 255\)"
    with pytest.raises(
        ValueError, match=r"calibration data: inputs of dtype torch.uint8 but the model's .*float32: " + hint
    ):
        Converter("max", dataloader=pixels)(ann)
    with pytest.raises(ValueError, match=r"calibration data: inputs of dtype torch.float64 .*x.to\(torch.float32\)$"):
        Converter("max", dataloader=X.double())(ann)
    with pytest.raises(
        ValueError, match=r"layer_fidelity: the inputs x do not fit the SNN: inputs of dtype torch.float64"
    ):
        layer_fidelity(ann, snn, X.double(), T=4)
    with pytest.raises(ValueError, match=r"spike_raster: inputs of dtype torch.uint8 .*" + hint):
        spike_raster(snn, pixels[0], 4, "if_1")
    double = Converter("max", dataloader=X.double())(copy.deepcopy(ann).double())  # a float64 model takes float64
    assert layer_fidelity(ann.double(), double, X.double(), T=16).first_growing is None


def test_batches_of_a_dict_or_an_array_are_refused_with_a_hint():
    from torch.utils.data import DataLoader

    rows = [{"image": X[i], "label": i % 4} for i in range(8)]
    with pytest.raises(TypeError, match=r"got dict with keys \['image', 'label'\]: give a DataLoader of tensors"):
        Converter("max", dataloader=DataLoader(rows, batch_size=4))(three_layer_net())
    with pytest.raises(TypeError, match=r"got ndarray: convert it with torch.from_numpy\(x\)"):
        Converter("max", dataloader=X.numpy())(three_layer_net())


def test_a_gradual_drift_over_depth_is_a_warning_when_no_layer_is_flagged():
    # the correlations diagnose measured on the CIFAR-10 VGG (99.9 %, T = 8, 20 images): no step
    # crosses a rule, but the last layer is 0.3 below the first
    rs = [0.978, 0.938, 0.884, 0.837, 0.767, 0.673]
    layers = [LayerFidelity(f"if_{i}", f"relu_{i}", 1.0, 10, r, 0.05, 0.0, 0.0, 0.2, 0.2) for i, r in enumerate(rs)]
    names = [f.layer for f in layers]
    assert growing_layer([f.mae for f in layers], names, T=8, correlations=rs) == (None, None)
    (warning,) = fidelity_warnings(layers, None)
    assert warning.startswith(
        "no single layer stands out, but the correlation falls gradually from 0.978 (if_0) to 0.767 (if_4)"
    )
    assert fidelity_warnings(layers, "if_2") == []  # a flagged layer is the answer
    assert fidelity_warnings(layers[:4], None) == []  # 0.978 -> 0.837: within 0.2
