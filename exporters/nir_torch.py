"""NIR graph → SNN (torch.fx GraphModule): what a NIR graph computes, as our simulator runs it.

A table from NIR node type to one small function (:data:`IMPORTERS`) builds a torch module per
node; :func:`graph_to_snn` wires them as the edges say (a node fed by several edges receives
their sum, in edge order). Our own node maps replace nirtorch 2.6's defaults, whose Affine map
drops the bias and whose Flatten map breaks for batch > 1.

This is the one meaning of a NIR graph in ann2snn: :func:`exporters.import_nir` reads a file
with it, and :func:`exporters.export_nir` computes a file's embedded reference outputs with it
from the graph as written, so the two cannot disagree.
"""

from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import nir
import numpy as np
import torch
import torch.fx as fx
from torch import nn

from exporters.nir_graph import CycleError, predecessors, topological_order
from exporters.recurrent import fuse_subtraction
from exporters.semantics import graph_metadata, if_semantics, plain
from simulator import META_KEY, IFNeuron, Integrator, Scale


@dataclass(frozen=True)
class ImportOptions:
    """How stateful nodes are read: ``rules`` override every IF node's metadata
    (:func:`exporters.semantics.reader_rules`); ``dt`` (``None``: each node's ``dt`` metadata,
    else 1) is the length of one simulated step in the file's time unit (current per step
    ``dt · r · I``)."""

    rules: dict = field(default_factory=dict)
    dt: float | None = None


ImportFn = Callable[[str, nir.NIRNode, ImportOptions], nn.Module]


class NIRImportError(ValueError):
    """A NIR file or node our simulator cannot run; the message names the file or node."""


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _ints(a, n: int) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(a)).astype(int)
    return tuple(int(v) for v in (np.repeat(arr, n) if arr.size == 1 else arr))


def _affine(name: str, node: nir.Affine, opts: ImportOptions) -> nn.Module:
    weight = _t(node.weight)
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight.data.copy_(weight)
    layer.bias.data.copy_(_t(node.bias))
    return layer


def _linear(name: str, node: nir.Linear, opts: ImportOptions) -> nn.Module:
    weight = _t(node.weight)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data.copy_(weight)
    return layer


def _conv(name: str, node: nir.Conv2d | nir.Conv1d, opts: ImportOptions) -> nn.Module:
    weight = _t(node.weight)
    dims = 2 if isinstance(node, nir.Conv2d) else 1
    cls: Callable[..., nn.Conv2d | nn.Conv1d] = nn.Conv2d if dims == 2 else nn.Conv1d  # tuples of length dims
    padding = node.padding if isinstance(node.padding, str) else _ints(node.padding, dims)
    groups = int(np.asarray(node.groups))
    layer = cls(
        weight.shape[1] * groups,
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride=_ints(node.stride, dims),
        padding=padding,
        dilation=_ints(node.dilation, dims),
        groups=groups,
    )
    layer.weight.data.copy_(weight)
    cast(torch.Tensor, layer.bias).data.copy_(_t(node.bias))  # bias=True
    return layer


def _pool(name: str, node: nir.AvgPool2d | nir.SumPool2d, opts: ImportOptions) -> nn.Module:
    return nn.AvgPool2d(
        cast(tuple[int, int], _ints(node.kernel_size, 2)),
        cast(tuple[int, int], _ints(node.stride, 2)),
        cast(tuple[int, int], _ints(node.padding, 2)),
        divisor_override=1 if isinstance(node, nir.SumPool2d) else None,
    )


def _flatten(name: str, node: nir.Flatten, opts: ImportOptions) -> nn.Module:
    start, end = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(start + 1, end + 1 if end >= 0 else end)


def _scale(name: str, node: nir.Scale, opts: ImportOptions) -> nn.Module:
    return Scale(_t(node.scale))


def _step(opts: ImportOptions, node_dt: float) -> float:
    """Length of one simulated step: the caller's ``dt`` if given, else the node's."""
    return float(opts.dt) if opts.dt is not None else node_dt


