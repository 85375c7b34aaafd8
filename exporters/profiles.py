"""Export profiles: which NIR nodes a file may use.

- ``"exact"`` (default): the standard nodes our SNN maps to, plus our metadata.
- ``"portable"``: only nodes that the major importers all map. Readers such as Norse and
  Sinabs drop ``AvgPool2d`` nodes, and none maps ``Scale``, so every ``AvgPool2d`` becomes a
  ``SumPool2d`` with its ``1/(k_h k_w)`` folded into the weights of the Conv/Affine/Linear
  (or Scale) nodes it feeds (through Flatten nodes), and every ``Scale`` node whose single
  successor is such a node with no other input is folded into that node's input columns. An
  ``AvgPool2d`` that feeds a residual sum becomes a dense ``Conv2d`` C → C with weights
  ``1/k²`` on the diagonal channel pairs, and a ``Scale`` on a residual edge a diagonal 1×1
  ``Conv2d`` (or ``Affine``). The function is the same; float32 rounding can differ in the
  last bit (``x·w/4`` against ``(x/4)·w``). Then the graph is laid out for depth-first
  executors (:func:`depth_first_layout`): Norse 1.1.0 and Sinabs 3.1.3 run a file through
  nirtorch 2.6's ``GraphExecutor``, which runs the nodes in the pre-order of a depth-first walk
  from the Input, children in edge order; a source that has not run yet gives its value of the
  previous call (Norse: the previous step) or nothing (Sinabs: one call for all steps). The
  edges are ordered so that walk reaches every node after all its sources, and where no order
  can (a residual join whose two branches each have a node of their own, such as a skip with a
  1×1 conv or a diagonal Scale conv) a zero node (all weights and bias 0) is added from the
  last node of the branch walked first into the first node of the other, so that the walk runs
  that branch before the join. It adds exact zeros: the function is unchanged bit for bit.
- ``"recurrent"``: the exact nodes, but every IF node with reset by subtraction written in
  pure NIR as a nested graph ``I → Threshold → Scale(−V_th) → I`` (:mod:`exporters.recurrent`),
  for readers that honour cycles and ignore our metadata.
"""

from __future__ import annotations

import copy
import heapq

import nir
import numpy as np

from exporters.nir_graph import predecessors, successors
from exporters.recurrent import encode_graph

PROFILES = ("exact", "portable", "recurrent")
_WEIGHTED = (nir.Conv1d, nir.Conv2d, nir.Affine, nir.Linear)


class ProfileError(ValueError):
    """A node that the requested profile cannot express; the message names it."""


def _weighted_consumers(graph: nir.NIRGraph, name: str) -> list[str] | None:
    """The weighted or Scale nodes fed by ``name`` through Flatten nodes, each fed by nothing
    else; None if some path reaches another kind of node or such a node with several inputs."""
    found, stack = [], [name]
    while stack:
        for succ in successors(graph.edges, stack.pop()):
            node = graph.nodes[succ]
            if isinstance(node, nir.Flatten) and len(predecessors(graph.edges, succ)) == 1:
                stack.append(succ)
            elif isinstance(node, (*_WEIGHTED, nir.Scale)) and len(predecessors(graph.edges, succ)) == 1:
                found.append(succ)
            else:
                return None
    return found


def _input_chw(node: nir.NIRNode, name: str) -> np.ndarray:
    """The node's ``[C, H, W]`` input shape.

    Raises:
        ProfileError: unknown or not three-dimensional (named).
    """
    shape = np.asarray((getattr(node, "input_type", None) or {}).get("input", []))
    if shape.size != 3:
        raise ProfileError(f"node {name!r}: unknown [C, H, W] input shape, cannot write it for the portable profile")
    return shape


def _diagonal_conv(channels: int, per_channel: np.ndarray, kernel, stride, padding, in_hw) -> nir.Conv2d:
    """A dense Conv2d ``C → C`` whose only non-zero weights are ``per_channel[c]`` from channel
    c to channel c: what every reader maps, for an AvgPool2d (weights 1/k²) or a Scale."""
    kernel = tuple(int(k) for k in np.broadcast_to(np.asarray(kernel), (2,)))
    weight = np.zeros((channels, channels, *kernel), dtype=np.float32)
    weight[np.arange(channels), np.arange(channels)] = per_channel.astype(np.float32).reshape(-1, 1, 1)
    return nir.Conv2d(
        input_shape=tuple(int(v) for v in in_hw),
        weight=weight,
        stride=tuple(int(v) for v in np.broadcast_to(np.asarray(stride), (2,))),
        padding=tuple(int(v) for v in np.broadcast_to(np.asarray(padding), (2,))),
        dilation=(1, 1),
        groups=1,
        bias=np.zeros(channels, dtype=np.float32),
    )


