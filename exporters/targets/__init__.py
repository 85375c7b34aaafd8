"""Hardware target profiles: does a NIR file fit Speck 2f, Loihi 2, SpiNNaker2 or a generic int8?

Each target is one module with a table of documented limits (``LIMITS``, the source beside
every number; ``None`` where a number could not be confirmed) and ``check_graph(graph) ->
Report``. :func:`check_file` reads a ``.nir`` written by :func:`exporters.export_nir` and checks
it; :func:`check` does the same for an in-memory ``nir.NIRGraph``.

Example:
    >>> sorted(TARGETS)
    ['int8', 'loihi2', 'speck2f', 'spinnaker2']
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import nir

from exporters.targets import int8, loihi2, speck2f, spinnaker2
from exporters.targets.base import Limit, Report, Violation

TARGETS: dict[str, ModuleType] = {m.NAME: m for m in (speck2f, loihi2, spinnaker2, int8)}

#: What ``convert --target`` sets for each target (bit widths, reset, bias, readout, input;
#: ``fold_pools``: every sum pool folded into the Conv2d/Linear after it,
#: :func:`converter.fold_sum_pools`, for Loihi 2, which has no pool).
SETTINGS: dict[str, dict[str, object]] = {
    "speck2f": {
        "weight_bits": 8,
        "state_bits": 16,
        "reset": "subtract",
        "bias": "none",
        "readout": "spike_count",
        "input_encoding": "rate",
    },
    "loihi2": {
        "weight_bits": 7,
        "state_bits": 18,
        "reset": "zero",
        "spike_rule": ">",
        "bias": "none",
        "readout": "spike_count",
        "input_encoding": "rate",
        "fold_pools": True,
    },
    "spinnaker2": {"reset": "subtract"},
    "int8": {"weight_bits": 8, "state_bits": 16},
}

#: What ``convert --target NAME --target-bias MODE`` sets instead of the target's ``bias``:
#: ``"none"`` is every target's default (its ``SETTINGS``); ``"leak"`` (Speck 2f) keeps the
#: biases as integers of the chip's bias width at the layer's weight scale, added once per time
#: step, which Speck does once per slow-clock tick ("leak"): the chip must run with one
#: slow-clock tick per time step (``exporters.targets.speck2f``, ``LEAK_NOTE``); ``"keep"``
#: (Loihi 2) keeps 13-bit biases, added once per step as lava-nc's LIF adds ``bias_mant``
#: (``exporters.targets.loihi2``, ``BIAS_NOTE``; lava-dl's NIR path takes none).
BIAS_OPTIONS: dict[str, dict[str, dict[str, object]]] = {
    "speck2f": {"leak": {"bias": "leak", "bias_bits": speck2f.LIMITS["bias_bits"].value}},
    "loihi2": {"keep": {"bias": "keep", "bias_bits": loihi2.LIMITS["bias_bits"].value}},
}


def target(name: str) -> ModuleType:
    """The target module called ``name``.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}: known targets are {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def check(graph: nir.NIRGraph, name: str) -> Report:
    """Check ``graph`` against target ``name`` (see :class:`Report`).

    Raises:
        ValueError: an unknown target.
    """
    return target(name).check_graph(graph)


def check_file(path: str | Path, name: str) -> Report:
    """Read the ``.nir`` at ``path`` and check it against target ``name``.

    Raises:
        ValueError: an unknown target, or a file ``nir.read`` cannot read (naming the file).
    """
    module = target(name)
    try:
        graph = nir.read(str(path))
    except Exception as exc:  # nir raises KeyError/OSError/TypeError for foreign files
        raise ValueError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from None
    return module.check_graph(graph)


__all__ = ["BIAS_OPTIONS", "TARGETS", "SETTINGS", "Limit", "Report", "Violation", "check", "check_file", "target"]