def _if(name: str, node: nir.IF, opts: ImportOptions) -> nn.Module:
    meta = node.metadata or {}
    rules = {} if plain(meta.get("fused")) else opts.rules  # a fused recurrent encoding is exact as it is
    sem = if_semantics(name, meta, rules)
    threshold = _t(node.v_threshold)
    if not bool((threshold > 0).all()):
        raise NIRImportError(f"NIR node {name!r}: v_threshold must be > 0 everywhere")
    dt = _step(opts, sem["dt"])
    r = _t(node.r) if dt == 1.0 else _t(node.r) * dt
    try:
        return IFNeuron(
            v_threshold=threshold,
            reset=sem["reset"],
            spike_rule=sem["spike_rule"],
            v_init=sem["v_init_fraction"],
            v_reset=_t(node.v_reset),
            r=r,
            v_min=sem["v_min_fraction"],
            state_bits=sem["state_bits"],
            integer=sem["integer"],
        )
    except ValueError as exc:  # a state_bits the threshold does not fit
        raise NIRImportError(f"NIR node {name!r}: {exc}") from None


def _integrator(name: str, node: nir.I, opts: ImportOptions) -> nn.Module:
    dt = _step(opts, float(plain((node.metadata or {}).get("dt", 1.0))))
    return Integrator(r=_t(node.r) if dt == 1.0 else _t(node.r) * dt)


#: NIR node type → function ``(node name, node) -> nn.Module``.
IMPORTERS: dict[type, ImportFn] = {
    nir.Affine: _affine,
    nir.Linear: _linear,
    nir.Conv1d: _conv,
    nir.Conv2d: _conv,
    nir.AvgPool2d: _pool,
    nir.SumPool2d: _pool,
    nir.Flatten: _flatten,
    nir.Scale: _scale,
    nir.IF: _if,
    nir.I: _integrator,
}


def _topological(nodes: dict, edges: list[tuple[str, str]]) -> list[str]:
    """Nodes in an order where each follows its inputs, otherwise keeping the file's node order
    (so the IF layers of a graph with parallel branches are registered in the order they were
    exported, and :func:`exporters.compare_spike_counts` pairs them correctly)."""
    try:
        return topological_order(nodes, edges)
    except CycleError as exc:
        raise NIRImportError(
            f"the NIR graph has a cycle through {exc.nodes}: the only recurrence ann2snn "
            "simulates is reset by subtraction, I -> Threshold -> Scale -> I"
        ) from None


def _segment(part: str) -> str:
    part = re.sub(r"\W", "_", part) or "_"
    return part + "_" if keyword.iskeyword(part) else part


def _add_module(root: nn.Module, name: str, module: nn.Module) -> str:
    """Register ``module`` under the dotted path ``name`` (as the exporter named it); fall back to
    underscores when a path segment is taken. Returns the target used."""
    *parents, leaf = (_segment(part) for part in name.split("."))
    parent = root
    for part in parents:
        child = getattr(parent, part, None)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        if not isinstance(child, nn.Module) or type(child) is not nn.Module:
            flat = "_".join((*parents, leaf))
            root.add_module(flat, module)
            return flat
        parent = child
    if hasattr(parent, leaf):
        flat = "_".join((*parents, leaf)) + "_"
        root.add_module(flat, module)
        return flat
    parent.add_module(leaf, module)
    return ".".join((*parents, leaf))


def _single(graph: nir.NIRGraph, name: str, kind: type) -> str:
    found = [k for k, n in graph.nodes.items() if isinstance(n, kind)]
    if len(found) != 1:
        raise NIRImportError(f"subgraph {name!r} has {len(found)} {kind.__name__} nodes; name one in the edge")
    return f"{name}.{found[0]}"