def _fold_avgpool(graph: nir.NIRGraph, name: str) -> None:
    pool = graph.nodes[name]
    consumers = _weighted_consumers(graph, name)
    if not consumers:  # e.g. it feeds a residual sum: a diagonal convolution does the same
        shape = _input_chw(pool, name)
        channels = int(shape[0])
        k = np.broadcast_to(np.asarray(pool.kernel_size), (2,))
        graph.nodes[name] = _diagonal_conv(
            channels, np.full(channels, 1.0 / float(np.prod(k))), k, pool.stride, pool.padding, shape[1:]
        )
        return
    factor = 1.0 / float(np.prod(np.asarray(pool.kernel_size)))
    for consumer in consumers:
        node = graph.nodes[consumer]
        if isinstance(node, nir.Scale):
            node.scale = (node.scale * factor).astype(node.scale.dtype)
        else:
            node.weight = (node.weight * factor).astype(node.weight.dtype)
    graph.nodes[name] = nir.SumPool2d(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding)


def _scale_as_weights(graph: nir.NIRGraph, name: str) -> None:
    """A Scale that could not be folded (it feeds a residual sum) as a diagonal Affine (flat
    tensors) or 1×1 Conv2d (per-channel scale), which every reader maps.

    Raises:
        ProfileError: the scale varies within a channel (named).
    """
    scale = np.asarray(graph.nodes[name].scale)
    if scale.ndim == 1:
        graph.nodes[name] = nir.Affine(
            weight=np.diag(scale).astype(np.float32), bias=np.zeros(scale.shape[0], dtype=np.float32)
        )
        return
    per_channel = scale.reshape(scale.shape[0], -1)
    if scale.ndim != 3 or not np.all(per_channel == per_channel[:, :1]):
        raise ProfileError(
            f"Scale node {name!r} varies within a channel (shape {list(scale.shape)}): no portable equivalent"
        )
    graph.nodes[name] = _diagonal_conv(scale.shape[0], per_channel[:, 0], 1, 1, 0, scale.shape[1:])


def _fold_scale(graph: nir.NIRGraph, name: str) -> bool:
    succ = successors(graph.edges, name)
    if len(succ) != 1 or len(predecessors(graph.edges, succ[0])) != 1:
        return False
    node, scale = graph.nodes[succ[0]], np.asarray(graph.nodes[name].scale)
    if isinstance(node, (nir.Affine, nir.Linear)) and scale.ndim == 1:
        columns = scale.reshape(1, -1)
    elif isinstance(node, (nir.Conv1d, nir.Conv2d)) and scale.ndim >= 2:
        per_channel = scale.reshape(scale.shape[0], -1)
        if not np.all(per_channel == per_channel[:, :1]):
            return False  # varies within a channel: no per-input-channel weight factor
        columns = per_channel[:, 0].reshape(1, -1, *([1] * (node.weight.ndim - 2)))
    else:
        return False
    node.weight = (node.weight * columns).astype(node.weight.dtype)
    (pred,) = predecessors(graph.edges, name)
    graph.edges = [(a, b) for a, b in graph.edges if name not in (a, b)] + [(pred, succ[0])]
    del graph.nodes[name]
    return True


