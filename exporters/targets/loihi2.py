"""Intel Loihi 2 through Lava (lava-nc) and lava-dl's NIR path: the limits and their check.

Sources, read in the code (lava-nc ``src/lava/proc/lif/models.py``, ``AbstractPyLifModelFixed``
and ``PyLifModelBitAcc``; ``src/lava/proc/dense/models.py``, ``PyDenseModelBitAcc``; lava-dl
``src/lava/lib/dl/netx/nir_lava.py``):

- ``u``, ``v``: 24-bit signed (``LavaPyType(np.ndarray, np.int32, precision=24)``), clipped to
  ``±(2^23 - 1)``; synaptic input and ``vth`` are both left-shifted by 6 bits (``act_shift``,
  ``vth_shift``), so in input units the voltage spans ``±2^17``: an 18-bit signed state;
- ``vth``: 17-bit unsigned (``precision=17``, "0 to 131071"); spike when ``v > vth << 6``
  (strict); ``v = 0`` after a spike (``reset_voltage``);
- ``du``, ``dv``: 12-bit unsigned decays (an IF neuron: ``du = 4095`` — the current lasts one
  step, since ``ds_offset = 1`` makes the decay 4096/4096 — and ``dv = 0``);
- ``bias_mant``: 13-bit signed with a 3-bit exponent;
- Dense weights: ``precision=8`` with ``weight_exp`` (4 bits): 8-bit weights, a shared exponent;
  mixed-sign weights lose their lowest bit (``lava/utils/weightutils.py``, ``truncate_weights``:
  ``num_truncate_bits = 8 - num_weight_bits + 1``), so a layer with both signs holds 7-bit
  integers exactly (as ``2 w`` with ``weight_exp = -1``: ``interop/readers/run_lava.py``).

lava-dl's NIR reader (``nir_to_lavadl_net``, in the repository only: the lava-dl 0.6.0 release
has no NIR module, ``lava/lib/dl/netx`` holds ``hdf5``, ``blocks``, ``utils``) accepts only Input, Flatten, Conv2d and
Linear/Affine each followed by a ``CubaLIF`` ("only supports CUBA"), refuses splits and joins
("Lava does not support graphs with splits / joins") and any other node ("Unsupported node
type"), and builds its blocks from the shapes and threshold only (the weights are not copied);
its netx reader leaves average, concat and pool layers unimplemented. Our IF nodes are
therefore not read by lava-dl's NIR path: the Lava route is lava-nc's processes (Dense or Conv
+ LIF with ``du = 4095``, ``dv = 0``; lava-nc's ``Conv``, ``src/lava/proc/conv/models.py``, has a
``fixed_pt`` model, ``PyConvModelFixed``, but no bit-accurate one). lava-nc has no pool process:
``convert --target loihi2`` folds every sum pool into the Conv2d/Linear after it
(:func:`converter.fold_sum_pools`; the kernel grows ``k²`` times), so the file has none. Loihi 2
per-core neuron and synapse limits are not public (Loihi 1's 1024 neurons / 4096 axons per core
are): no per-core check.
"""

from __future__ import annotations

import nir

from exporters.nir_graph import predecessors, successors
from exporters.targets.base import Limit, Report, Violation, common_rules, quantisation, read_layers

NAME = "loihi2"
LAVA_LIF = "lava-nc src/lava/proc/lif/models.py AbstractPyLifModelFixed / PyLifModelBitAcc"
LAVA_DENSE = "lava-nc src/lava/proc/dense/models.py PyDenseModelBitAcc"
LAVA_DL = "lava-dl src/lava/lib/dl/netx/nir_lava.py nir_to_lavadl_net"
NIR_NOTE = "lava-dl's NIR reader (not in lava-dl 0.6.0) maps CubaLIF only; IF files run as lava-nc Dense / Conv + LIF"

