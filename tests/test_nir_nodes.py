"""Export → import → simulate for every node type we map, with non-zero biases, and files
built by hand the way other tools write them."""

import nir
import numpy as np
import pytest
import torch
from torch import nn

from exporters import compare_spike_counts, export_nir, import_nir
from simulator import IFNeuron, Integrator, simulate


def _randomize(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(5)
    for p in model.parameters():
        p.data = torch.rand(p.shape, generator=g) * 0.6 - 0.1  # non-zero biases, mostly positive
    return model


CASES = {
    "linear+if": (lambda: nn.Sequential(nn.Linear(6, 5), IFNeuron(v_init=0.5)), (6,)),
    "linear-no-bias": (lambda: nn.Sequential(nn.Linear(6, 5, bias=False), IFNeuron()), (6,)),
    "conv1d": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=1),
            IFNeuron(),
            nn.Flatten(),
            nn.Linear(3 * 5, 2),
            Integrator(),
        ),
        (2, 10),
    ),
    "conv2d-dilation": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=2, dilation=2),
            IFNeuron(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 3),
            IFNeuron(reset="zero", spike_rule=">"),
        ),
        (2, 8, 8),
    ),
    "conv2d-stride": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), IFNeuron(), nn.Flatten(), Integrator()),
        (1, 9, 9),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_simulates_identically(tmp_path, case):
    make, shape = CASES[case]
    model = _randomize(make())
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(6))
    path = export_nir(model, tmp_path / f"{case}.nir", input_shape=shape)
    nir.read(path, type_check=True)
    back = import_nir(path)
    report = compare_spike_counts(model, back, x, 15)
    assert report.equal, report
    assert simulate(model, x, 15).outputs.abs().sum() > 0  # the case is not trivially silent


def _write(tmp_path, nodes, edges, name="hand.nir"):
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    nir.write(tmp_path / name, graph)
    return tmp_path / name


def _io(n):
    return nir.Input(input_type={"input": np.array([n])}), nir.Output(output_type={"output": np.array([n])})


def test_sumpool_scale_and_linear_nodes_from_other_writers(tmp_path):
    inp = nir.Input(input_type={"input": np.array([1, 4, 4])})
    nodes = {
        "input": inp,
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=0, end_dim=-1),
        "scale": nir.Scale(scale=np.full(4, 0.5, dtype=np.float32)),
        "lin": nir.Linear(weight=np.eye(4, dtype=np.float32)),
        "if": nir.IF(
            r=np.ones(4, dtype=np.float32),
            v_threshold=np.ones(4, dtype=np.float32),
            v_reset=np.zeros(4, dtype=np.float32),
        ),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "pool"), ("pool", "flat"), ("flat", "scale"), ("scale", "lin"), ("lin", "if"), ("if", "output")]
    back = import_nir(_write(tmp_path, nodes, edges))
    x = torch.full((1, 1, 4, 4), 0.3)  # each 2x2 sum = 1.2, scaled to 0.6 per step
    counts = simulate(back, x, 10).outputs.sum(0)
    # NIR semantics (strict >, reset to 0): v = 0.6, 1.2 -> spike, so one spike every 2 steps
    assert counts.tolist() == [[5.0, 5.0, 5.0, 5.0]]


def test_residual_sum_of_edges(tmp_path):
    inp, out = _io(2)
    eye = np.eye(2, dtype=np.float32)
    nodes = {
        "input": inp,
        "a": nir.Affine(weight=eye, bias=np.array([0.1, 0.2], dtype=np.float32)),
        "b": nir.Linear(weight=2 * eye),
        "i": nir.I(r=np.ones(2, dtype=np.float32)),
        "output": out,
    }
    edges = [("input", "a"), ("input", "b"), ("a", "i"), ("b", "i"), ("i", "output")]
    back = import_nir(_write(tmp_path, nodes, edges))
    result = simulate(back, torch.tensor([[1.0, 2.0]]), 3)
    assert result.readout == "membrane"
    expected = torch.tensor([[3.1, 6.2], [6.2, 12.4], [9.3, 18.6]])
    assert torch.allclose(result.outputs[:, 0], expected, atol=1e-5)


def test_nested_graph_is_inlined(tmp_path):
    inp, out = _io(2)
    inner_in, inner_out = _io(2)
    inner = nir.NIRGraph(
        nodes={"in": inner_in, "lin": nir.Linear(weight=np.eye(2, dtype=np.float32) * 3), "out": inner_out},
        edges=[("in", "lin"), ("lin", "out")],
    )
    nodes = {"input": inp, "sub": inner, "i": nir.I(r=np.ones(2, dtype=np.float32)), "output": out}
    back = import_nir(_write(tmp_path, nodes, [("input", "sub"), ("sub", "i"), ("i", "output")]))
    assert simulate(back, torch.tensor([[1.0, -1.0]]), 2).outputs[-1, 0].tolist() == [6.0, -6.0]


def test_file_without_v_reset_loads_with_zero(tmp_path):
    inp, out = _io(1)
    nodes = {
        "input": inp,
        "if": nir.IF(r=np.ones(1, dtype=np.float32), v_threshold=np.ones(1, dtype=np.float32)),
        "output": out,
    }
    path = _write(tmp_path, nodes, [("input", "if"), ("if", "output")])
    import h5py

    with h5py.File(path, "r+") as f:
        del f["node/nodes/if/v_reset"]
    with pytest.warns(UserWarning, match="no 'v_reset' field; assumed v_reset = 0"):
        neuron = next(m for m in import_nir(path).modules() if isinstance(m, IFNeuron))
    assert neuron.v_reset.tolist() == [0.0] and neuron.reset == "zero" and neuron.spike_rule == ">"