def _zero_nodes(name: str, out_shape, in_shape) -> list[tuple[str, nir.NIRNode]]:
    """Nodes (all weights and biases 0) from an output of ``out_shape`` to an input of
    ``in_shape``, named ``name``, ``name.flatten``: Affine (flat), Conv1d/Conv2d of stride 1
    whose kernel and zero padding give the input's length (same rank), Flatten + Affine (to
    flat); ``[]`` when no node that the readers map can do it."""
    out_shape, in_shape = [int(v) for v in out_shape], [int(v) for v in in_shape]
    meta = {"zero_node": "adds 0: orders execution for depth-first executors (nirtorch GraphExecutor)"}
    if len(in_shape) == 1:
        nodes = []
        if len(out_shape) > 1:
            flat = nir.Flatten(input_type={"input": np.array(out_shape)}, start_dim=0, end_dim=-1, metadata=dict(meta))
            nodes.append((f"{name}.flatten", flat))
        affine = nir.Affine(
            weight=np.zeros((in_shape[0], int(np.prod(out_shape))), dtype=np.float32),
            bias=np.zeros(in_shape[0], dtype=np.float32),
            metadata=dict(meta),
        )
        return [*nodes, (name, affine)]
    if len(in_shape) != len(out_shape) or len(in_shape) not in (2, 3):
        return []
    kernel, padding = [], []
    for have, want in zip(out_shape[1:], in_shape[1:], strict=True):
        if want <= have:  # no padding, kernel have - want + 1
            kernel.append(have - want + 1)
            padding.append(0)
        else:  # pad p each side, kernel 2p - (want - have) + 1 (1 or 2)
            pad = (want - have + 1) // 2
            kernel.append(2 * pad - (want - have) + 1)
            padding.append(pad)
    weight = np.zeros((in_shape[0], out_shape[0], *kernel), dtype=np.float32)
    bias = np.zeros(in_shape[0], dtype=np.float32)
    if len(in_shape) == 2:
        conv = nir.Conv1d(
            input_shape=out_shape[1], weight=weight, stride=1, padding=padding[0], dilation=1, groups=1, bias=bias
        )
    else:
        conv = nir.Conv2d(
            input_shape=tuple(out_shape[1:]),
            weight=weight,
            stride=(1, 1),
            padding=tuple(padding),
            dilation=(1, 1),
            groups=1,
            bias=bias,
        )
    conv.metadata = dict(meta)
    return [(name, conv)]


def _shape(types: dict | None):
    """The one shape of a node's ``input_type``/``output_type`` (None if absent or several)."""
    values = list((types or {}).values())
    return values[0] if len(values) == 1 and values[0] is not None and np.size(values[0]) else None