def inline_subgraphs(graph: nir.NIRGraph) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Flatten nested ``NIRGraph`` nodes into one level of nodes named ``outer.inner``.

    An edge into a subgraph goes to its Input node (``sub`` or ``sub.<input>``); an edge out of
    it leaves from its Output node. Inner Input/Output nodes become pass-throughs.

    Returns:
        ``(nodes, edges)`` with no ``NIRGraph`` node left.
    """
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    rename_in: dict[str, str] = {}
    rename_out: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = inline_subgraphs(node)
            nodes.update({f"{name}.{k}": v for k, v in inner_nodes.items()})
            edges.extend((f"{name}.{a}", f"{name}.{b}") for a, b in inner_edges)
            rename_in[name] = _single(node, name, nir.Input)
            rename_out[name] = _single(node, name, nir.Output)
        else:
            nodes[name] = node
    edges.extend((rename_out.get(a, a), rename_in.get(b, b)) for a, b in graph.edges)
    return nodes, edges


def _flat_graph(graph: nir.NIRGraph) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """``graph`` on one level (:func:`inline_subgraphs`), each subtraction cycle fused into an IF
    node (:func:`exporters.recurrent.fuse_subtraction`), its edges and its one Input checked.

    Raises:
        NIRImportError: an edge naming a missing node, or not exactly one Input node.
    """
    nodes, edges = inline_subgraphs(graph)
    nodes, edges = fuse_subtraction(nodes, edges)
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NIRImportError(f"edge ({a!r}, {b!r}) names a node that does not exist: {end!r}")
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input) and "." not in n]
    if len(inputs) != 1:
        raise NIRImportError(f"expected exactly one Input node, found {inputs}")
    return nodes, edges


def _module(name: str, node: nir.NIRNode, opts: ImportOptions) -> nn.Module:
    """The torch module of NIR node ``name`` (:data:`IMPORTERS`).

    Raises:
        NIRImportError: no mapping for its type, or the mapping refuses it (named).
    """
    fn = IMPORTERS.get(type(node))
    if fn is None:
        raise NIRImportError(f"NIR node {name!r} of type {type(node).__name__} cannot be simulated by ann2snn")
    try:
        return fn(name, node, opts)
    except NIRImportError:
        raise
    except (ValueError, TypeError) as exc:
        raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}): {exc}") from None


def graph_to_snn(graph: nir.NIRGraph, options: ImportOptions | None = None) -> fx.GraphModule:
    """Build the SNN GraphModule that ``graph`` describes.

    Nested graphs are inlined first (:func:`inline_subgraphs`); each ``I → Threshold → Scale → I``
    cycle becomes one IF node with reset by subtraction
    (:func:`exporters.recurrent.fuse_subtraction`). Nodes are built in
    :func:`exporters.nir_graph.topological_order` (the file's node order where edges allow), so
    IF layers are registered in the order they were written.

    Args:
        graph: the NIR graph.
        options: how IF and I nodes are read (:class:`ImportOptions`; default: each node's own
            metadata, NIR's rules where absent).

    Returns:
        A GraphModule taking ``[steps * B, *input_shape]`` like a converted SNN; its
        ``meta['ann2snn']`` holds the graph metadata (``output_scale``, ``mode``, ``T``, ...)
        and ``input_shape``.

    Raises:
        NIRImportError: a node type we cannot simulate (named, never dropped), several Input
            nodes, an edge naming a missing node, a node without input edge, a cycle other than
            the subtraction pattern, or bad IF metadata.
    """
    opts = options or ImportOptions()
    nodes, edges = _flat_graph(graph)
    preds = {n: predecessors(edges, n) for n in nodes}
    root = nn.Module()
    fx_graph = fx.Graph()
    values: dict[str, fx.Node] = {}
    input_shape: list[int] = []
    for name in _topological(nodes, edges):
        node = nodes[name]
        if isinstance(node, nir.Input) and "." not in name:
            values[name] = fx_graph.placeholder("x")
            input_shape = [int(v) for v in np.asarray(node.input_type["input"])]
            continue
        if not preds[name]:
            raise NIRImportError(f"NIR node {name!r} has no input edge")
        arg = values[preds[name][0]]
        for other in preds[name][1:]:
            arg = fx_graph.call_function(operator.add, (arg, values[other]))
        if isinstance(node, (nir.Input, nir.Output)) and "." in name:  # an inlined subgraph's boundary
            values[name] = arg
        elif isinstance(node, nir.Output):
            fx_graph.output(arg)
        else:
            values[name] = fx_graph.call_module(_add_module(root, name, _module(name, node, opts)), (arg,))
    gm = fx.GraphModule(root, fx_graph)
    try:
        meta = graph_metadata(graph)
    except ValueError as exc:  # bad JSON metadata or an unknown input_encoding
        raise NIRImportError(str(exc)) from None
    meta.setdefault("output_scale", 1.0)
    meta["input_shape"] = input_shape
    gm.meta[META_KEY] = meta
    return gm
