"""The semantics contract: which metadata we write into a .nir file and what it means.

NIR 1.0.8's ``IF`` node is continuous-time ``dv/dt = R·I``, spikes when ``v > v_threshold``
(strict) and resets *to* ``v_reset``; it has no dt, no initial state, no reset by subtraction.
Our simulator is discrete-time with reset by subtraction, so every IF node we write carries
node metadata saying exactly what we simulate, and the graph carries the run's settings.

IF node metadata (:data:`IF_KEYS`):

=================  =====================================================================
``reset``          ``"subtract"`` (V -= V_th per spike) or ``"zero"`` (V = v_reset)
``spike_rule``     ``">="`` or ``">"`` (the comparison of V with V_th)
``v_init_fraction`` initial potential V[0] as a fraction of ``v_threshold`` (dimensionless)
``dt``             length of one time step in NIR time units (always 1.0: ``r`` per step)
=================  =====================================================================

Graph metadata (:data:`GRAPH_KEYS`): ``T`` (time steps the file was validated with),
``input_encoding`` (``"constant"``: the analog input is the current at every step),
``readout`` (``"spike_count"``: the class is the argmax of output spike counts;
``"membrane"``: the output node is an ``I`` integrator, dt = 1, whose potential is read),
``mode`` (normalisation mode), ``output_scale`` (rate × output_scale = ANN output),
``generator`` (``"ann2snn <version>"``) and ``nir_version``; and, when written with ``T``, a
self-check: ``reference_input`` (``[B, *input_shape]`` float32) and ``reference_output``
(``[T, B, *output_shape]`` float32, the output at every step under these semantics with
constant input encoding), which :func:`exporters.verify_file` reproduces.

A file without our IF metadata is read with NIR's own semantics: reset to ``v_reset``
(0 if absent), spike when ``v > v_threshold``, ``v = 0`` at the start, ``r`` applied once
per unit time step. An unknown value is an error naming node and key.
"""

from __future__ import annotations

from simulator.neuron import RESETS, SPIKE_RULES

IF_KEYS = ("reset", "spike_rule", "v_init_fraction", "dt")
GRAPH_KEYS = ("T", "input_encoding", "readout", "mode", "output_scale", "generator", "nir_version",
              "reference_input", "reference_output")

#: NIR's own IF semantics, assumed for files that carry none of :data:`IF_KEYS`.
NIR_DEFAULTS = {"reset": "zero", "spike_rule": ">", "v_init_fraction": 0.0, "dt": 1.0}


def plain(value):
    """A metadata value as read by ``nir.read`` (bytes, numpy scalar) as a Python value."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def graph_metadata(graph) -> dict:
    """A ``nir.NIRGraph``'s metadata as plain Python values (see :func:`plain`)."""
    return {k: plain(v) for k, v in (graph.metadata or {}).items()}


def if_semantics(node_name: str, metadata: dict) -> dict:
    """The IF settings of node ``node_name`` from its metadata, NIR's defaults where absent.

    Raises:
        ValueError: an unknown ``reset`` or ``spike_rule`` value, a non-numeric
            ``v_init_fraction``, or ``dt`` other than 1 (naming node and key).
    """
    meta = {k: plain(v) for k, v in metadata.items()}
    out = {k: meta.get(k, default) for k, default in NIR_DEFAULTS.items()}
    if out["reset"] not in RESETS:
        raise ValueError(f"NIR node {node_name!r}: metadata 'reset' = {out['reset']!r} is not one of {RESETS}")
    if out["spike_rule"] not in SPIKE_RULES:
        raise ValueError(
            f"NIR node {node_name!r}: metadata 'spike_rule' = {out['spike_rule']!r} is not one of {SPIKE_RULES}"
        )
    for key in ("v_init_fraction", "dt"):
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            raise ValueError(f"NIR node {node_name!r}: metadata {key!r} = {out[key]!r} is not a number") from None
    if out["dt"] != 1.0:
        raise ValueError(f"NIR node {node_name!r}: metadata 'dt' = {out['dt']} is not supported (only 1.0)")
    return out