def test_grouped_conv_is_written_as_an_equivalent_dense_conv(tmp_path):
    model = _randomize(nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), IFNeuron()))
    path = export_nir(model, tmp_path / "g.nir", input_shape=(4, 5, 5))
    node = nir.read(path, type_check=True).nodes["0"]
    assert node.weight.shape == (6, 4, 3, 3) and int(node.groups) == 1 and int(node.metadata["groups"]) == 2
    assert np.all(node.weight[:3, 2:] == 0) and np.all(node.weight[3:, :2] == 0)
    x = torch.rand(8, 4, 5, 5, generator=torch.Generator().manual_seed(3)).double()
    assert compare_spike_counts(model.double(), import_nir(path).double(), x, 10).equal


def test_portable_profile_folds_avgpool_and_scale_and_reproduces(tmp_path):
    from ann2snn.zoo import load_embedded, load_mnist_cnn
    from converter import Converter
    from exporters import verify_file

    calib = load_embedded("calib").subset(200)
    snn = Converter(mode="99.9%", dataloader=calib.loader(100))(load_mnist_cnn())
    path = export_nir(snn, tmp_path / "portable.nir", T=20, profile="portable")
    graph = nir.read(path)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert "AvgPool2d" not in kinds and "SumPool2d" in kinds
    assert verify_file(path).equal
    x = load_embedded("test").images[:50]
    exact = simulate(snn, x, 20)
    portable = simulate(import_nir(path), x, 20)
    differing = sum(int((exact.spike_counts[k] != portable.spike_counts[k]).sum()) for k in exact.spike_counts)
    total = sum(c.numel() for c in exact.spike_counts.values())
    assert differing / total <= 1e-4  # float32: x·(w/4) and (x/4)·w can round apart
    assert torch.equal(exact.predictions()[-1], portable.predictions()[-1])


def test_portable_profile_folds_a_scale_into_the_next_linear(tmp_path):
    from simulator import Scale

    model = _randomize(
        nn.Sequential(nn.Linear(4, 4), IFNeuron(), Scale(torch.full((4,), 0.5)), nn.Linear(4, 3), IFNeuron())
    )
    path = export_nir(model, tmp_path / "scale.nir", input_shape=(4,), profile="portable")
    graph = nir.read(path)
    assert not any(isinstance(n, nir.Scale) for n in graph.nodes.values())
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(7))
    assert compare_spike_counts(model.double(), import_nir(path).double(), x.double(), 12).equal


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        export_nir(nn.Sequential(nn.Linear(2, 2), IFNeuron()), tmp_path / "p.nir", input_shape=(2,), profile="tiny")
    assert list(tmp_path.iterdir()) == []


def test_portable_profile_writes_a_residual_scale_as_a_diagonal_conv(tmp_path):
    from ann2snn.zoo import load_embedded, load_mnist_resnet
    from converter import Converter

    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").subset(100).loader(100))(load_mnist_resnet())
    path = export_nir(snn, tmp_path / "res.nir", T=10, profile="portable")
    graph = nir.read(path)
    assert sorted({type(n).__name__ for n in graph.nodes.values()}) == [
        "Affine",
        "Conv2d",
        "Flatten",
        "I",
        "IF",
        "Input",
        "Output",
        "SumPool2d",
    ]
    assert isinstance(graph.nodes["pool2"], nir.SumPool2d)  # its 1/4 went into conv_a and the skip's Scale
    skip = graph.nodes["scale_add_2_pool2"]  # the Scale on the identity skip: a diagonal 1x1 conv
    assert isinstance(skip, nir.Conv2d) and skip.weight.shape == (16, 16, 1, 1) and np.count_nonzero(skip.weight) == 16
    factor = snn.get_submodule("scale_add_2_pool2").scale.flatten()[0].item() / 4
    assert np.allclose(skip.weight[np.arange(16), np.arange(16)], factor)
    x = load_embedded("test").images[:40].double()
    report = compare_spike_counts(snn.double(), import_nir(path).double(), x, 10)
    assert report.max_count_diff == 0 and report.max_output_diff < 1e-5  # weights folded in float32


def test_portable_profile_writes_a_pool_feeding_a_sum_as_a_diagonal_conv(tmp_path):
    class Join(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.pool, self.if1, self.if2 = (
                nn.Conv2d(1, 3, 3),
                nn.Conv2d(3, 3, 2, stride=2),
                nn.AvgPool2d(2),
                IFNeuron(),
                IFNeuron(),
            )

        def forward(self, x):
            s = self.if1(self.a(x))
            return self.if2(self.pool(s) + self.b(s))

    model = _randomize(Join())
    path = export_nir(model, tmp_path / "join.nir", input_shape=(1, 6, 6), profile="portable")
    pool = nir.read(path).nodes["pool"]
    assert isinstance(pool, nir.Conv2d) and pool.weight.shape == (3, 3, 2, 2) and np.count_nonzero(pool.weight) == 12
    assert np.all(pool.weight[np.arange(3), np.arange(3)] == 0.25) and list(pool.stride) == [2, 2]
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(2)).double()
    assert compare_spike_counts(model.double(), import_nir(path).double(), x, 12).equal
