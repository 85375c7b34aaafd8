"""What the command line reports about a ``.nir`` file: its nodes, shapes, parameter ranges
and metadata (``ann2snn inspect``), and its behaviour on data (``ann2snn simulate``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
import torch

from ann2snn.data import DataSet
from exporters.semantics import plain
from simulator import simulate

_SKIP_FIELDS = ("input_type", "output_type", "metadata")


def _shape(types: dict | None) -> str:
    if not types:
        return ""
    return " ".join("x".join(str(int(d)) for d in np.atleast_1d(np.asarray(v))) or "()" for v in types.values())


def _param(name: str, value) -> str | None:
    if isinstance(value, np.ndarray) and value.size > 1:
        shape = "x".join(str(d) for d in value.shape)
        if not np.issubdtype(value.dtype, np.number):
            return f"{name} {shape}"
        if value.size <= 4:
            return f"{name}={value.tolist()}"
        low, high = value.min(), value.max()
        return f"{name} {shape} " + (f"all {low:.4g}" if low == high else f"[{low:.4g}, {high:.4g}]")
    if isinstance(value, (np.ndarray, np.generic, int, float, str)):
        return f"{name}={plain(np.asarray(value).reshape(-1)[0] if isinstance(value, np.ndarray) else value)}"
    return None


def _metadata(meta: dict) -> dict:
    """Metadata as plain values, arrays of more than one value summarised by shape and range
    (the reference vectors of a self-checking file would otherwise fill the screen)."""
    out = {}
    for key, value in meta.items():
        value = plain(value)
        if isinstance(value, np.ndarray) and value.size > 1:
            value = f"array {list(value.shape)} [{value.min():.4g}, {value.max():.4g}]"
        out[key] = value
    return out


def describe_node(name: str, node: nir.NIRNode) -> dict:
    """One node as plain values: name, type, input/output shapes, parameters (shape and
    [min, max] for arrays, the value for scalars) and its metadata."""
    params = []
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            if f.name not in _SKIP_FIELDS:
                text = _param(f.name, getattr(node, f.name))
                if text:
                    params.append(text)
    return {
        "name": name,
        "type": type(node).__name__,
        "input_shape": _shape(getattr(node, "input_type", None)),
        "output_shape": _shape(getattr(node, "output_type", None)),
        "parameters": "; ".join(params),
        "metadata": _metadata(getattr(node, "metadata", None) or {}),
    }


def _in_order(graph: nir.NIRGraph) -> list[str]:
    """Node names in topological order (``nir.read`` returns them sorted by name); nodes on a
    cycle, if any, come last in name order."""
    preds = {n: {a for a, b in graph.edges if b == n and a != n} for n in graph.nodes}
    order: list[str] = []
    while len(order) < len(preds):
        ready = [n for n in preds if n not in order and preds[n] <= set(order)]
        if not ready:
            return order + [n for n in preds if n not in order]
        order.extend(ready)
    return order


def describe_graph(graph: nir.NIRGraph) -> dict:
    """Nodes (in file order), edges and graph metadata of a NIR graph, as plain values."""
    return {
        "nodes": [describe_node(name, graph.nodes[name]) for name in _in_order(graph)],
        "edges": [list(edge) for edge in graph.edges],
        "metadata": _metadata(graph.metadata or {}),
    }


@dataclass
class LayerSpikes:
    """Spikes of one IF layer over a data set. ``rate``: spikes per neuron per time step."""

    layer: str
    neurons: int
    spikes_per_sample: float
    rate: float


@dataclass
class SimulationStats:
    """``accuracy_per_t`` (%) at t = 1..T (None without labels), spikes per IF layer and, with
    early exit, the mean time steps used (a sample's prediction holds after its exit)."""

    T: int
    samples: int
    accuracy_per_t: list[float] | None
    layers: list[LayerSpikes]
    mean_steps: float | None = None  # time steps used per sample, with early exit

    @property
    def accuracy(self) -> float | None:
        return None if self.accuracy_per_t is None else self.accuracy_per_t[-1]


@torch.no_grad()
def simulate_dataset(
    snn,
    data: DataSet,
    T: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    early_exit: int | None = None,
) -> SimulationStats:
    """Simulate every evaluation batch for ``T`` steps; sum correct predictions per t and spikes
    per layer. ``early_exit``: k of :func:`simulator.simulate` (None: all T steps)."""
    correct = torch.zeros(T, dtype=torch.float64)
    totals: dict[str, float] = {}
    neurons: dict[str, int] = {}
    steps = 0.0
    for x, y in data.batches(batch_size):
        result = simulate(snn, x, T, early_exit=early_exit)
        steps += result.mean_steps() * len(x)
        if y is not None:
            correct += result.correct_per_t(y).cpu()
        for name, counts in result.spike_counts.items():
            totals[name] = totals.get(name, 0.0) + float(counts.sum())
            neurons[name] = int(counts[0].numel())
        if progress is not None:
            progress(len(x))
    n = len(data.x)
    layers = [
        LayerSpikes(name, neurons[name], total / n, total / (n * neurons[name] * T)) for name, total in totals.items()
    ]
    curve = (100.0 * correct / n).tolist() if data.has_labels else None
    return SimulationStats(T, n, curve, layers, steps / n if early_exit else None)


def checkpoints(T: int) -> list[int]:
    """Time steps worth showing: powers of two below T, and T (``[1, 2, 4, ..., T]``)."""
    steps, t = [], 1
    while t < T:
        steps.append(t)
        t *= 2
    return [*steps, T]
