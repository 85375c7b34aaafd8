"""The semantics contract: which metadata we write into a .nir file and what it means.

NIR 1.0.8's ``IF`` node is continuous-time ``dv/dt = R·I``, spikes when ``v > v_threshold``
(strict) and resets *to* ``v_reset``; it has no dt, no initial state, no reset by subtraction.
Our simulator is discrete-time with reset by subtraction, so every IF node we write carries
node metadata saying exactly what we simulate, and the graph carries the run's settings.

IF node metadata (:data:`IF_KEYS`):

==================  ====================================================================
``reset``           ``"subtract"`` (V -= V_th per spike) or ``"zero"`` (V = v_reset)
``spike_rule``      ``">="``, ``">"`` (the comparison of V with V_th), ``"multi"``
                    (floor(V / V_th) spikes in one step) or ``"signed"`` (also a -1 spike,
                    V += V_th, when V < 0 while the net count is above 0)
``v_init_fraction`` initial potential V[0] as a fraction of ``v_threshold`` (dimensionless)
``dt``              length of one time step in NIR time units (we write 1.0: ``r`` per step)
``v_min_fraction``  (only when set) clamp of V after the reset, a fraction of ``v_threshold``
``state_bits``      (only when set) M: V saturates to ``[-2^(M-1), 2^(M-1) - 1]`` right after
                    each step's integration (:class:`simulator.IFNeuron`)
``integer``         (only when true) the state is integer-valued (held exactly in float64):
                    the parameters are integers (:func:`converter.quantize`)
==================  ====================================================================

Graph metadata (:data:`GRAPH_KEYS`): ``T`` (time steps the file was validated with),
``input_encoding`` (:data:`INPUT_ENCODINGS`: ``"constant"``, the analog input is the
current at every step; ``"rate"``, the input values in [0, 1] drive IF encoders, threshold 1,
V[0] = 1/2, whose regular spikes are the events the first layer receives; ``"poisson"``,
Bernoulli spikes; the ``input`` node states it too, as ``encoding`` and ``events`` metadata:
events enter there), ``weight_bits`` and ``state_bits`` (a quantised SNN's widths) and
``quantization`` (JSON: :func:`converter.quantize`'s record, per layer the factor, the integer
threshold and V[0] and the bits they need),
``readout`` (``"spike_count"``: the class is the argmax of output spike counts;
``"membrane"``: the output node is an ``I`` integrator, dt = 1, whose potential is read),
``mode`` (normalisation mode), ``output_scale`` (rate × output_scale = ANN output),
``generator`` (``"ann2snn <version>"``) and ``nir_version``; ``lambdas`` (JSON: IF node name →
λ, the activation scale in ANN units that one spike per step of that layer stands for),
``channel_lambdas`` (JSON, only for ``--channel-wise`` conversions: IF node name → the list of
λ per channel, one spike per step of channel c stands for λ_c) and ``if_layers`` (JSON: IF
node name → the ANN's ReLU node name it replaced), all three from ``snn.meta['ann2snn']``
(:class:`converter.Converter`), decoded back into dicts on import, used by
:func:`converter.diagnostics.layer_fidelity`; and, when written with ``T``, a
self-check: ``reference_input`` (``[B, *input_shape]`` float32) and ``reference_output``
(``[T, B, *output_shape]`` float64, the output at every step under these semantics with
constant input encoding, simulated in float64 so that it does not depend on summation
order), which :func:`exporters.verify_file` reproduces exactly.

NIR versions: :data:`NIR_SUPPORTED` (``nir >= 1.0.8, < 1.1``; tested with :data:`NIR_TESTED`).
Importing :mod:`exporters` with a nir outside that range warns, naming the installed and the
supported versions (:func:`check_nir_version`). A node field that the installed nir does not
define is refused on import, naming file, node and field (it may change what the node
computes); a field that nir fills in by default (``v_reset = 0`` for an IF node written
without it) is read with a warning naming the nodes and the value assumed.

A file without our IF metadata is read with NIR's own semantics: reset to ``v_reset``
(0 if absent), spike when ``v > v_threshold``, ``v = 0`` at the start, ``r`` applied once
per unit time step (a file written with a physical time step is read with ``dt=...``: the
current per step is then ``dt · r · I``). An unknown value is an error naming node and key.

To see what another kind of reader does with a file, the importer can override every IF
node's rules with one of :data:`READER_RULES`: ``"nir"`` (NIR's rules as Norse and
SpikingJelly apply them: reset to ``v_reset``, strict ``>``, ``V[0] = 0``) or ``"sinabs"``
(Sinabs' ``IAF``: reset by subtraction, several spikes per step, ``V`` clamped at ``-V_th``
after the reset, ``V[0] = 0``).
"""

