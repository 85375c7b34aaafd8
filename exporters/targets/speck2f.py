"""SynSense Speck 2f (DYNAP-CNN cores): the limits, Sinabs' memory formula and core mapping.

Every number is from Sinabs 3.1.3 (``sinabs/backend/dynapcnn``), the code, not the prose:

- per-core kernel / neuron / bias memory: ``chips/dynapcnn.py``, ``get_constraints`` (Speck 2f's
  ``chips/speck2f.py`` inherits it unchanged);
- the memory a layer needs: ``dynapcnn_layer.py``, ``DynapcnnLayer.memory_summary``:
  ``kernel = c · 2^(⌈log2(k_h k_w)⌉ + ⌈log2 f⌉)``, ``neuron = f · 2^(⌈log2 h⌉ + ⌈log2 w⌉)``
  (``c`` input, ``f`` output channels, ``h × w`` the layer's output), ``bias = f`` when the
  layer has a bias;
- a layer fits a core when all three fit (``mapping.py``, ``LayerConstraints.fits``); layers are
  matched to cores by Edmonds–Karp max flow (``mapping.py``, ``get_valid_mapping``), reproduced
  here edge for edge so that the core numbers agree;
- 8-bit weights *and biases*, 16-bit state and thresholds: ``discretize.py``,
  ``DYNAPCNN_WEIGHT_PRECISION_BITS = 8`` (also used for the bias), ``DYNAPCNN_STATE_PRECISION_BITS = 16``;
  ``discretize_conv_spike_`` scales a layer's weights, bias, thresholds and state by *one*
  factor, the smallest of ``determine_discretization_scale(weight, 8)``,
  ``(bias, 8)`` and ``((min_v_mem, threshold), 16)`` (``127 / max`` or ``128 / |min|``), then
  rounds: a bias wider than 8 bits makes Sinabs shrink the whole layer, so the biases we keep are
  8-bit integers at the layer's own weight scale (``converter.quantize(bias_bits=8)``);
- the bias is the chip's *leak*: ``chips/dynapcnn.py``, ``get_dynapcnn_layer_config_dict``,
  ``config_dict["biases"] = biases.int()`` and ``leak_enable = biases.bool().any()``; the chip
  adds it to every neuron of the layer once per slow-clock tick (Sinabs docs
  ``speck/overview`` "Leak operation", ``speck/notebooks/leak_neuron``: ``slow_clk_frequency``
  of ``DynapcnnNetwork.to``), while Sinabs' software forward (``DynapcnnLayer.forward``: the
  conv with its bias, then ``IAFSqueeze``) adds it once per time step, as our simulator does.
  The two agree only when the chip runs one slow-clock tick per time step (``LEAK_NOTE``);
- at most two destinations per layer: ``exceptions.py`` (``MaxDestinationsReached``);
- square kernels and square pooling: ``dynapcnn_layer.py`` (``DynapcnnLayer.__init__``);
- the graph: ``connectivity_specs.py`` — nodes are weights (Conv2d, Linear), ``IAFSqueeze``
  neurons, sum/average pools (``SupportedNodeTypes``); edges weight → neuron → pool → weight
  (``VALID_SINABS_EDGE_TYPES``); only a ``Merge`` joins inputs, and it feeds a weight layer
  (``LAYER_TYPES_WITH_MULTIPLE_INPUTS``): spikes of two layers may meet at a convolution, but
  currents may not be summed into a neuron (a residual add of a skip current).

- reset to zero goes to 0 (``chips/dynapcnn.py``: ``return_to_zero`` is a flag, the chip has no
  reset value), reset by subtraction subtracts ``threshold_high``.

Kernel ≤ 16, strides 1/2/4/8, ≤ 1024 channels (feature maps) and pooling 1/2/4 are samna's
chip pages ("CNN Layer": max kernel size 16x16, stride {1, 2, 4, 8}, max feature number 1024,
pooling 1:1, 1:2, 1:4, fanout 2; synsense-sys-int.gitlab.io/samna, models/speckSeries/speck2e,
the DYNAP-CNN core Speck 2f shares) and Sinabs' ``speck/overview`` page; Sinabs 3.1.3's Python
code does not check them (samna, the closed driver, validates a configuration on the device).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import nir
import numpy as np

from exporters.nir_graph import predecessors
from exporters.targets.base import (
    Layer,
    Limit,
    Report,
    Violation,
    common_rules,
    input_encoding,
    quantisation,
    read_layers,
)

NAME = "speck2f"
SINABS = "sinabs 3.1.3 sinabs/backend/dynapcnn/"
DOCS = "samna docs speckSeries (CNN layer) and Sinabs docs speck/overview; not checked in Sinabs 3.1.3 code"

#: Kernel memory per core, in weights (``chips/dynapcnn.py``, ``get_constraints``).
KERNEL_MEMORY = (16384, 16384, 16384, 32768, 32768, 65536, 65536, 16384, 16384)
#: Neuron memory per core, in neurons (same place).
NEURON_MEMORY = (65536, 65536, 65536, 32768, 32768, 16384, 16384, 16384, 16384)
#: Bias memory per core, in biases (same place).
BIAS_MEMORY = (1024,) * 9

LIMITS: dict[str, Limit] = {
    "cores": Limit("cores", 9, SINABS + "chips/dynapcnn.py get_constraints (9 entries)"),
    "weight_bits": Limit("weight bits", 8, SINABS + "discretize.py DYNAPCNN_WEIGHT_PRECISION_BITS"),
    "bias_bits": Limit(
        "bias bits",
        8,
        SINABS + "discretize.py discretize_conv_spike_: determine_discretization_scale(conv_bias, "
        "DYNAPCNN_WEIGHT_PRECISION_BITS), one factor with the weights and threshold",
    ),
    "threshold_bits": Limit("threshold bits", 16, SINABS + "discretize.py DYNAPCNN_STATE_PRECISION_BITS"),
    "state_bits": Limit("state bits", 16, SINABS + "discretize.py DYNAPCNN_STATE_PRECISION_BITS"),
    "destinations": Limit("destinations", 2, SINABS + "exceptions.py MaxDestinationsReached"),
    "square_kernel": Limit("square kernel", True, SINABS + "dynapcnn_layer.py DynapcnnLayer.__init__"),
    "kernel": Limit("kernel size", 16, DOCS),
    "strides": Limit("stride", (1, 2, 4, 8), DOCS),
    "channels": Limit("channels", 1024, DOCS),
    "pools": Limit("sum pooling", (1, 2, 4), DOCS),
    "one_threshold": Limit("one threshold per layer", 1, SINABS + "discretize.py (one spike_threshold per IAF layer)"),
    "resets": Limit("reset", ("subtract", "zero"), SINABS + "chips/dynapcnn.py (MembraneSubtract / MembraneReset)"),
    "reset_to_zero": Limit("reset value", True, SINABS + "chips/dynapcnn.py return_to_zero (to 0, no reset value)"),
    "bias": Limit(
        "bias",
        False,
        "Sinabs docs speck/overview 'Leak operation': the bias is added once per slow-clock tick as a leak "
        "(chips/dynapcnn.py leak_enable), not per input step; allowed with convert --target-bias leak",
    ),
    "spiking_output": Limit("spiking layer", True, SINABS + "DynapcnnLayer: conv -> IAF -> pool"),
    "node_types": Limit(
        "node type",
        ("Input", "Output", "Conv2d", "Affine", "Linear", "IF", "SumPool2d", "AvgPool2d", "Flatten"),
        SINABS + "connectivity_specs.py SupportedNodeTypes",
    ),
    "neuron_inputs": Limit(
        "inputs of a neuron layer", 1, SINABS + "connectivity_specs.py LAYER_TYPES_WITH_MULTIPLE_INPUTS (Merge only)"
    ),
    "input": Limit("input", "spikes", "DYNAP-CNN receives events (DVS or spike input)"),
    "unsigned_spikes": Limit(
        "spike sign", True, "samna's speck2f Spike event (layer, feature, x, y, timestamp): no sign or payload"
    ),
}


#: What a file converted with ``--target-bias leak`` asks of the chip (a report note).
LEAK_NOTE = (
    "biases kept as Speck's leak (convert --target-bias leak): the chip adds them once per slow-clock tick, "
    "our simulation and Sinabs' forward once per time step, so run the chip with one slow-clock tick per time "
    "step (DynapcnnNetwork.to(..., slow_clk_frequency=steps per second)); SynSense discourages the leak and its "
    "FAQ asks for negative biases ('available_algorithmic_operation': 'Make sure the bias is lower than 0'); "
    "not verified on a chip here"
)


def memory(layer: Layer) -> dict[str, int]:
    """Sinabs' memory figures for one layer (``DynapcnnLayer.memory_summary``): kernel, neuron, bias."""
    kh, kw = (max(k, 1) for k in layer.kernel)  # an empty layer (0 x 0) counts as 1 x 1, not a crash
    h, w = (max(n, 1) for n in layer.out_hw)
    f, c = max(layer.out_channels, 1), layer.in_channels
    return {
        "kernel": c * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(f))),
        "neuron": f * 2 ** (math.ceil(math.log2(h)) + math.ceil(math.log2(w))),
        "bias": 0 if layer.bias is None else len(layer.bias),
    }


