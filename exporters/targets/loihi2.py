"""Intel Loihi 2 through Lava (lava-nc) and lava-dl's NIR path: the limits and their check.

Sources: lava-nc ``lava/proc/lif/models.py`` (``PyLifModelBitAcc``, the bit-accurate fixed-point
LIF): ``u``, ``v`` 24-bit signed (``LavaPyType(np.ndarray, np.int32, precision=24)``), ``du``,
``dv`` 12-bit unsigned, ``vth`` 17-bit unsigned left-shifted by 6 bits (``scale_threshold``),
spike when ``v > vth`` (strict), reset to zero; ``bias_mant`` 13-bit signed with a 3-bit
exponent. 8-bit weights with a shared exponent: Lava's Dense/Conv bit-accurate models
(``num_message_bits`` / ``weight_exp``; the 8-bit figure as quoted in issue 13, not re-read
here). lava-dl's NIR import (one threshold per layer, zero bias, no pool, average or concat
nodes): issue 13's reading of lava-dl; not re-read here. Loihi 2 per-core neuron and synapse
limits are not public (Loihi 1's 1024 neurons / 4096 axons per core are): no per-core check.
"""

from __future__ import annotations

import nir

from exporters.nir_graph import predecessors
from exporters.targets.base import Limit, Report, Violation, common_rules, quantisation, read_layers

NAME = "loihi2"
LAVA_LIF = "lava-nc lava/proc/lif/models.py PyLifModelBitAcc"
ISSUE = "issue 13 (lava-dl NIR path); not re-read in lava-dl's code here"

LIMITS: dict[str, Limit] = {
    "weight_bits": Limit("weight bits", 8, "Lava Dense/Conv bit-accurate models, 8-bit mantissa + exponent (issue 13)"),
    "threshold_bits": Limit("threshold bits", 17, LAVA_LIF + " vth precision=17 (unsigned; <<6 on chip)"),
    "state_bits": Limit("state bits", 24, LAVA_LIF + " u, v precision=24"),
    "bias_bits": Limit("bias bits", 13, LAVA_LIF + " bias_mant precision=13 (signed)"),
    "decay_bits": Limit("decay bits", 12, LAVA_LIF + " du, dv precision=12 (IF: du = dv = 0)"),
    "resets": Limit("reset", ("zero",), LAVA_LIF + " (v = 0 after a spike)"),
    "spike_rule": Limit("spike rule", ">", LAVA_LIF + " spiking_activation: v > effective_vth"),
    "one_threshold": Limit("one threshold per layer", 1, ISSUE),
    "bias": Limit("bias", False, ISSUE + " (zero bias)"),
    "no_pool": Limit("pool / average nodes", False, ISSUE),
    "no_join": Limit("concat / join nodes", False, ISSUE),
    "neurons_per_core": Limit("neurons per core", None, "not public for Loihi 2 (Loihi 1: 1024); not checked"),
}


def check_graph(graph: nir.NIRGraph) -> Report:
    """Check a NIR graph (as our exporter writes it) against Loihi 2 / lava-dl.

    Returns:
        A :class:`Report`; resources: neurons per IF layer (no per-core budget is public).
    """
    quant = quantisation(graph)
    report = Report(NAME, quant is not None)
    report.notes.append(LIMITS["neurons_per_core"].source)
    if quant is None:
        report.violations.append(
            Violation(
                "graph", "not quantised", "8-bit integer weights", "float weights: run ann2snn convert --target loihi2"
            )
        )
    layers = read_layers(graph)
    report.violations += common_rules(layers, LIMITS, quant is not None)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF):
            rule = str((node.metadata or {}).get("spike_rule", ">"))
            if rule != ">":
                report.violations.append(Violation(name, "spike rule", "v > V_th", f"v {rule} V_th"))
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            report.violations.append(Violation(name, "pool / average nodes", "none (lava-dl NIR)", type(node).__name__))
        n_in = len(predecessors(graph.edges, name))
        if n_in > 1:
            report.violations.append(
                Violation(name, "concat / join nodes", "one input (lava-dl NIR)", f"{n_in} inputs")
            )
    for layer in layers:
        if layer.thresholds is not None:
            report.resources.append(
                {"layer": layer.name, "neuron": layer.neuron, "neurons": int(layer.thresholds.size)}
            )
    return report