LIMITS: dict[str, Limit] = {
    "weight_bits": Limit(
        "weight bits",
        7,
        LAVA_DENSE + " weights precision=8 (+ weight_exp); mixed-sign weights lose their lowest bit"
        " (lava/utils/weightutils.py truncate_weights): 7 bits, given as 2w with weight_exp=-1",
    ),
    "threshold_bits": Limit("threshold bits", 17, LAVA_LIF + " vth precision=17, unsigned (<< 6 on chip)", False),
    "state_bits": Limit("state bits", 18, LAVA_LIF + " v precision=24, input and vth << 6: 18 bits in input units"),
    "bias_bits": Limit(
        "bias bits",
        13,
        LAVA_LIF + " bias_mant precision=13 (signed, -4096..4095); scale_bias: effective_bias = bias_mant << bias_exp "
        "(3 bits), added to v unshifted, so our bias b is bias_mant = b, bias_exp = 6 (the input's act_shift)",
    ),
    "decay_bits": Limit("decay bits", 12, LAVA_LIF + " du, dv precision=12 (IF: du = 4095, dv = 0)"),
    "resets": Limit("reset", ("zero",), LAVA_LIF + " reset_voltage: v = 0 after a spike"),
    "reset_to_zero": Limit("reset value", True, LAVA_LIF + " reset_voltage: v = 0, no v_reset"),
    "spike_rule": Limit("spike rule", ">", LAVA_LIF + " spiking_activation: v > effective_vth"),
    "one_threshold": Limit("one threshold per layer", 1, LAVA_DL + " (one neuron_params threshold per block)"),
    "bias": Limit("bias", False, LAVA_DL + " (blocks built without bias)"),
    "no_pool": Limit("pool / average nodes", False, LAVA_DL + " (Unsupported node type); netx: not implemented"),
    "no_join": Limit("concat / join nodes", False, LAVA_DL + " (Lava does not support graphs with joins)"),
    "neurons_per_core": Limit("neurons per core", None, "not public for Loihi 2 (Loihi 1: 1024); not checked"),
}


#: What a file converted with ``--target-bias keep`` asks of Lava (a report note).
BIAS_NOTE = (
    "biases kept (convert --target-bias keep): lava-nc's LIF adds bias_mant << bias_exp to v once per step, "
    "unshifted while the input is shifted by 6 bits, so give bias_mant = b, bias_exp = 6; lava-dl's NIR path "
    "builds its blocks without bias and cannot carry them"
)


#: What to do about a pool (a report note): lava-nc has no pool process either.
POOL_NOTE = (
    "pools: lava-nc has no pool process either; a non-overlapping sum pool before a Conv2d or Flatten -> Linear "
    "folds into that layer (converter.fold_sum_pools, which convert --target loihi2 runs; the kernel grows k^2 times)"
)


def check_graph(graph: nir.NIRGraph) -> Report:
    """Check a NIR graph (as our exporter writes it) against Loihi 2 / lava-dl.

    A non-zero bias is a violation (lava-dl's NIR path has none) unless the file's quantisation
    record says ``"bias": "keep"`` (``convert --target loihi2 --target-bias keep``): then biases
    up to 13 bits are lava-nc's ``bias_mant`` (:data:`BIAS_NOTE`).

    Returns:
        A :class:`Report`; resources: neurons per IF layer (no per-core budget is public).
    """
    quant = quantisation(graph)
    report = Report(NAME, quant is not None)
    report.notes.append(LIMITS["neurons_per_core"].source)
    report.notes.append(NIR_NOTE)
    if quant is None:
        report.violations.append(
            Violation(
                "graph", "not quantised", "8-bit integer weights", "float weights: run ann2snn convert --target loihi2"
            )
        )
    layers = read_layers(graph)
    kept = quant is not None and quant.get("bias") == "keep"  # biases kept on purpose, added every step
    limits = {k: v for k, v in LIMITS.items() if not (kept and k == "bias")}
    report.violations += common_rules(layers, limits, quant is not None)
    if kept and any(layer.bias is not None and layer.bias.any() for layer in layers):
        report.notes.append(BIAS_NOTE)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF):
            rule = str((node.metadata or {}).get("spike_rule", ">"))
            if rule != ">":
                report.violations.append(Violation(name, "spike rule", "v > V_th", f"v {rule} V_th"))
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            report.violations.append(Violation(name, "pool / average nodes", "none (lava-dl NIR)", type(node).__name__))
            if POOL_NOTE not in report.notes:
                report.notes.append(POOL_NOTE)
        n_in = len(predecessors(graph.edges, name))
        if n_in > 1:
            report.violations.append(
                Violation(name, "concat / join nodes", "one input (lava-dl NIR)", f"{n_in} inputs")
            )
        n_out = len(successors(graph.edges, name))
        if n_out > 1:
            report.violations.append(
                Violation(name, "splits", "one destination (lava-dl NIR)", f"{n_out} destinations")
            )
    for layer in layers:
        if layer.thresholds is not None:
            report.resources.append(
                {"layer": layer.name, "neuron": layer.neuron, "neurons": int(layer.thresholds.size)}
            )
    return report