def fitting_cores(need: dict[str, int]) -> list[int]:
    """The cores whose kernel, neuron and bias memory all hold ``need`` (``find_chip_layers``)."""
    return [
        i
        for i in range(len(KERNEL_MEMORY))
        if need["kernel"] <= KERNEL_MEMORY[i] and need["neuron"] <= NEURON_MEMORY[i] and need["bias"] <= BIAS_MEMORY[i]
    ]


def map_cores(candidates: list[list[int]], n_cores: int = 9) -> list[int | None]:
    """One core per layer, by the same Edmonds–Karp max flow as Sinabs' ``get_valid_mapping``
    (same node numbering and edge order, so the same assignment); ``None`` for an unmapped layer."""
    n = len(candidates)
    sink = n + n_cores + 1
    cap: dict[tuple[int, int], int] = {}
    adj: list[list[int]] = [[] for _ in range(sink + 1)]

    def edge(s: int, t: int) -> None:
        cap[(s, t)] = 1
        cap.setdefault((t, s), 0)
        adj[s].append(t)
        adj[t].append(s)

    for i in range(n):
        edge(0, i + 1)
    for i, cores in enumerate(candidates):
        for core in cores:
            edge(i + 1, core + n + 1)
    for core in range(n_cores):
        edge(core + n + 1, sink)
    flow = dict.fromkeys(cap, 0)
    while True:
        pred: list[int | None] = [None] * (sink + 1)
        queue = deque([0])
        while queue:
            cur = queue.popleft()
            for t in adj[cur]:
                if pred[t] is None and t != 0 and cap[(cur, t)] > flow[(cur, t)]:
                    pred[t] = cur
                    queue.append(t)
        if pred[sink] is None:
            break
        t = sink
        while t != 0:
            s = pred[t] or 0
            flow[(s, t)] += 1
            flow[(t, s)] -= 1
            t = s
    result: list[int | None] = []
    for i, cores in enumerate(candidates):
        hit = [c for c in cores if flow[(i + 1, c + n + 1)] == 1]
        result.append(hit[0] if hit else None)
    return result


