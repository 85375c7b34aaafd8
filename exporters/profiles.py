"""Export profiles: which NIR nodes a file may use.

- ``"exact"`` (default): the standard nodes our SNN maps to, plus our metadata.
- ``"portable"``: only nodes that the major importers all map. Readers such as Norse and
  Sinabs drop ``AvgPool2d`` nodes, and not all map ``Scale``, so every ``AvgPool2d`` becomes a
  ``SumPool2d`` with its ``1/(k_h k_w)`` folded into the weights of the Conv/Affine/Linear
  nodes it feeds (through Flatten nodes), and every ``Scale`` node whose single successor is
  such a node with no other input is folded into that node's input columns. The function is
  the same; float32 rounding can differ in the last bit (``x·w/4`` against ``(x/4)·w``).
  A ``Scale`` on a residual edge (its consumer sums several inputs) has no such fold and stays.
- ``"recurrent"``: the exact nodes, but every IF node with reset by subtraction written in
  pure NIR as a nested graph ``I → Threshold → Scale(−V_th) → I`` (:mod:`exporters.recurrent`),
  for readers that honour cycles and ignore our metadata.
"""

from __future__ import annotations

import copy

import nir
import numpy as np

from exporters.recurrent import encode_graph

PROFILES = ("exact", "portable", "recurrent")
_WEIGHTED = (nir.Conv1d, nir.Conv2d, nir.Affine, nir.Linear)


class ProfileError(ValueError):
    """A node that the requested profile cannot express; the message names it."""


def _successors(edges, name: str) -> list[str]:
    return [b for a, b in edges if a == name]


def _predecessors(edges, name: str) -> list[str]:
    return [a for a, b in edges if b == name]


def _weighted_consumers(graph: nir.NIRGraph, name: str) -> list[str] | None:
    """The weighted nodes fed by ``name`` through Flatten nodes, each fed by nothing else; None
    if some path reaches another kind of node or a weighted node with several inputs."""
    found, stack = [], [name]
    while stack:
        for succ in _successors(graph.edges, stack.pop()):
            node = graph.nodes[succ]
            if isinstance(node, nir.Flatten) and len(_predecessors(graph.edges, succ)) == 1:
                stack.append(succ)
            elif isinstance(node, _WEIGHTED) and len(_predecessors(graph.edges, succ)) == 1:
                found.append(succ)
            else:
                return None
    return found


def _fold_avgpool(graph: nir.NIRGraph, name: str) -> None:
    pool = graph.nodes[name]
    consumers = _weighted_consumers(graph, name)
    if not consumers:
        raise ProfileError(f"AvgPool2d node {name!r} does not feed only Conv/Affine/Linear nodes (through "
                           "Flatten), so its 1/k² cannot be folded for the portable profile")
    factor = 1.0 / float(np.prod(np.asarray(pool.kernel_size)))
    for consumer in consumers:
        node = graph.nodes[consumer]
        node.weight = (node.weight * factor).astype(node.weight.dtype)
    graph.nodes[name] = nir.SumPool2d(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding)


def _fold_scale(graph: nir.NIRGraph, name: str) -> bool:
    succ = _successors(graph.edges, name)
    if len(succ) != 1 or len(_predecessors(graph.edges, succ[0])) != 1:
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
    (pred,) = _predecessors(graph.edges, name)
    graph.edges = [(a, b) for a, b in graph.edges if name not in (a, b)] + [(pred, succ[0])]
    del graph.nodes[name]
    return True


def apply_profile(graph: nir.NIRGraph, profile: str) -> nir.NIRGraph:
    """A copy of ``graph`` restricted to ``profile`` (``"exact"`` returns it unchanged).

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
            _fold_scale(graph, name)
    metadata = {**(graph.metadata or {}), "profile": profile}
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata)
