"""What ann2snn reports about a ``.nir`` file: its nodes, shapes, parameter ranges and metadata
(:func:`describe_graph`, ``ann2snn inspect``), its behaviour on data (:func:`simulate_file`,
``ann2snn simulate``), and whether it reproduces its embedded reference and what other readers'
rules do with it (:func:`check_file`, ``ann2snn verify``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
import torch

from ann2snn.data import DataSet, DataSource, load_data
from exporters.nir_graph import topological_order
from exporters.semantics import graph_metadata, plain
from exporters.verify import ReaderRun, SelfCheck
from simulator import evaluate

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
    (the reference vectors of a self-checking file would otherwise fill the screen), and so the
    per-channel λ lists of ``channel_lambdas`` (count and range per layer)."""
    out = {}
    for key, value in meta.items():
        value = plain(value)
        if isinstance(value, np.ndarray) and value.size > 1:
            value = f"array {list(value.shape)} [{value.min():.4g}, {value.max():.4g}]"
        elif key == "channel_lambdas" and isinstance(value, str):
            value = _channel_lambdas_summary(value)
        out[key] = value
    return out


def _channel_lambdas_summary(text: str) -> str:
    """``channel_lambdas`` JSON as ``layer: C values [min, max]; ...`` (the text itself if it is not
    a JSON object of lists of numbers)."""
    try:
        lists = json.loads(text)
        parts = [f"{name}: {len(v)} values [{min(v):.4g}, {max(v):.4g}]" for name, v in sorted(lists.items())]
    except (ValueError, TypeError, AttributeError):
        return text
    return "; ".join(parts)


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


def describe_graph(graph: nir.NIRGraph) -> dict:
    """Nodes (in topological order; nodes on a cycle last), edges and graph metadata of a NIR graph, as
    plain values (:func:`exporters.nir_graph.topological_order`), and its :func:`hardware` summary."""
    return {
        "nodes": [
            describe_node(name, graph.nodes[name])
            for name in topological_order(graph.nodes, graph.edges, cycles="last")
        ],
        "edges": [list(edge) for edge in graph.edges],
        "metadata": _metadata(graph.metadata or {}),
        "hardware": hardware(graph),
    }