def depth_first_layout(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with edges ordered (and zero nodes added) so that a depth-first executor runs
    every node after all its sources and the Output node last.

    The executor is nirtorch 2.6's ``GraphExecutor`` (``nirtorch.load``, through which Norse
    1.1.0's ``from_nir`` and Sinabs 3.1.3's ``from_nir`` load files): its order is
    ``graph_utils.trace_execution``, the pre-order of a depth-first walk from the Input node
    taking each node's successors in edge order; a node whose source runs after it reads that
    source's value of the previous call (Norse: the previous step) or none (Sinabs' one call,
    and Norse's first step), and the executor returns the value of the node run last.

    This function replays that walk, choosing at each node a successor whose sources have all
    run; when a node's unvisited successors all wait for sources that have not run (a residual
    join whose two branches each have a node of their own, e.g. a 1×1 conv on the skip), it adds
    a zero node (:func:`_zero_nodes`, named ``<node>.order``) from that node to a node whose
    sources have all run and from which a waiting source is reachable, so the walk runs that
    node next. Every node's input is the same sum plus exact zeros; incoming edges keep their
    order (the order a node sums them in) where the walk allows. A graph whose walk is already
    topological (no joins, or joins reached by an identity skip) only has its edges reordered.

    Raises:
        ProfileError: a zero node is needed between shapes that no mapped node joins (named).
    """
    names = list(graph.nodes)
    inputs = [n for n in names if isinstance(graph.nodes[n], nir.Input)]
    if len(inputs) != 1:
        return graph  # nirtorch walks from one Input only; nothing to lay out
    nodes = dict(graph.nodes)
    preds: dict[str, list[str]] = {n: [] for n in names}  # in edge order (NIR allows no repeated edge)
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in graph.edges:
        preds[b].append(a)
        succ[a].append(b)
    visited: set[str] = set()
    chosen: dict[str, list[str]] = {n: [] for n in names}  # successors in the order the walk takes them
    added: dict[str, list[str]] = {}  # node -> zero nodes added after it (for the node order)

    def ready(n: str) -> bool:
        return n not in visited and all(p in visited for p in preds[n])

    def ancestors(n: str) -> set[str]:
        seen, stack = set(), list(preds[n])
        while stack:
            m = stack.pop()
            if m not in seen:
                seen.add(m)
                stack.extend(preds[m])
        return seen

    stack = [inputs[0]]
    visited.add(inputs[0])
    while stack:
        u = stack[-1]
        pending = [c for c in succ[u] if c not in visited]
        if not pending:
            stack.pop()
            continue
        runnable = [c for c in pending if ready(c)]
        if runnable:
            chosen[u].append(runnable[0])
            visited.add(runnable[0])
            stack.append(runnable[0])
            continue
        # every successor of u waits for a source that has not run: run one of those first
        waiting = ancestors(pending[0])
        candidates = [n for n in names if n in waiting and ready(n)]
        out_shape = _shape(getattr(nodes[u], "output_type", None))
        target = chain = None
        for r in candidates:
            in_shape = _shape(getattr(nodes[r], "input_type", None))
            if out_shape is not None and in_shape is not None:
                chain = _zero_nodes(f"{u}.order", out_shape, in_shape)
                if chain:
                    target = r
                    break
        if target is None:
            raise ProfileError(
                f"node {pending[0]!r} waits for {sorted(waiting - visited)}, and no zero node maps the output of "
                f"{u!r} to the input of one of {candidates}: no layout that depth-first executors (nirtorch) "
                "run in order"
            )
        for zname, _ in chain:
            if zname in nodes:
                raise ProfileError(f"cannot add the zero node {zname!r}: the graph has a node of that name")
        source = u
        for zname, znode in chain:
            nodes[zname] = znode
            preds[zname], succ[zname], chosen[zname] = [source], [], []
            succ[source].append(zname)
            chosen[source].append(zname)
            visited.add(zname)
            stack.append(zname)
            source = zname
        added.setdefault(u, []).extend(z for z, _ in chain)
        succ[source].append(target)
        preds[target].append(source)
        chosen[source].append(target)
        visited.add(target)
        stack.append(target)
    order = []
    for n in names:
        order.append(n)
        order.extend(added.get(n, []))
    new_edges = _merge_edges(order, succ, preds, chosen)
    return nir.NIRGraph(nodes={n: nodes[n] for n in order}, edges=new_edges, metadata=graph.metadata)


def _merge_edges(order, succ, preds, chosen) -> list[tuple[str, str]]:
    """One edge list in which each node's outgoing edges come in the walk's order (``chosen``,
    then the rest) and, where that allows, each node's incoming edges in ``preds`` order (the
    order a reader sums them in). (NIR allows no repeated edge.)"""
    outgoing = {a: [(a, b) for b in chosen[a] + [c for c in succ[a] if c not in chosen[a]]] for a in order}
    edges = [e for a in order for e in outgoing[a]]
    position = {e: i for i, e in enumerate(edges)}
    chains = [outgoing[a] for a in order]
    for extra in ([[(a, b) for a in preds[b]] for b in order], []):  # incoming order too, else only the walk's
        after: dict[tuple[str, str], list[tuple[str, str]]] = {e: [] for e in edges}
        waiting = dict.fromkeys(edges, 0)
        for chain in chains + extra:
            for e, f in zip(chain, chain[1:], strict=False):
                after[e].append(f)
                waiting[f] += 1
        heap = [position[e] for e in edges if waiting[e] == 0]
        heapq.heapify(heap)
        result = []
        while heap:
            e = edges[heapq.heappop(heap)]
            result.append(e)
            for f in after[e]:
                waiting[f] -= 1
                if waiting[f] == 0:
                    heapq.heappush(heap, position[f])
        if len(result) == len(edges):
            return result
    raise AssertionError("unreachable: each node's outgoing edges alone are one chain")


def apply_profile(graph: nir.NIRGraph, profile: str, layout: bool = True) -> nir.NIRGraph:
    """A copy of ``graph`` restricted to ``profile`` (``"exact"`` returns it unchanged).

    ``layout=False`` leaves out the portable profile's :func:`depth_first_layout` (the file
    as it was written before it: ``interop/residual_repro.py`` shows what that changes).

    Raises:
        ValueError: an unknown profile. ProfileError: a node the profile cannot express (named).
    """
    if profile not in PROFILES:
        raise ValueError(f"export profile must be one of {PROFILES}, got {profile!r}")
    if profile == "exact":
        return graph
    graph = copy.deepcopy(graph)
    if profile == "recurrent":
        try:
            encode_graph(graph)
        except ValueError as exc:
            raise ProfileError(str(exc)) from None
    else:
        for name in [n for n, node in graph.nodes.items() if isinstance(node, nir.AvgPool2d)]:
            _fold_avgpool(graph, name)
        for name in [n for n, node in graph.nodes.items() if isinstance(node, nir.Scale)]:
            if not _fold_scale(graph, name):
                _scale_as_weights(graph, name)
    metadata = {**(graph.metadata or {}), "profile": profile}
    graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata)
    return depth_first_layout(graph) if profile == "portable" and layout else graph
