"""A generic 8-bit integer target (our own definition, not a chip): 8-bit signed weights,
16-bit biases, thresholds and state (a bias is added to the 16-bit state each step, as int8
inference keeps biases at the accumulator's width), one threshold per layer, any reset rule."""

from __future__ import annotations

import nir

from exporters.targets.base import Limit, Report, Violation, common_rules, quantisation, read_layers

NAME = "int8"
OURS = "ann2snn's generic int8 target (a definition, no chip)"

LIMITS: dict[str, Limit] = {
    "weight_bits": Limit("weight bits", 8, OURS),
    "bias_bits": Limit("bias bits", 16, OURS + ": added to the 16-bit state"),
    "threshold_bits": Limit("threshold bits", 16, OURS),
    "state_bits": Limit("state bits", 16, OURS),
    "one_threshold": Limit("one threshold per layer", 1, OURS),
}


def check_graph(graph: nir.NIRGraph) -> Report:
    """Check a NIR graph against the generic int8 target.

    Returns:
        A :class:`Report`; resources: neurons per IF layer.
    """
    quant = quantisation(graph)
    report = Report(NAME, quant is not None)
    if quant is None:
        report.violations.append(
            Violation(
                "graph", "not quantised", "8-bit integer weights", "float weights: run ann2snn convert --target int8"
            )
        )
    layers = read_layers(graph)
    report.violations += common_rules(layers, LIMITS, quant is not None)
    for layer in layers:
        if layer.thresholds is not None:
            report.resources.append(
                {"layer": layer.name, "neuron": layer.neuron, "neurons": int(layer.thresholds.size)}
            )
    return report
