"""The portable profile's layout for depth-first executors (:func:`exporters.profiles.depth_first_layout`).

Norse 1.1.0 and Sinabs 3.1.3 load a file through nirtorch 2.6's ``GraphExecutor``, which runs
the nodes in the pre-order of a depth-first walk from the Input (``graph_utils.trace_execution``,
successors in edge order) and returns the node run last.
:func:`interop.harness.nirtorch_order` replays that walk here (no reader needed); the readers
themselves run these files in ``tests/test_interop.py`` (``-m interop``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import nn

from exporters import compare_spike_counts, export_nir, import_nir, profiles
from exporters.nir_graph import predecessors
from exporters.nir_torch import graph_to_snn
from exporters.profiles import ProfileError, apply_profile, depth_first_layout
from simulator import IFNeuron, Scale, simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop.harness import late_sources as _late_sources  # noqa: E402
from interop.harness import nirtorch_order as _nirtorch_order  # noqa: E402


def _runs_in_order(graph: nir.NIRGraph) -> None:
    order = _nirtorch_order(graph)
    assert sorted(order) == sorted(graph.nodes), "the walk misses nodes"
    assert _late_sources(graph) == []
    assert isinstance(graph.nodes[order[-1]], nir.Output), f"the executor would return {order[-1]!r}"


def _zero_nodes(graph: nir.NIRGraph) -> list[str]:
    return [n for n, node in graph.nodes.items() if "zero_node" in (node.metadata or {})]


class Block(nn.Module):
    """Input (4) → Linear → IF → {Linear → IF → Linear} + skip → IF: the smallest residual SNN.
    ``skip``: ``"scale"`` (a Scale on the skip, as the converter writes it), ``"linear"`` (a
    projection), ``"identity"``."""

    def __init__(self, skip: str) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.if1, self.if2, self.if3 = IFNeuron(), IFNeuron(), IFNeuron()
        self.skip = {"scale": Scale(torch.full((4,), 0.5)), "linear": nn.Linear(4, 4), "identity": None}[skip]

    def forward(self, x):
        h = self.if1(self.a(x))
        return self.if3(self.c(self.if2(self.b(h))) + (h if self.skip is None else self.skip(h)))


def _block(skip: str) -> nn.Module:
    g = torch.Generator().manual_seed(11)
    model = Block(skip)
    for p in model.parameters():
        p.data = torch.rand(p.shape, generator=g) * 0.6
    return model


def _unlaid(monkeypatch, fn):
    """``fn()`` with the portable profile's layout step switched off (the profile before it)."""
    with monkeypatch.context() as m:
        m.setattr(profiles, "depth_first_layout", lambda graph: graph)
        return fn()


def _same_simulation(a: nn.Module, b: nn.Module, x: torch.Tensor, T: int) -> None:
    """Bit for bit: every spike count and every per-step output."""
    ra, rb = simulate(a, x, T), simulate(b, x, T)
    assert ra.spike_counts.keys() == rb.spike_counts.keys()
    for k in ra.spike_counts:
        assert torch.equal(ra.spike_counts[k], rb.spike_counts[k]), k
    assert torch.equal(ra.outputs, rb.outputs)


@pytest.mark.parametrize("skip", ["scale", "linear"])
def test_a_skip_with_its_own_node_gets_one_zero_node(tmp_path, monkeypatch, skip):
    model = _block(skip)
    before = _unlaid(
        monkeypatch, lambda: export_nir(model, tmp_path / "before.nir", input_shape=(4,), profile="portable")
    )
    old = nir.read(before)
    # no edge order makes the walk run the skip's node before the join: the join has two
    # sources, neither of which reaches the other
    assert _late_sources(old) != []
    path = export_nir(model, tmp_path / "after.nir", input_shape=(4,), profile="portable")
    graph = nir.read(path)
    _runs_in_order(graph)
    (zero,) = _zero_nodes(graph)
    node = graph.nodes[zero]
    assert isinstance(node, nir.Affine) and not node.weight.any() and not node.bias.any()
    assert zero == "c.order" and predecessors(graph.edges, zero) == ["c"]
    # it feeds the skip's node, which then runs after the long branch and before the join
    (target,) = [b for a, b in graph.edges if a == zero]
    assert target == "skip"
    assert predecessors(graph.edges, "skip") == ["if1", zero]
    assert predecessors(graph.edges, "if3") == predecessors(old.edges, "if3")  # the join sums in the same order
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(3))
    for dtype in (torch.float32, torch.float64):
        _same_simulation(import_nir(before).to(dtype), import_nir(path).to(dtype), x.to(dtype), 20)
    assert compare_spike_counts(model.double(), import_nir(path).double(), x.double(), 20).equal


