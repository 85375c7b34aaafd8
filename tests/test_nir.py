import h5py
import nir
import numpy as np
import pytest
import torch
from torch import nn

from converter import Converter
from exporters import ExportError, NIRImportError, compare_spike_counts, export_nir, import_nir, to_nir, verify_file
from simulator import IFNeuron, simulate
from tests.nets import cnn, inputs, mlp, randomize_bn


def _snn(make, shape):
    x = inputs(shape, 32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=8)
    return Converter(mode="99.9%", dataloader=loader)(randomize_bn(make())), x


@pytest.mark.parametrize("make,shape", [(mlp, (1, 4, 4)), (cnn, (1, 8, 8))])
def test_export_import_gives_identical_spike_counts(tmp_path, make, shape):
    snn, x = _snn(make, shape)
    path = export_nir(snn, tmp_path / "net.nir", T=40)
    nir.read(path, type_check=True)
    report = compare_spike_counts(snn, import_nir(path), x, 40)
    assert report.equal and report.max_count_diff == 0 and report.layers == 3  # + the membrane readout


def test_linear_bias_comes_back_exact(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), IFNeuron())
    model[0].weight.data = torch.tensor([[0.5, -0.25], [1.5, 2.0]])
    model[0].bias.data = torch.tensor([7.0, -9.0])
    path = export_nir(model, tmp_path / "lin.nir", input_shape=(2,))
    back = import_nir(path)
    layer = next(m for m in back.modules() if isinstance(m, nn.Linear))
    assert layer.bias.tolist() == [7.0, -9.0]
    assert torch.equal(layer.weight, model[0].weight)


def test_input_type_has_no_batch_axis_and_any_batch_runs(tmp_path):
    snn, x = _snn(cnn, (1, 8, 8))
    path = export_nir(snn, tmp_path / "cnn.nir", T=10)
    graph = nir.read(path)
    assert graph.nodes["input"].input_type["input"].tolist() == [1, 8, 8]
    back = import_nir(path)
    for batch in (1, 7):
        assert simulate(back, x[:batch], 10).outputs.shape == (10, batch, 10)


def test_if_nodes_are_full_shape_with_semantics_metadata(tmp_path):
    snn, _ = _snn(cnn, (1, 8, 8))
    graph = nir.read(export_nir(snn, tmp_path / "cnn.nir", T=25))
    ifs = {k: n for k, n in graph.nodes.items() if isinstance(n, nir.IF)}
    first = ifs["if_2"]  # the IF layer that replaced ReLU module "2"
    assert first.v_threshold.shape == first.r.shape == first.v_reset.shape == (8, 8, 8)
    assert first.metadata["reset"] in (b"subtract", "subtract")
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in graph.metadata.items()}
    assert meta["T"] == 25 and meta["mode"] == "99.9%" and meta["input_encoding"] == "constant"


def test_v_init_and_rule_are_honoured_on_import(tmp_path):
    model = nn.Sequential(nn.Linear(1, 1), IFNeuron(v_init=0.5, spike_rule=">"))
    back = import_nir(export_nir(model, tmp_path / "n.nir", input_shape=(1,)))
    neuron = next(m for m in back.modules() if isinstance(m, IFNeuron))
    assert (neuron.v_init, neuron.spike_rule, neuron.reset) == (0.5, ">", "subtract")


def test_file_without_our_metadata_uses_nir_semantics(tmp_path):
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.eye(1, dtype=np.float32), bias=np.zeros(1, dtype=np.float32)),
        nir.IF(r=np.ones(1, dtype=np.float32), v_threshold=np.ones(1, dtype=np.float32)),
    )
    nir.write(tmp_path / "plain.nir", graph)
    back = import_nir(tmp_path / "plain.nir")
    # NIR semantics: strict v > 1 and reset to zero: input 0.5 fires at t = 3 and t = 6 only
    out = simulate(back, torch.tensor([[0.5]]), 6).outputs.flatten().tolist()
    assert out == [0, 0, 1, 0, 0, 1]


def test_unknown_reset_value_names_node_and_key(tmp_path):
    node = nir.IF(r=np.ones(2, dtype=np.float32), v_threshold=np.ones(2, dtype=np.float32), metadata={"reset": "foo"})
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "neuron": node,
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "neuron"), ("neuron", "output")],
    )
    nir.write(tmp_path / "foo.nir", graph)
    with pytest.raises(NIRImportError, match="'neuron'.*'reset'.*'foo'"):
        import_nir(tmp_path / "foo.nir")


def test_unsupported_nir_node_is_named_not_dropped(tmp_path):
    graph = nir.NIRGraph.from_list(
        nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    )
    nir.write(tmp_path / "lif.nir", graph)
    with pytest.raises(NIRImportError, match="'lif'.*LIF"):
        import_nir(tmp_path / "lif.nir")


def test_not_a_nir_file(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"this is not HDF5")
    with pytest.raises(NIRImportError, match="not a NIR file"):
        import_nir(bad)
    with h5py.File(tmp_path / "empty.nir", "w"):
        pass
    with pytest.raises(NIRImportError, match="not a NIR file"):
        import_nir(tmp_path / "empty.nir")


def test_failed_export_leaves_no_file(tmp_path):
    model = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.Tanh()))
    target = tmp_path / "tanh.nir"
    with pytest.raises(ExportError, match=r"'1' \(Tanh\)"):
        export_nir(model, target, input_shape=(2,))
    assert list(tmp_path.iterdir()) == []


def test_export_without_input_shape_is_refused():
    model = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ExportError, match="input shape"):
        to_nir(model)


def test_files_carry_a_reference_vector_that_reproduces(tmp_path):
    snn, x = _snn(cnn, (1, 8, 8))
    path = export_nir(snn, tmp_path / "ref.nir", T=12, reference_inputs=x[:3])
    check = verify_file(path)
    assert check.equal and check.max_abs_diff == 0.0 and (check.T, check.samples) == (12, 3)
    with h5py.File(path, "r+") as f:  # tamper with one reference value
        data = f["node/metadata/reference_output"]
        values = data[()]
        values[-1, 0, 0] += 0.5
        data[...] = values
    tampered = verify_file(path)
    assert not tampered.equal and tampered.max_abs_diff == pytest.approx(0.5)


@pytest.mark.parametrize("profile", ["exact", "portable", "recurrent"])
def test_every_profile_embeds_the_reference_a_reader_of_the_file_computes(tmp_path, profile):
    torch.manual_seed(3)
    snn = nn.Sequential(
        nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(18, 3), IFNeuron(v_init=0.5)
    )
    path = export_nir(snn, tmp_path / f"{profile}.nir", T=15, input_shape=(1, 8, 8), profile=profile)
    check = verify_file(path)  # reruns the reference inputs through import_nir(path)
    assert check.equal and check.max_abs_diff == 0.0 and check.T == 15


def test_file_without_reference_vector_is_reported(tmp_path):
    snn, _ = _snn(mlp, (1, 4, 4))
    with pytest.raises(ValueError, match="no reference vector"):
        verify_file(export_nir(snn, tmp_path / "noref.nir"))
