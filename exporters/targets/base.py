"""What every target check shares: the limit table entry, the violation, the report, and the
layers read from a NIR graph as our exporter writes it (metadata included).

A *layer* is one weighted node (``Conv2d``, ``Affine``, ``Linear``) with the neuron it drives
(``IF``; ``I`` for the membrane readout; nothing when it feeds the output directly). Its
*destinations* are the weighted nodes that its neuron's spikes reach through pools and
reshapes; the pool on the way to each is recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np

from exporters.nir_graph import predecessors, successors

WEIGHTED = (nir.Conv2d, nir.Affine, nir.Linear)
POOLS = (nir.SumPool2d, nir.AvgPool2d)
PASS = (nir.Flatten,)


@dataclass(frozen=True)
class Limit:
    """One documented limit of a target.

    ``value`` is ``None`` where the number could not be confirmed; ``source`` says where the
    number comes from (file and line, or document), or why it is unconfirmed. ``signed``: a bit
    width counts a sign bit (False: an unsigned field, e.g. Loihi's 17-bit threshold).
    """

    rule: str
    value: Any
    source: str
    signed: bool = True


@dataclass(frozen=True)
class Violation:
    """One thing that does not fit: the layer (NIR node name), the rule, the limit, the value."""

    layer: str
    rule: str
    limit: str
    value: str

    def line(self) -> str:
        """``layer: rule: value (limit: limit)``, the CLI's one line per violation."""
        return f"{self.layer}: {self.rule}: {self.value} (limit: {self.limit})"


@dataclass
class Report:
    """The result of checking one graph against one target.

    ``violations``: what does not fit; ``resources``: per-layer figures (target-specific keys,
    e.g. Speck's ``core``, ``kernel_memory``, ``neuron_memory``); ``notes``: what the check
    could not confirm.
    """

    target: str
    quantised: bool
    violations: list[Violation] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """True when nothing was violated."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the CLI's ``--json``)."""
        return {
            "target": self.target,
            "fits": self.fits,
            "quantised": self.quantised,
            "violations": [asdict(v) for v in self.violations],
            "resources": self.resources,
            "notes": self.notes,
        }


@dataclass
class Layer:
    """One weighted node and its neuron, read from the graph.

    Shapes are NIR's (no batch axis): ``in_shape``/``out_shape`` ``[C, H, W]`` for a Conv2d,
    ``[C, H, W]`` before the Flatten for an Affine read as a convolution (kernel = the whole
    input, as Sinabs maps a Linear layer). Potentials are in the file's units (integers when
    quantised).
    """

    name: str
    neuron: str | None
    neuron_kind: str  # "IF", "I" or "none"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    weight: np.ndarray
    bias: np.ndarray | None
    thresholds: np.ndarray | None
    reset: str | None
    destinations: list[tuple[str, int]]  # (weighted node, pool kernel on the way; 1: none)
    pool_shapes: list[tuple[int, int, int, int]]  # (kernel_h, kernel_w, stride_h, stride_w) after the neuron
    n_inputs: int  # incoming edges of the weighted node
    v_reset: np.ndarray | None = None  # the IF node's v_reset (where reset to zero goes), file units
    spike_rule: str | None = None  # the IF node's spike_rule metadata (">=", ">", "multi", "signed")


def _pair(value: Any) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(arr[0]), int(arr[-1]))


def _shape(node: Any, key: str) -> tuple[int, ...]:
    types = node.input_type if key == "input" else node.output_type
    return tuple(int(s) for s in np.asarray(types[key]).ravel())


def _input_shape(graph: nir.NIRGraph, name: str) -> tuple[int, ...]:
    """The shape reaching ``name``, looking back through Flatten nodes (an Affine's [C, H, W])."""
    node = graph.nodes[name]
    while True:
        preds = predecessors(graph.edges, name)
        if len(preds) == 1 and isinstance(graph.nodes[preds[0]], nir.Flatten):
            name = preds[0]
            node = graph.nodes[name]
            continue
        return _shape(node, "input")