def test_an_identity_skip_needs_only_the_edge_order(tmp_path):
    model = _block("identity")
    graph = nir.read(export_nir(model, tmp_path / "id.nir", input_shape=(4,), profile="portable"))
    _runs_in_order(graph)
    assert _zero_nodes(graph) == []
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(3)).double()
    assert compare_spike_counts(model.double(), import_nir(tmp_path / "id.nir").double(), x, 20).equal


def test_the_edge_order_alone_decides_for_an_identity_skip():
    """The skip edge listed before the long branch: the walk reaches the join from the skip
    first; the layout lists the long branch first."""
    n = 3
    w = np.eye(n, dtype=np.float32)

    def IF():
        return nir.IF(r=np.ones(n, np.float32), v_threshold=np.ones(n, np.float32), v_reset=np.zeros(n, np.float32))

    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input({"input": np.array([n])}),
            "if1": IF(),
            "b": nir.Affine(weight=w, bias=np.zeros(n, np.float32)),
            "if2": IF(),
            "output": nir.Output({"output": np.array([n])}),
        },
        edges=[("input", "if1"), ("if1", "if2"), ("if1", "b"), ("b", "if2"), ("if2", "output")],
    )
    assert _late_sources(graph) == [("b", "if2")]
    laid = depth_first_layout(graph)
    _runs_in_order(laid)
    assert list(laid.nodes) == list(graph.nodes)
    assert laid.edges == [("input", "if1"), ("if1", "b"), ("if1", "if2"), ("b", "if2"), ("if2", "output")]


def test_chains_are_left_as_they_are(tmp_path, monkeypatch):
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(18, 3), IFNeuron(v_init=0.5)
    )
    args = dict(input_shape=(1, 8, 8), profile="portable")
    before = nir.read(_unlaid(monkeypatch, lambda: export_nir(model, tmp_path / "b.nir", **args)))
    after = nir.read(export_nir(model, tmp_path / "a.nir", **args))
    assert list(after.nodes) == list(before.nodes) and after.edges == before.edges
    _runs_in_order(after)


def test_the_residual_example_runs_in_order_and_simulates_bit_for_bit(tmp_path, monkeypatch):
    from ann2snn.zoo import load_embedded, load_mnist_resnet
    from converter import Converter

    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").subset(64).loader(64), readout="spike_count")(
        load_mnist_resnet()
    )
    before = nir.read(_unlaid(monkeypatch, lambda: export_nir(snn, tmp_path / "b.nir", profile="portable")))
    # the three skips (two diagonal Scale convs, one 1x1 projection) each reach their join late
    assert sorted(_late_sources(before)) == [
        ("block2.shortcut.0", "if_relu_3"),
        ("scale_add_2_pool2", "if_relu_5"),
        ("scale_add_stem_2", "if_relu_1"),
    ]
    assert not isinstance(before.nodes[_nirtorch_order(before)[-1]], nir.Output)
    path = export_nir(snn, tmp_path / "a.nir", profile="portable")
    graph = nir.read(path)
    _runs_in_order(graph)
    zeros = _zero_nodes(graph)
    assert zeros == ["block1.conv_b.order", "block2.conv_b.order", "block3.conv_b.order"]
    shapes = [graph.nodes[z].weight.shape for z in zeros]
    assert shapes == [(8, 8, 1, 1), (8, 16, 1, 1), (16, 16, 1, 1)]  # into the skip's node: C_out -> C_in
    assert all(not graph.nodes[z].weight.any() and not graph.nodes[z].bias.any() for z in zeros)
    x = load_embedded("test").images[:6]
    for dtype in (torch.float32, torch.float64):  # the function is the same bit for bit
        _same_simulation(import_nir(tmp_path / "b.nir").to(dtype), import_nir(path).to(dtype), x.to(dtype), 12)