def hardware(graph: nir.NIRGraph) -> dict:
    """What a chip needs to know about a file: the input encoding and the node where events
    enter, the weight and state widths, and per IF node its saturation (``state_bits``), whether
    its state is integer, and :func:`converter.quantize`'s record (the factor, the integer
    threshold and V[0], the bits the threshold needs).

    Returns:
        ``{"input_encoding": str, "events_enter_at": node name or None (analog input),
        "weight_bits": int or None, "state_bits": int or None, "layers": [dict per IF node]}``.

    Raises:
        ValueError: bad graph metadata (:func:`exporters.semantics.graph_metadata`).
    """
    meta = graph_metadata(graph)
    encoding = str(meta.get("input_encoding", "constant"))
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    quantized = (meta.get("quantization") or {}).get("layers", {})
    layers = []
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF):
            node_meta = {k: plain(v) for k, v in (node.metadata or {}).items()}
            record = quantized.get(name, {})
            layers.append(
                {
                    "layer": name,
                    "state_bits": node_meta.get("state_bits"),
                    "integer": bool(node_meta.get("integer", False)),
                    "factor": record.get("factor"),
                    "threshold": record.get("threshold"),
                    "threshold_bits": record.get("threshold_bits"),
                    "v_init": record.get("v_init"),
                }
            )
    return {
        "input_encoding": encoding,
        "events_enter_at": inputs[0] if inputs and encoding != "constant" else None,
        "weight_bits": meta.get("weight_bits"),
        "state_bits": meta.get("state_bits") or max((r["state_bits"] or 0 for r in layers), default=0) or None,
        "layers": layers,
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

    early_exit: int | None = None  # k stable steps, or None

    @property
    def accuracy(self) -> float | None:
        return None if self.accuracy_per_t is None else self.accuracy_per_t[-1]

    def to_dict(self) -> dict:
        """Plain values for ``--json``."""
        return {
            "T": self.T,
            "samples": self.samples,
            "accuracy": self.accuracy,
            "accuracy_per_t": self.accuracy_per_t,
            "early_exit": self.early_exit,
            "mean_steps": self.mean_steps,
            "layers": [vars(layer) for layer in self.layers],
        }


@torch.no_grad()
def simulate_dataset(
    snn,
    data: DataSet,
    T: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    early_exit: int | None = None,
    cpu_kernels: str = "torch",
) -> SimulationStats:
    """Simulate every evaluation batch for ``T`` steps (:func:`simulator.evaluate`): accuracy per t
    and spikes per layer. ``early_exit``, ``cpu_kernels``: as :func:`simulator.simulate` takes
    them (None: all T steps; ``"torch"``: no compiled kernels)."""
    ev = evaluate(snn, data.batches(batch_size), T, progress, early_exit=early_exit, cpu_kernels=cpu_kernels)
    layers = [LayerSpikes(name, ev.neurons[name], ev.spikes_per_sample[name], ev.rates[name]) for name in ev.spikes]
    curve = None if ev.accuracy_per_t is None else ev.accuracy_per_t.tolist()
    return SimulationStats(T, ev.samples, curve, layers, ev.mean_steps if early_exit else None, early_exit)


def display_steps(T: int) -> list[int]:
    """Time steps worth showing: powers of two below T, and T (``[1, 2, 4, ..., T]``)."""
    steps, t = [], 1
    while t < T:
        steps.append(t)
        t *= 2
    return [*steps, T]


class MissingTError(ValueError):
    """A ``.nir`` file that stores no T, and no T was given."""


def file_T(path, meta: dict, T: int | None) -> int:
    """``T`` if given, else the file's recorded T.

    Raises:
        MissingTError: neither is there (the message names the file).
    """
    T = T or meta.get("T")
    if not T:
        raise MissingTError(f"{path} stores no T: pass --T")
    return int(T)


def _input_shape(graph: nir.NIRGraph) -> tuple[int, ...] | None:
    return tuple(int(v) for v in graph.nodes["input"].input_type["input"]) or None


def open_for_simulation(
    path, data: DataSource, T: int | None = None, limit: int = 1000, device: str = "cpu"
) -> tuple[torch.nn.Module, DataSet, int]:
    """Import the ``.nir`` file ``path`` (on ``device``) and read the first ``limit`` samples of
    ``data`` (0: all), reshaped to the file's input shape when their sizes agree.

    Returns:
        ``(snn, dataset, T)`` with ``T`` as given, else the file's.

    Raises:
        MissingTError: no T given and none in the file. ValueError: the data cannot be read or
            does not fit (:func:`ann2snn.data.load_data`). exporters.NIRImportError: the file.
    """
    from exporters import import_nir
    from simulator import META_KEY

    snn = import_nir(path).to(device)
    meta = snn.meta[META_KEY]
    T = file_T(path, meta, T)
    dataset = load_data(
        data, calib_size=0, calibrate=False, limit=limit, input_shape=tuple(meta["input_shape"]) or None
    )
    return snn, dataset, T


def simulate_file(
    path,
    data: DataSource,
    T: int | None = None,
    limit: int = 1000,
    batch_size: int = 100,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    early_exit: int | None = None,
) -> SimulationStats:
    """Simulate the ``.nir`` file ``path`` on data: :func:`open_for_simulation`, then
    :func:`simulate_dataset` (same errors)."""
    snn, dataset, T = open_for_simulation(path, data, T, limit, device)
    return simulate_dataset(snn, dataset, T, batch_size, progress, early_exit)


@dataclass
class FileCheck:
    """What :func:`check_file` found: the self-check against the embedded reference (None for a
    file written without T when data is given) and, with data, one run per kind of reader's rules
    (:class:`exporters.verify.ReaderRun`)."""

    file: str
    self_check: SelfCheck | None
    T: int | None = None
    data: str | None = None
    readers: list[ReaderRun] | None = None

    @property
    def equal(self) -> bool:
        """Whether the self-check passed (True when there was none)."""
        return self.self_check is None or self.self_check.equal

    def message(self) -> str:
        """One line on the self-check."""
        check = self.self_check
        if check is None:
            return f"{self.file}: no reference vector in the file (written without T); not self-checked"
        verdict = "reproduced exactly" if check.equal else f"DIFFERS (max |difference| {check.max_abs_diff:g})"
        return f"{self.file}: reference of {check.samples} inputs over T={check.T} steps {verdict}"

    def to_dict(self) -> dict:
        """Plain values for ``--json``."""
        from exporters.verify import READER_KINDS

        out: dict = {"file": self.file, "self_check": None if self.self_check is None else vars(self.self_check)}
        if self.readers is not None:
            fields = ("accuracy", "samples", "spikes", "count_diff", "neurons_differing", "neurons")
            out |= {
                "T": self.T,
                "data": self.data,
                "readers": [
                    {"rules": r.semantics, "reader": READER_KINDS[r.semantics], **{f: getattr(r, f) for f in fields}}
                    for r in self.readers
                ],
            }
        return out


def check_file(
    path,
    data: DataSource | None = None,
    T: int | None = None,
    limit: int = 1000,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> FileCheck:
    """Reproduce the reference outputs embedded in the ``.nir`` file ``path``
    (:func:`exporters.verify_file`) and, with ``data``, simulate its first ``limit`` samples for
    ``T`` steps (default: the file's T) under each kind of reader's rules
    (:func:`exporters.verify.compare_readers`).

    Raises:
        MissingTError: data given, no T given and none in the file or its reference.
        ValueError: unreadable data. exporters.NIRImportError: the file.
    """
    from exporters import graph_metadata, read_nir, verify_file
    from exporters.verify import compare_readers

    graph = read_nir(path)
    meta = graph_metadata(graph)
    check = verify_file(path) if "reference_output" in meta or data is None else None
    result = FileCheck(str(path), check)
    if data is None:
        return result
    result.T = file_T(path, meta, T or (check.T if check else None))
    result.data = str(data)
    dataset = load_data(data, calib_size=0, calibrate=False, limit=limit, input_shape=_input_shape(graph))

    def batches():
        for x, y in dataset.batches(batch_size):
            yield x, y
            if progress is not None:
                progress(len(x))

    result.readers = compare_readers(path, batches(), result.T)
    return result