def _neuron_of(graph: nir.NIRGraph, name: str) -> str | None:
    """The IF / I node the weighted node ``name`` drives (through pools and reshapes)."""
    todo = successors(graph.edges, name)
    while todo:
        nxt = todo.pop(0)
        node = graph.nodes[nxt]
        if isinstance(node, (nir.IF, nir.I, nir.LIF, nir.CubaLIF)):
            return nxt
        if isinstance(node, POOLS + PASS):
            todo.extend(successors(graph.edges, nxt))
    return None


def _destinations(graph: nir.NIRGraph, start: str) -> tuple[list[tuple[str, int]], list[tuple[int, int, int, int]]]:
    """Weighted nodes that ``start``'s output reaches through pools/reshapes, with the product of
    the pool kernels on the way (1: none); and each pool's (kh, kw, sh, sw)."""
    found: dict[str, int] = {}
    pools: list[tuple[int, int, int, int]] = []
    todo = [(s, 1) for s in successors(graph.edges, start)]
    while todo:
        nxt, pool = todo.pop(0)
        node = graph.nodes[nxt]
        if isinstance(node, WEIGHTED) or isinstance(node, nir.Output):
            if isinstance(node, WEIGHTED):
                found.setdefault(nxt, pool)
            continue
        if isinstance(node, POOLS):
            kh, kw = _pair(node.kernel_size)
            sh, sw = _pair(node.stride)
            pools.append((kh, kw, sh, sw))
            todo.extend((s, pool * kh) for s in successors(graph.edges, nxt))
        elif isinstance(node, PASS):
            todo.extend((s, pool) for s in successors(graph.edges, nxt))
        else:  # another kind of node (a Scale, a join): counted as a destination of its own
            found.setdefault(nxt, pool)
    return list(found.items()), pools


def read_layers(graph: nir.NIRGraph) -> list[Layer]:
    """The weighted layers of ``graph`` in topological order (see :class:`Layer`)."""
    from exporters.nir_graph import topological_order

    layers = []
    for name in topological_order(list(graph.nodes), list(graph.edges)):
        node = graph.nodes[name]
        if not isinstance(node, WEIGHTED):
            continue
        neuron = _neuron_of(graph, name)
        nnode = graph.nodes[neuron] if neuron else None
        weight = np.asarray(node.weight, dtype=np.float64)
        bias = np.asarray(node.bias, dtype=np.float64) if hasattr(node, "bias") else None
        if isinstance(node, nir.Conv2d):
            kernel = (int(weight.shape[2]), int(weight.shape[3]))
            stride = _pair(node.stride)
            in_c, out_c = int(weight.shape[1]), int(weight.shape[0])
            out = _shape(node, "output")
            out_hw = (out[1], out[2]) if len(out) == 3 else (1, 1)
        else:
            shape = _input_shape(graph, name)
            in_c = shape[0]
            kernel = (shape[1], shape[2]) if len(shape) == 3 else (1, 1)
            stride, out_c, out_hw = (1, 1), int(weight.shape[0]), (1, 1)
        thresholds = np.asarray(nnode.v_threshold, dtype=np.float64) if isinstance(nnode, nir.IF) else None
        reset, v_reset, rule = None, None, None
        if isinstance(nnode, nir.IF):
            reset = str((nnode.metadata or {}).get("reset", "zero"))
            rule = str((nnode.metadata or {}).get("spike_rule", ">"))
            v_reset = None if nnode.v_reset is None else np.asarray(nnode.v_reset, dtype=np.float64)
        dests, pools = _destinations(graph, neuron) if neuron else ([], [])
        layers.append(
            Layer(
                name,
                neuron,
                type(nnode).__name__ if nnode is not None else "none",
                kernel,
                stride,
                in_c,
                out_c,
                out_hw,
                weight,
                bias,
                thresholds,
                reset,
                dests,
                pools,
                len(predecessors(graph.edges, name)),
                v_reset,
                rule,
            )
        )
    return layers


def is_integer(values: np.ndarray | None) -> bool:
    """True when every value is a whole number (an empty or missing array counts)."""
    return values is None or bool(np.all(np.asarray(values) == np.round(values)))