def test_a_zero_node_changes_the_spatial_size_with_kernel_and_padding(tmp_path):
    """A pool feeding a sum (a diagonal conv, 3×2×2) walked first: the zero node goes from
    its 3×2×2 output to the 3×4×4 input of the other branch's conv: a 1×1 kernel, padding 1."""

    class Join(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.pool = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 3, 2, stride=2), nn.AvgPool2d(2)
            self.if1, self.if2 = IFNeuron(), IFNeuron()

        def forward(self, x):
            s = self.if1(self.a(x))
            return self.if2(self.pool(s) + self.b(s))

    g = torch.Generator().manual_seed(5)
    model = Join()
    for p in model.parameters():
        p.data = torch.rand(p.shape, generator=g) * 0.6 - 0.1
    path = export_nir(model, tmp_path / "join.nir", input_shape=(1, 6, 6), profile="portable")
    graph = nir.read(path)
    _runs_in_order(graph)
    (zero,) = _zero_nodes(graph)
    node = graph.nodes[zero]
    assert zero == "pool.order" and node.weight.shape == (3, 3, 1, 1) and list(node.padding) == [1, 1]
    assert list(node.input_type["input"]) == [3, 2, 2] and list(node.output_type["output"]) == [3, 4, 4]
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(2)).double()
    assert compare_spike_counts(model.double(), import_nir(path).double(), x, 12).equal


@pytest.mark.parametrize(
    ("have", "want", "kernel", "padding"),
    [
        ((4, 6, 6), (2, 6, 6), (1, 1), (0, 0)),
        ((4, 6, 5), (2, 3, 8), (4, 2), (0, 2)),
        ((4, 3, 3), (2, 6, 4), (2, 2), (2, 1)),
    ],
)
def test_zero_conv_shapes(have, want, kernel, padding):
    ((name, conv),) = profiles._zero_nodes("z", have, want)
    assert name == "z" and conv.weight.shape == (want[0], have[0], *kernel) and tuple(conv.padding) == padding
    out = torch.nn.functional.conv2d(torch.ones(1, *have), torch.from_numpy(conv.weight), padding=padding)
    assert tuple(out.shape[1:]) == want and not out.any()


def test_a_join_that_no_zero_node_can_order_is_refused():
    """Two flat branches from a 3-D input: from the flat end of the branch walked first, no
    mapped node reaches the 3-D input of the other (nothing un-flattens)."""
    flat = {"input": np.array([1, 2, 2])}

    def IF(k):
        return nir.IF(r=np.ones(k, np.float32), v_threshold=np.ones(k, np.float32), v_reset=np.zeros(k, np.float32))

    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input({"input": np.array([1, 2, 2])}),
            "f1": nir.Flatten(input_type=flat, start_dim=0, end_dim=-1),
            "a": nir.Affine(weight=np.ones((4, 4), np.float32), bias=np.zeros(4, np.float32)),
            "conv": nir.Conv2d(
                input_shape=(2, 2),
                weight=np.ones((1, 1, 1, 1), np.float32),
                stride=1,
                padding=0,
                dilation=1,
                groups=1,
                bias=np.zeros(1, np.float32),
            ),
            "f2": nir.Flatten(input_type=flat, start_dim=0, end_dim=-1),
            "j": IF(4),
            "output": nir.Output({"output": np.array([4])}),
        },
        edges=[
            ("input", "f1"),
            ("f1", "a"),
            ("a", "j"),
            ("input", "conv"),
            ("conv", "f2"),
            ("f2", "j"),
            ("j", "output"),
        ],
    )
    with pytest.raises(ProfileError, match="depth-first executors"):
        depth_first_layout(graph)


def test_the_exact_graph_of_the_residual_example_too(monkeypatch):
    """The layout on the exact profile's graph (Scale and AvgPool2d nodes) gives the same SNN
    bit for bit: what it adds is zeros."""
    from ann2snn.zoo import load_embedded, load_mnist_resnet
    from converter import Converter
    from exporters.nir_export import to_nir

    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").subset(64).loader(64))(load_mnist_resnet())
    graph = apply_profile(to_nir(snn), "exact")
    laid = depth_first_layout(graph)
    _runs_in_order(laid)
    assert len(_zero_nodes(laid)) == 3
    x = load_embedded("test").images[:4]
    _same_simulation(graph_to_snn(graph), graph_to_snn(laid), x, 10)
