"""``.nir`` file → NIR graph → SNN (torch.fx GraphModule) for :func:`simulator.simulate`.

Import is a table from NIR node type to one small function (:data:`IMPORTERS`) that builds a
torch module. Our own node maps replace nirtorch 2.6's defaults, whose Affine map drops the
bias and whose Flatten map breaks for batch > 1. A node fed by several edges receives their sum.
"""

from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch
import torch.fx as fx
from torch import nn

from exporters.nir_graph import CycleError, predecessors, topological_order
from exporters.recurrent import fuse_subtraction
from exporters.semantics import graph_metadata, if_semantics, plain, reader_rules
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
    cls = nn.Conv2d if dims == 2 else nn.Conv1d
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
    layer.bias.data.copy_(_t(node.bias))
    return layer


def _pool(name: str, node: nir.AvgPool2d | nir.SumPool2d, opts: ImportOptions) -> nn.Module:
    return nn.AvgPool2d(
        _ints(node.kernel_size, 2),
        _ints(node.stride, 2),
        _ints(node.padding, 2),
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
    return IFNeuron(
        v_threshold=threshold,
        reset=sem["reset"],
        spike_rule=sem["spike_rule"],
        v_init=sem["v_init_fraction"],
        v_reset=_t(node.v_reset),
        r=r,
        v_min=sem["v_min_fraction"],
    )


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


def read_nir(path: str | Path, type_check: bool = True) -> nir.NIRGraph:
    """``nir.read`` with a clear error for files that are not NIR.

    ``type_check=False`` skips nir's check that every edge joins equal types (Norse 1.1.0's
    ``to_nir`` writes the batch axis into the Input and Output types, ``[1, 8]`` before an
    Affine whose input is ``[8]``, which the check refuses).

    Raises:
        FileNotFoundError: no file at ``path``. NIRImportError: "not a NIR file: <path>", or
            the type check's mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such NIR file: {path}")
    try:
        return nir.read(path, type_check=type_check)
    except (OSError, KeyError) as exc:  # h5py: not HDF5 / truncated; KeyError: HDF5 without a NIR graph
        raise NIRImportError(f"not a NIR file: {path} ({exc})") from None
    except ValueError as exc:
        if type_check and "type" in str(exc).lower():
            raise NIRImportError(
                f"{path}: nir.read's type check fails ({exc}); read_nir/import_nir(..., "
                "type_check=False) read the graph as written"
            ) from None
        raise


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


def from_nir(graph: nir.NIRGraph, semantics: str | dict = "file", dt: float | None = None) -> fx.GraphModule:
    """Build an SNN GraphModule from a NIR graph.

    Args:
        graph: the NIR graph (nested graphs are inlined first, :func:`inline_subgraphs`; each
            ``I → Threshold → Scale → I`` cycle becomes one IF node with reset by subtraction,
            :func:`exporters.recurrent.fuse_subtraction`).
        semantics: ``"file"`` (default: honour the file's IF metadata, NIR's rules where
            absent), ``"nir"`` or ``"sinabs"`` (simulate the file the way that kind of reader
            does), or a dict of overrides (:func:`exporters.semantics.reader_rules`).
        dt: length of one simulated step in the file's time unit (``None``: the nodes' ``dt``
            metadata, else 1); the current per step is ``dt · r · I``.

    Returns:
        A GraphModule taking ``[steps * B, *input_shape]`` like a converted SNN; its
        ``meta['ann2snn']`` holds the graph metadata (``output_scale``, ``mode``, ``T``, ...).

    Raises:
        NIRImportError: a node type we cannot simulate (named, never dropped), several Input
            nodes, an edge naming a missing node, a cycle other than the subtraction pattern,
            or bad IF metadata. ValueError: an unknown ``semantics`` or ``dt <= 0``.
    """
    if dt is not None and not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    opts = ImportOptions(reader_rules(semantics), dt)
    root = nn.Module()
    fx_graph = fx.Graph()
    values: dict[str, fx.Node] = {}
    nodes, edges = inline_subgraphs(graph)
    nodes, edges, _ = fuse_subtraction(nodes, edges)
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NIRImportError(f"edge ({a!r}, {b!r}) names a node that does not exist: {end!r}")
    preds = {n: predecessors(edges, n) for n in nodes}
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input) and "." not in n]
    if len(inputs) != 1:
        raise NIRImportError(f"expected exactly one Input node, found {inputs}")
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
            continue
        if isinstance(node, nir.Output):
            fx_graph.output(arg)
            continue
        fn = IMPORTERS.get(type(node))
        if fn is None:
            raise NIRImportError(f"NIR node {name!r} of type {type(node).__name__} cannot be simulated by ann2snn")
        try:
            module = fn(name, node, opts)
        except NIRImportError:
            raise
        except (ValueError, TypeError) as exc:
            raise NIRImportError(f"NIR node {name!r} ({type(node).__name__}): {exc}") from None
        values[name] = fx_graph.call_module(_add_module(root, name, module), (arg,))
    gm = fx.GraphModule(root, fx_graph)
    meta = graph_metadata(graph)
    meta.setdefault("output_scale", 1.0)
    meta["input_shape"] = input_shape
    gm.meta[META_KEY] = meta
    return gm


def import_nir(
    path: str | Path, semantics: str | dict = "file", dt: float | None = None, type_check: bool = True
) -> fx.GraphModule:
    """Read a ``.nir`` file and rebuild the SNN for :func:`simulator.simulate`.

    Honours our IF metadata (reset, spike rule, initial potential); files without it get NIR's
    semantics (:mod:`exporters.semantics`). ``semantics`` and ``dt``: see :func:`from_nir`
    (``semantics="nir"`` shows what a reset-to-zero reader such as Norse does with the file,
    ``"sinabs"`` what Sinabs does). ``type_check``: see :func:`read_nir`.

    Raises:
        FileNotFoundError, NIRImportError: see :func:`read_nir` and :func:`from_nir`.
        ValueError: an unknown ``semantics`` or ``dt <= 0``.
    """
    reader_rules(semantics)
    try:
        return from_nir(read_nir(path, type_check), semantics, dt)
    except NIRImportError as exc:
        if str(path) in str(exc):
            raise
        raise NIRImportError(f"{path}: {exc}") from None


__all__ = ["IMPORTERS", "ImportOptions", "NIRImportError", "Scale", "from_nir", "import_nir", "read_nir"]