from __future__ import annotations

import json
import re
import warnings
from typing import cast

import nir

from simulator.neuron import MAX_STATE_BITS, RESETS, SPIKE_RULES
from simulator.simulate import ENCODINGS as INPUT_ENCODINGS  # the input encodings a file may state

#: The nir releases ann2snn reads and writes: at least the first, below the second.
NIR_SUPPORTED = ("1.0.8", "1.1")
#: The nir release the test suite runs with.
NIR_TESTED = "1.0.8"

IF_KEYS = ("reset", "spike_rule", "v_init_fraction", "dt", "v_min_fraction", "state_bits", "integer")
GRAPH_KEYS = (
    "T",
    "input_encoding",
    "weight_bits",
    "state_bits",
    "quantization",
    "readout",
    "mode",
    "output_scale",
    "generator",
    "nir_version",
    "lambdas",
    "channel_lambdas",
    "if_layers",
    "reference_input",
    "reference_output",
)

#: NIR's own IF semantics, assumed for files that carry none of :data:`IF_KEYS`.
NIR_DEFAULTS = {
    "reset": "zero",
    "spike_rule": ">",
    "v_init_fraction": 0.0,
    "dt": 1.0,
    "v_min_fraction": None,
    "state_bits": None,
    "integer": False,
}

#: Rules that override every IF node's metadata, by the kind of reader they stand for;
#: ``"file"`` honours the file (our metadata, else :data:`NIR_DEFAULTS`). Those readers
#: neither saturate nor hold an integer state.
READER_RULES: dict[str, dict] = {
    "file": {},
    "nir": {"reset": "zero", "spike_rule": ">", "v_init_fraction": 0.0, "v_min_fraction": None}
    | {"state_bits": None, "integer": False},
    "sinabs": {"reset": "subtract", "spike_rule": "multi", "v_init_fraction": 0.0, "v_min_fraction": -1.0}
    | {"state_bits": None, "integer": False},
}