def _shape_rules(layer: Layer) -> list[Violation]:
    out = []
    kh, kw = layer.kernel
    if kh != kw:
        out.append(Violation(layer.name, "square kernel", "k x k", f"{kh}x{kw}"))
    if max(kh, kw) > LIMITS["kernel"].value:
        out.append(Violation(layer.name, "kernel size", f"<= {LIMITS['kernel'].value}", str(max(kh, kw))))
    for s in set(layer.stride):
        if s not in LIMITS["strides"].value:
            out.append(Violation(layer.name, "stride", "1/2/4/8", str(s)))
    for key, value in (("input channels", layer.in_channels), ("output channels", layer.out_channels)):
        if value > LIMITS["channels"].value:
            out.append(Violation(layer.name, key, f"<= {LIMITS['channels'].value}", str(value)))
    if len(layer.destinations) > LIMITS["destinations"].value:
        names = ", ".join(d for d, _ in layer.destinations)
        out.append(
            Violation(layer.neuron or layer.name, "destinations", "<= 2", f"{len(layer.destinations)} ({names})")
        )
    for kh_, kw_, sh, sw in layer.pool_shapes:
        if kh_ != kw_ or (kh_, kw_) != (sh, sw) or kh_ not in LIMITS["pools"].value:
            out.append(
                Violation(
                    layer.neuron or layer.name,
                    "sum pooling",
                    "1/2/4, square, stride = kernel",
                    f"{kh_}x{kw_} stride {sh}x{sw}",
                )
            )
    return out


