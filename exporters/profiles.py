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
  last bit (``x·w/4`` against ``(x/4)·w``).
- ``"recurrent"``: the exact nodes, but every IF node with reset by subtraction written in
  pure NIR as a nested graph ``I → Threshold → Scale(−V_th) → I`` (:mod:`exporters.recurrent`),
  for readers that honour cycles and ignore our metadata.
"""

from __future__ import annotations

import copy

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
            if not _fold_scale(graph, name):
                _scale_as_weights(graph, name)
    metadata = {**(graph.metadata or {}), "profile": profile}
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata)