def bits_signed(values: np.ndarray | None) -> int:
    """The signed integer width that holds every value of ``values``: 8 for ±127, 9 for 128."""
    if values is None or np.asarray(values).size == 0:
        return 0
    top = int(np.max(np.abs(values)))
    return top.bit_length() + 1 if top else 0


def bits_unsigned(values: np.ndarray | None) -> int:
    """The unsigned width that holds every value of ``values`` (17 for 131071); a negative value
    needs a sign: ``bits_signed``."""
    if values is None or np.asarray(values).size == 0:
        return 0
    if np.min(values) < 0:
        return bits_signed(values)
    return int(np.max(values)).bit_length()


def quantisation(graph: nir.NIRGraph) -> dict[str, Any] | None:
    """The ``quantization`` record our exporter writes (bit widths, factors), or ``None``."""
    raw = graph.metadata.get("quantization") if graph.metadata else None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(str(raw)) if not isinstance(raw, dict) else raw


def input_encoding(graph: nir.NIRGraph) -> str:
    """The file's ``input_encoding`` metadata (``"constant"`` when absent)."""
    raw = (graph.metadata or {}).get("input_encoding", "constant")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def common_rules(layers: list[Layer], limits: dict[str, Limit], quantised: bool) -> list[Violation]:
    """The rules several targets share, each applied when ``limits`` has it: ``weight_bits``,
    ``bias_bits``, ``threshold_bits`` (signed widths of the integer values), ``one_threshold``
    (one threshold per layer), ``bias`` (False: no bias allowed), ``resets`` (allowed reset
    rules), ``reset_to_zero`` (True: a reset to ``v_reset`` must go to 0, as the chip's reset
    to zero does), ``spiking_output`` (every weighted layer drives an IF neuron),
    ``unsigned_spikes`` (True: the chip's events carry no sign, so no ``spike_rule="signed"``)."""
    out: list[Violation] = []
    for layer in layers:
        thr = layer.thresholds
        if "one_threshold" in limits and thr is not None and thr.size and np.unique(thr).size > 1:
            values = np.unique(thr)
            out.append(
                Violation(layer.neuron or layer.name, "one threshold per layer", "1", f"{values.size} thresholds")
            )
        if "bias" in limits and limits["bias"].value is False and layer.bias is not None and np.any(layer.bias):
            n = int(np.count_nonzero(layer.bias))
            out.append(Violation(layer.name, "bias", "none", f"{n} non-zero biases"))
        if "resets" in limits and layer.reset is not None and layer.reset not in limits["resets"].value:
            out.append(Violation(layer.neuron or layer.name, "reset", "/".join(limits["resets"].value), layer.reset))
        if (
            limits.get("reset_to_zero", Limit("", False, "")).value
            and layer.reset == "zero"
            and layer.v_reset is not None
            and np.any(layer.v_reset)
        ):
            values = np.unique(layer.v_reset)
            shown = ", ".join(f"{v:g}" for v in values[:3]) + (", ..." if values.size > 3 else "")
            out.append(Violation(layer.neuron or layer.name, "reset value", "v_reset = 0", f"v_reset = {shown}"))
        if limits.get("unsigned_spikes", Limit("", False, "")).value and layer.spike_rule == "signed":
            out.append(Violation(layer.neuron or layer.name, "spike sign", "unsigned events", "signed (-1 spikes)"))
        if "spiking_output" in limits and layer.neuron_kind != "IF":
            value = "membrane readout (I)" if layer.neuron_kind == "I" else "no neuron"
            out.append(Violation(layer.neuron or layer.name, "spiking layer", "IF neurons", value))
        if not quantised:
            continue
        checked: tuple[tuple[str, np.ndarray | None, str], ...] = (
            ("weight_bits", layer.weight, layer.name),
            ("bias_bits", layer.bias, layer.name),
            ("threshold_bits", thr, layer.neuron or layer.name),
        )
        for key, array, who in checked:
            if key not in limits or limits[key].value is None:
                continue
            limit = limits[key]
            width = bits_signed(array) if limit.signed else bits_unsigned(array)
            kind = "" if limit.signed else " unsigned"
            if width > limit.value:
                out.append(Violation(who, key.replace("_", " "), f"{limit.value} bits{kind}", f"{width} bits"))
    return out
