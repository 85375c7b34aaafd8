"""SynOps, MACs and the energy report (simulator.synops, ann2snn.report, ann2snn report)."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ann2snn.cli import main
from ann2snn.report import PJ_PER_AC, PJ_PER_MAC, energy_report
from converter import Converter
from exporters import export_nir
from simulator import IFNeuron, Integrator, simulate
from simulator.graph import trace_snn
from simulator.synops import fan_outs, macs

#: Output windows covering each row: a 3×3, stride-2, padding-1 kernel on 6 rows (outputs
#: p = 0, 1, 2 read rows 2p-1 .. 2p+1); the same without padding (outputs p = 0, 1 read rows
#: 2p .. 2p+2: row 5 is read by none); a 3×3 stride-1 padding-1 kernel on 6 rows.
COVER_6 = torch.tensor([1.0, 2, 1, 2, 1, 1])
COVER_6_NO_PAD = torch.tensor([1.0, 1, 2, 1, 1, 0])
COVER_6_S1 = torch.tensor([2.0, 3, 3, 3, 3, 2])


def hand_net() -> nn.Module:
    """[1, 6, 6] → Conv(1→2, 3, pad 1) → IF a [2, 6, 6] → Conv(2→3, 3, stride 2, pad 1) → IF b [3, 3, 3]
    → AvgPool(2) [3, 1, 1] (row and column 2 dropped) → Flatten → Linear(3→4) → readout."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        IFNeuron(0.3),
        nn.Conv2d(2, 3, 3, stride=2, padding=1),
        IFNeuron(0.3),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3, 4),
        Integrator(),
    )
    with torch.no_grad():
        net[0].weight.abs_()
        net[2].weight.abs_()
    return net


def test_fan_outs_by_hand():
    fans = fan_outs(hand_net(), (1, 6, 6))
    assert torch.equal(fans["input"][0], 2 * torch.outer(COVER_6_S1, COVER_6_S1).double())  # 2 out channels
    assert torch.equal(fans["1"][1], 3 * torch.outer(COVER_6, COVER_6).double())  # 3 out channels, stride 2
    pooled = torch.zeros(3, 3, dtype=torch.float64)
    pooled[:2, :2] = 4  # the pool keeps the top-left 2×2; each pooled neuron drives 4 outputs
    assert torch.equal(fans["3"][2], pooled)


def test_fan_out_stride_without_padding_leaves_a_border_unread():
    net = nn.Sequential(IFNeuron(), nn.Conv2d(1, 2, 3, stride=2))
    assert torch.equal(fan_outs(net, (1, 6, 6))["0"][0], 2 * torch.outer(COVER_6_NO_PAD, COVER_6_NO_PAD).double())


def test_macs_by_hand():
    assert macs(hand_net(), (1, 6, 6)) == {"0": 36 * 2 * 9, "2": 9 * 3 * 2 * 9, "6": 3 * 4}


def test_report_synops_and_spikes_equal_hand_counts_of_a_full_recording():
    net, x, T = hand_net(), torch.rand(5, 1, 6, 6), 12
    recorded = simulate(net, x, T, record=True).spikes
    counts = {k: v.double().sum((0, 1)) for k, v in recorded.items()}  # [C, H, W] summed over t and samples
    hand_a = (counts["1"] * 3 * torch.outer(COVER_6, COVER_6)).sum()
    hand_b = (counts["3"][:, :2, :2] * 4).sum()
    report = energy_report(net, [x[:2], x[2:]], T, input_shape=(1, 6, 6))
    rows = {r.layer: r for r in report.layers}
    assert rows["1"].synops * 5 == pytest.approx(float(hand_a), abs=1e-9)
    assert rows["3"].synops * 5 == pytest.approx(float(hand_b), abs=1e-9)
    assert rows["1"].spikes * 5 == pytest.approx(float(recorded["1"].sum()))
    assert report.spikes * 5 == pytest.approx(float(sum(v.sum() for v in recorded.values())))
    assert rows["1"].ann_macs == 9 * 3 * 2 * 9 and rows["3"].ann_macs == 12 and rows["input"].ann_macs == 648
    assert rows["1"].fan_in == 9 and rows["3"].fan_in == 18  # synapses into each neuron
    assert rows["1"].firing_rate == pytest.approx(rows["1"].spikes_per_neuron / T)
    assert report.analog_input_macs == 648 and report.ann_macs == 648 + 486 + 12
    assert report.snn_energy_pj == pytest.approx(PJ_PER_AC * report.synops + PJ_PER_MAC * 648)
    assert report.ann_energy_pj == pytest.approx(PJ_PER_MAC * report.ann_macs)


def test_residual_skip_counts_one_synapse_per_neuron():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0, self.if0 = nn.Conv2d(1, 2, 1), IFNeuron()
            self.conv1, self.if1 = nn.Conv2d(2, 2, 3, padding=1), IFNeuron()

        def forward(self, x):
            a = self.if0(self.conv0(x))
            return self.if1(self.conv1(a) + a)

    fans = fan_outs(Skip(), (1, 4, 4))
    assert torch.equal(fans["if0"][0], 2 * torch.outer(*[torch.tensor([2.0, 3, 3, 2])] * 2).double() + 1)


def _seed_nir(tmp_path):
    from ann2snn.zoo import load_embedded, load_mnist_cnn

    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").loader(250))(load_mnist_cnn())
    return export_nir(snn, tmp_path / "cnn.nir", T=8)


def test_report_command_json_and_plot(tmp_path):
    path = _seed_nir(tmp_path)
    png = tmp_path / "ops.png"
    result = CliRunner().invoke(main, ["report", str(path), "--limit", "20", "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["T"] == 8 and data["samples"] == 20
    assert [r["layer"] for r in data["layers"]] == ["input", "if_network_2", "if_network_6", "if_network_10"]
    assert data["energy"]["label"] == "arithmetic only" and "memory access is not counted" in data["energy"]["note"]
    assert data["layers"][0]["ann_macs"] == 26 * 26 * 32 * 9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = CliRunner().invoke(main, ["report", str(path), "--limit", "10", "--T", "4", "--quiet"])
    assert text.exit_code == 0, text.output
    assert "arithmetic only" in text.output and "if_network_6" in text.output


def test_report_command_bad_T(tmp_path):
    path = _seed_nir(tmp_path)
    result = CliRunner().invoke(main, ["report", str(path), "--T", "0"])
    assert result.exit_code == 2 and "--T" in result.output


@pytest.mark.parametrize("encoding", ["rate", "poisson"])
def test_report_counts_input_events(encoding):
    # identity weights into IF neurons of threshold 1 and V[0] = 0: each input spike makes one spike
    first = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
    net = trace_snn(nn.Sequential(first, IFNeuron(1.0), nn.Linear(4, 2), Integrator()))
    net.meta["ann2snn"] = {"input_encoding": encoding, "input_shape": [4]}
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(5))
    report = energy_report(net, [x[:5], x[5:]], T=12)
    rows = {r.layer: r for r in report.layers}
    assert rows["input"].spikes == rows["1"].spikes > 0
    assert rows["input"].synops == 4 * rows["input"].spikes  # each input event drives 4 synapses
    assert report.analog_input_macs == 0
    assert report.spikes == rows["input"].spikes + rows["1"].spikes
    if encoding == "rate":  # round(T x) spikes per value (floor(T x + 1/2))
        assert rows["input"].spikes * 8 == torch.floor(12 * x.double() + 0.5).sum().item()