def _graph_rules(graph: nir.NIRGraph) -> list[Violation]:
    """Node types Sinabs maps to a core, and no current summed into a neuron from two places."""
    out = []
    allowed = LIMITS["node_types"].value
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in allowed and kind != "I":  # an I node (membrane readout): the spiking-layer rule says it
            out.append(Violation(name, "node type", "conv/linear, IF, sum pool, flatten", kind))
        n_in = len(predecessors(graph.edges, name))
        if isinstance(node, nir.IF) and n_in > 1:
            sources = ", ".join(predecessors(graph.edges, name))
            out.append(
                Violation(
                    name, "inputs of a neuron layer", "1 (Merge joins spikes before a conv)", f"{n_in} ({sources})"
                )
            )
    return out


def _positive_leaks(layers: list[Layer]) -> list[str]:
    """One note per layer with positive biases (SynSense's FAQ asks for negative leaks)."""
    notes = []
    for layer in layers:
        if layer.bias is not None and np.any(layer.bias > 0):
            n = int(np.count_nonzero(layer.bias > 0))
            notes.append(f"{layer.name}: {n} of {layer.bias.size} biases (leaks) are positive")
    return notes


def check_graph(graph: nir.NIRGraph) -> Report:
    """Check a NIR graph (as our exporter writes it) against Speck 2f.

    Returns:
        A :class:`Report`: violations by layer; resources per layer (``layer``, ``core``,
        ``kernel_memory``, ``neuron_memory``, ``bias_memory``, and the budget of its core).
    """
    quant = quantisation(graph)
    report = Report(NAME, quant is not None)
    layers = read_layers(graph)
    if quant is None:
        report.violations.append(
            Violation(
                "graph", "not quantised", "8-bit integer weights", "float weights: run ann2snn convert --target speck2f"
            )
        )
    encoding = input_encoding(graph)
    if encoding == "constant":
        report.violations.append(
            Violation("input", "input", "spikes (events)", "constant analog current (needs input_encoding='rate')")
        )
    leak = quant is not None and quant.get("bias") == "leak"
    limits = {k: v for k, v in LIMITS.items() if not (leak and k == "bias")}
    report.violations += common_rules(layers, limits, quant is not None)
    if leak:
        report.notes.append(LEAK_NOTE)
        report.notes += _positive_leaks(layers)
    elif any(layer.bias is not None and np.any(layer.bias) for layer in layers):
        report.notes.append("a bias is Speck's leak: convert with --target-bias leak to keep the biases as one")
    report.violations += _graph_rules(graph)
    for layer in layers:
        report.violations += _shape_rules(layer)
    if len(layers) > LIMITS["cores"].value:
        report.violations.append(Violation("graph", "cores", "9 layers", f"{len(layers)} layers"))
    needs = [memory(layer) for layer in layers]
    cores = map_cores([fitting_cores(need) for need in needs])
    for layer, need, core in zip(layers, needs, cores, strict=True):
        row: dict[str, Any] = {"layer": layer.name, "neuron": layer.neuron, "core": core}
        row.update({f"{k}_memory": v for k, v in need.items()})
        if core is not None:
            row.update(
                kernel_budget=KERNEL_MEMORY[core], neuron_budget=NEURON_MEMORY[core], bias_budget=BIAS_MEMORY[core]
            )
        else:
            report.violations.append(
                Violation(
                    layer.name,
                    "core memory",
                    "a free core with kernel <= 65536, neuron <= 65536, bias <= 1024",
                    f"kernel {need['kernel']}, neuron {need['neuron']}, bias {need['bias']}",
                )
            )
        report.resources.append(row)
    return report