def plain(value):
    """A metadata value as read by ``nir.read`` (bytes, numpy scalar) as a Python value."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


#: Graph metadata keys written as JSON strings (NIR metadata holds flat values) and decoded on import.
JSON_GRAPH_KEYS = ("lambdas", "channel_lambdas", "if_layers", "quantization", "folded_pools")


def graph_metadata(graph) -> dict:
    """A ``nir.NIRGraph``'s metadata as plain Python values (see :func:`plain`), the
    :data:`JSON_GRAPH_KEYS` decoded into dicts.

    Raises:
        ValueError: one of :data:`JSON_GRAPH_KEYS` is not a JSON object (names the key), or an
            ``input_encoding`` not in :data:`INPUT_ENCODINGS`.
    """
    meta = {k: plain(v) for k, v in (graph.metadata or {}).items()}
    for key in JSON_GRAPH_KEYS:
        if isinstance(meta.get(key), str):
            try:
                meta[key] = json.loads(meta[key])
            except ValueError:
                raise ValueError(f"graph metadata {key!r} is not JSON: {meta[key][:60]!r}") from None
        if key in meta and not isinstance(meta[key], dict):
            raise ValueError(f"graph metadata {key!r} must be a JSON object, got {type(meta[key]).__name__}")
    if "input_encoding" in meta and meta["input_encoding"] not in INPUT_ENCODINGS:
        raise ValueError(
            f"graph metadata 'input_encoding' = {meta['input_encoding']!r} is not one of {INPUT_ENCODINGS}"
        )
    return meta


def reader_rules(semantics: str | dict) -> dict:
    """The overrides for ``semantics``: a name in :data:`READER_RULES` or a dict with keys
    among ``reset``, ``spike_rule``, ``v_init_fraction``, ``v_min_fraction``, ``state_bits``,
    ``integer``.

    Raises:
        ValueError: an unknown name or key (values are checked per node by :func:`if_semantics`).
    """
    if isinstance(semantics, str):
        if semantics not in READER_RULES:
            raise ValueError(f"semantics must be one of {tuple(READER_RULES)} or a dict, got {semantics!r}")
        return READER_RULES[semantics]
    unknown = set(semantics) - (set(IF_KEYS) - {"dt"})
    if unknown:
        raise ValueError(
            f"semantics: unknown key(s) {sorted(unknown)}; allowed: reset, spike_rule, v_init_fraction, "
            "v_min_fraction, state_bits, integer"
        )
    return dict(semantics)


def if_semantics(node_name: str, metadata: dict, overrides: dict | None = None) -> dict:
    """The IF settings of node ``node_name``: ``overrides`` (see :func:`reader_rules`), else its
    metadata, else NIR's defaults.

    Returns:
        dict with ``reset``, ``spike_rule``, ``v_init_fraction`` (float), ``dt`` (float),
        ``v_min_fraction`` (float or None), ``state_bits`` (int or None) and ``integer`` (bool).

    Raises:
        ValueError: an unknown ``reset`` or ``spike_rule`` value, a non-numeric
            ``v_init_fraction``, ``v_min_fraction`` or ``dt``, ``dt <= 0``, a ``state_bits``
            that is not a whole number from 2 to 53, or an ``integer`` that is not a boolean
            (naming node and key).
    """
    meta = {k: plain(v) for k, v in metadata.items()}
    out = {k: meta.get(k, default) for k, default in NIR_DEFAULTS.items()}
    out.update(overrides or {})
    if out["reset"] not in RESETS:
        raise ValueError(f"NIR node {node_name!r}: metadata 'reset' = {out['reset']!r} is not one of {RESETS}")
    if out["spike_rule"] not in SPIKE_RULES:
        raise ValueError(
            f"NIR node {node_name!r}: metadata 'spike_rule' = {out['spike_rule']!r} is not one of {SPIKE_RULES}"
        )
    for key in ("v_init_fraction", "dt", "v_min_fraction"):
        if out[key] is None and key == "v_min_fraction":
            continue
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            raise ValueError(f"NIR node {node_name!r}: metadata {key!r} = {out[key]!r} is not a number") from None
    if not out["dt"] > 0:
        raise ValueError(f"NIR node {node_name!r}: metadata 'dt' = {out['dt']} must be > 0")
    bits = out["state_bits"]
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, float)) or bits != int(bits):
            raise ValueError(f"NIR node {node_name!r}: metadata 'state_bits' = {bits!r} is not a whole number")
        if not 2 <= int(bits) <= MAX_STATE_BITS:
            raise ValueError(
                f"NIR node {node_name!r}: metadata 'state_bits' = {bits} must be from 2 to {MAX_STATE_BITS}"
            )
        out["state_bits"] = int(bits)
    if out["integer"] not in (True, False):  # 0/1 as HDF5 may store a boolean, else refused
        raise ValueError(f"NIR node {node_name!r}: metadata 'integer' = {out['integer']!r} is not a boolean")
    out["integer"] = bool(out["integer"])
    return out


def installed_nir_version() -> str:
    """The installed nir's version string (``"unknown"`` when nir does not say)."""
    return str(getattr(nir, "__version__", None) or getattr(nir, "version", None) or "unknown")


def _release(version: str) -> tuple[int, ...] | None:
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _padded(release: tuple[int, ...]) -> tuple[int, ...]:
    return release + (0,) * (3 - len(release))


def nir_version_problem(version: str) -> str | None:
    """Why nir ``version`` is outside :data:`NIR_SUPPORTED`, or ``None`` inside it.

    A pre-release counts as its release (``"1.1.0rc1"`` is outside, ``"1.0.9.dev0"`` inside).

    >>> nir_version_problem("1.0.8") is None
    True
    >>> nir_version_problem("1.2.0")
    'nir 1.2.0 is installed; ann2snn supports nir >= 1.0.8, < 1.1 (tested with 1.0.8)'
    """
    low, below = NIR_SUPPORTED
    supported = f"ann2snn supports nir >= {low}, < {below} (tested with {NIR_TESTED})"
    release = _release(version)
    if release is None:
        return f"the installed nir's version {version!r} cannot be read; {supported}"
    lowest, above = cast(tuple[int, ...], _release(low)), cast(tuple[int, ...], _release(below))  # constants: parse
    if _padded(lowest) <= _padded(release) < _padded(above):
        return None
    return f"nir {version} is installed; {supported}"


def check_nir_version(version: str | None = None) -> None:
    """Warn (``UserWarning``) when nir ``version`` (default: the installed one) is outside
    :data:`NIR_SUPPORTED`: files may then hold fields or node types that ann2snn has not been
    tested with. :mod:`exporters` calls this once, when it is imported."""
    problem = nir_version_problem(installed_nir_version() if version is None else version)
    if problem is not None:
        warnings.warn(problem, UserWarning, stacklevel=2)
