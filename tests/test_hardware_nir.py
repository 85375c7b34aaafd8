"""NIR export/import of hardware-ready SNNs: integer state, saturation, rate-coded spike input."""

import copy
import json

import nir
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ann2snn.cli import main
from converter import quantize
from exporters import NIRImportError, export_nir, import_nir, read_nir, verify_file
from simulator import IFNeuron, Integrator, simulate
from simulator.graph import trace_snn


def _hardware_net():
    """A 6-bit quantised MLP whose first IF layer saturates narrowly enough to change spikes,
    converted for rate-coded input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), IFNeuron(1.0, v_init=0.5), nn.Linear(8, 3), Integrator())
    q = quantize(trace_snn(net), weight_bits=6)
    q.meta["ann2snn"]["input_encoding"] = "rate"
    q.meta["ann2snn"]["input_shape"] = [6]
    layer = q.get_submodule("1")
    layer.state_bits = int(layer.v_threshold.max()).bit_length() + 1
    return q


def _x():
    return torch.rand(64, 6, generator=torch.Generator().manual_seed(3))


def test_round_trip_keeps_params_encoding_and_spikes(tmp_path):
    q = _hardware_net()
    x = _x()
    free = copy.deepcopy(q)
    free.get_submodule("1").state_bits = None
    ours, unsaturated = simulate(q, x, 20, record=True), simulate(free, x, 20, record=True)
    assert int((ours.spikes["1"] != unsaturated.spikes["1"]).sum()) > 0  # saturation matters here
    path = export_nir(q, tmp_path / "hw.nir", T=20)
    back = import_nir(path)
    theirs = simulate(back, x, 20, record=True)  # the file's encoding: rate
    assert torch.equal(ours.spikes["1"], theirs.spikes["1"])
    assert torch.equal(ours.outputs, theirs.outputs)
    a, b = q.get_submodule("1"), back.get_submodule("1")
    assert (b.state_bits, b.integer, b.v_init) == (a.state_bits, True, 0.5)
    assert torch.equal(a.v_threshold.expand(8), b.v_threshold) and torch.equal(a.v_reset.expand(8), b.v_reset)
    assert torch.equal(a.v_threshold.round(), a.v_threshold)  # integer-valued, as quantize made it
    for name in ("0", "2"):
        assert torch.equal(q.get_submodule(name).weight, back.get_submodule(name).weight)
        assert torch.equal(q.get_submodule(name).bias, back.get_submodule(name).bias)
    meta = back.meta["ann2snn"]
    assert meta["input_encoding"] == "rate" and meta["weight_bits"] == 6
    assert meta["quantization"] == q.meta["ann2snn"]["quantization"]
    assert verify_file(path).equal


def test_graph_states_where_events_enter(tmp_path):
    graph = read_nir(export_nir(_hardware_net(), tmp_path / "hw.nir"))
    meta = graph.nodes["input"].metadata
    assert (str(meta["encoding"]), bool(meta["events"])) == ("rate", True)
    assert str(graph.metadata["input_encoding"]) == "rate"
    node = graph.nodes["1"].metadata
    assert (int(node["state_bits"]), bool(node["integer"])) == (_hardware_net().get_submodule("1").state_bits, True)
    analog = nn.Sequential(nn.Linear(6, 3), IFNeuron())
    plain = read_nir(export_nir(analog, tmp_path / "analog.nir", input_shape=(6,)))
    assert bool(plain.nodes["input"].metadata["events"]) is False
    assert "state_bits" not in plain.nodes["1"].metadata and "integer" not in plain.nodes["1"].metadata


def test_nir_reader_rules_drop_saturation(tmp_path):
    back = import_nir(export_nir(_hardware_net(), tmp_path / "hw.nir"), semantics="nir")
    layer = back.get_submodule("1")
    assert (layer.state_bits, layer.integer) == (None, False)


def _rewrite(tmp_path, node_meta=None, graph_meta=None):
    graph = read_nir(export_nir(_hardware_net(), tmp_path / "hw.nir"))
    graph.nodes["1"].metadata.update(node_meta or {})
    graph.metadata.update(graph_meta or {})
    path = tmp_path / "bad.nir"
    nir.write(path, graph)
    return path


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"state_bits": 1}, r"NIR node '1': metadata 'state_bits' = 1 must be from 2 to 53"),
        ({"state_bits": 2.5}, r"NIR node '1': metadata 'state_bits' = 2.5 is not a whole number"),
        ({"state_bits": "wide"}, r"NIR node '1': metadata 'state_bits' = 'wide' is not a whole number"),
        ({"state_bits": 3}, r"NIR node '1': state_bits=3 holds potentials up to 3, but v_threshold reaches"),
        ({"integer": "yes"}, r"NIR node '1': metadata 'integer' = 'yes' is not a boolean"),
    ],
)
def test_bad_if_metadata_refused(tmp_path, meta, message):
    with pytest.raises(NIRImportError, match=message):
        import_nir(_rewrite(tmp_path, node_meta=meta))


def test_unknown_input_encoding_refused(tmp_path):
    path = _rewrite(tmp_path, graph_meta={"input_encoding": "morse"})
    expected = r"bad.nir: graph metadata 'input_encoding' = 'morse' is not one of \('constant', 'rate', 'poisson'\)"
    with pytest.raises(NIRImportError, match=expected):
        import_nir(path)


def test_inspect_shows_encoding_and_bit_widths(tmp_path):
    q = _hardware_net()
    path = export_nir(q, tmp_path / "hw.nir")
    bits = q.get_submodule("1").state_bits
    out = CliRunner().invoke(main, ["inspect", str(path)])
    assert out.exit_code == 0, out.output
    assert f"input: rate (spike events enter at node 'input'); weight bits: 6; state bits: {bits}" in out.output
    threshold = int(q.meta["ann2snn"]["quantization"]["layers"]["1"]["threshold"])
    assert f"| 1        |         {bits:2d} |    True |" in out.output and f"| {threshold:4d} |" in out.output
    data = json.loads(CliRunner().invoke(main, ["inspect", str(path), "--json"]).output)
    assert data["hardware"]["layers"][0] | {"factor": None} == {
        "layer": "1",
        "state_bits": bits,
        "integer": True,
        "factor": None,
        "threshold": threshold,
        "threshold_bits": threshold.bit_length() + 1,
        "v_init": round(threshold / 2),
    }
