"""SpiNNaker2 through py-spinnaker2, which reads NIR directly.

Sources: issue 13's reading of py-spinnaker2 (reset by subtraction or to zero selectable;
neurons per core set by the user). Weight and state widths are not confirmed here (py-spinnaker2
could not be installed in this environment: see interop/README.md), so no bit width is checked.
"""

from __future__ import annotations

import nir

from exporters.targets.base import Limit, Report, common_rules, quantisation, read_layers

NAME = "spinnaker2"
ISSUE = "issue 13 (py-spinnaker2); not re-read in its code here"

LIMITS: dict[str, Limit] = {
    "resets": Limit("reset", ("subtract", "zero"), ISSUE),
    "weight_bits": Limit("weight bits", None, "not confirmed (py-spinnaker2 not installable here)"),
    "neurons_per_core": Limit("neurons per core", None, ISSUE + ": set by the user"),
}


def check_graph(graph: nir.NIRGraph) -> Report:
    """Check a NIR graph against SpiNNaker2 (the reset rule; other limits unconfirmed).

    Returns:
        A :class:`Report`; resources: neurons per IF layer.
    """
    report = Report(NAME, quantisation(graph) is not None)
    report.notes.append("weight and state widths unconfirmed: not checked")
    layers = read_layers(graph)
    report.violations += common_rules(layers, LIMITS, report.quantised)
    for layer in layers:
        if layer.thresholds is not None:
            report.resources.append(
                {"layer": layer.name, "neuron": layer.neuron, "neurons": int(layer.thresholds.size)}
            )
    return report
