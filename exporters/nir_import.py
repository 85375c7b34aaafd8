"""``.nir`` file → NIR graph → SNN (torch.fx GraphModule) for :func:`simulator.simulate`.

:func:`read_nir` reads the file, :func:`from_nir` picks the reader rules and builds the SNN
with :func:`exporters.nir_torch.graph_to_snn` (the table of node maps, :data:`IMPORTERS`, is
there), :func:`import_nir` does both.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import h5py
import nir
import torch.fx as fx

from exporters.nir_torch import IMPORTERS, ImportOptions, NIRImportError, graph_to_snn, inline_subgraphs
from exporters.semantics import installed_nir_version, plain, reader_rules
from simulator import Scale

#: File keys that are not constructor fields of their node type (``nir.write`` stores an
#: Input's or Output's type as ``shape``).
FILE_KEYS = {"Input": {"shape": "input_type"}, "Output": {"shape": "output_type"}}
#: What ``nir.read`` puts in place of an absent field whose dataclass default is ``None``.
NONE_DEFAULTS = {"v_reset": "0"}


@dataclasses.dataclass(frozen=True)
class Assumed:
    """A field absent from a node in the file, which ``nir.read`` fills in with its default."""

    node: str
    node_type: str
    field: str
    value: str


def _node_class(type_name: str) -> type | None:
    cls = getattr(nir, type_name, None)
    if isinstance(cls, type) and issubclass(cls, nir.NIRNode) and cls is not nir.NIRNode:
        return cls
    return None


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields ``nir.read`` passes to ``cls``'s constructor (metadata aside)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "metadata"}


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default_text(f: dataclasses.Field) -> str:
    if f.default is None and f.name in NONE_DEFAULTS:
        return NONE_DEFAULTS[f.name]
    return repr(f.default if f.default is not dataclasses.MISSING else f.default_factory())


def _names(keys) -> str:
    return ", ".join(repr(k) for k in keys)


def _check_node(group: h5py.Group, name: str, where: str, assumed: list[Assumed]) -> None:
    """Check one node group's fields (and, for a graph, its nodes') against nir's node types."""
    node = f"NIR node {name!r}" if name else "the top-level NIR graph"
    if "type" not in group:
        raise NIRImportError(f"{where}: {node} has no 'type'")
    type_name = str(plain(group["type"][()]))
    cls = _node_class(type_name)
    if cls is None:
        raise NIRImportError(
            f"{where}: {node} has type {type_name!r}, which nir {installed_nir_version()} does not define"
        )
    fields = _fields(cls)
    rename = FILE_KEYS.get(type_name, {})
    keys = {rename.get(k, k) for k in group.keys() if k not in ("type", "metadata")}
    unknown = sorted(keys - set(fields))
    if unknown:
        raise NIRImportError(
            f"{where}: {node} ({type_name}) has field(s) {_names(unknown)} that nir {installed_nir_version()} "
            f"does not define (it knows {_names(sorted(fields))}); ann2snn refuses fields it does not know, "
            "since they may change what the node computes"
        )
    for key, f in fields.items():
        if key in keys:
            continue
        if not _has_default(f):
            raise NIRImportError(f"{where}: {node} ({type_name}) has no field {key!r}, which nir requires")
        assumed.append(Assumed(name, type_name, key, _default_text(f)))
    if cls is nir.NIRGraph:
        for child, sub in group["nodes"].items():
            _check_node(sub, f"{name}.{child}" if name else child, where, assumed)


def check_fields(path: str | Path) -> list[Assumed]:
    """Check every node of the ``.nir`` file ``path`` against the node types of the installed
    nir, before ``nir.read`` builds them.

    A field that nir does not define (a file from a newer NIR, or hand-edited) is refused: it
    may change what the node computes, and ignoring it would change the network silently. An
    absent field that nir fills in with a default (``v_reset``, which older writers omit) is
    returned, so that :func:`read_nir` can say what was assumed.

    Returns:
        The absent fields that nir fills in, one :class:`Assumed` per node and field.

    Raises:
        NIRImportError: a node with an unknown type or field, or without a required field,
            naming the file, the node and the field. OSError, KeyError: not HDF5, or no graph.
    """
    assumed: list[Assumed] = []
    with h5py.File(path, "r") as f:
        _check_node(f["node"], "", str(path), assumed)
    return assumed


def _warn_assumed(path: Path, assumed: list[Assumed]) -> None:
    """One warning per node type, field and value, naming the nodes. Attributed to
    :func:`read_nir`'s line, so that reading a file several times in one run (``ann2snn
    verify`` does) shows each message once."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for a in assumed:
        groups.setdefault((a.node_type, a.field, a.value), []).append(a.node)
    for (node_type, key, value), names in groups.items():
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        warnings.warn(
            f"{path}: NIR {node_type} node(s) {shown} have no {key!r} field; assumed {key} = {value} (NIR's default)",
            UserWarning,
            stacklevel=2,
        )


def read_nir(path: str | Path, type_check: bool = True) -> nir.NIRGraph:
    """``nir.read`` with a clear error for files that are not NIR or that it cannot build.

    Every node's fields are checked first (:func:`check_fields`): a field the installed nir
    does not define is refused, and each field nir fills in by default (an IF node without
    ``v_reset`` is read with ``v_reset = 0``) is named in a ``UserWarning``.

    ``type_check=False`` skips nir's check that every edge joins equal types (Norse 1.1.0's
    ``to_nir`` writes the batch axis into the Input and Output types, ``[1, 8]`` before an
    Affine whose input is ``[8]``, which the check refuses).

    Raises:
        FileNotFoundError: no file at ``path``. NIRImportError: "not a NIR file: <path>"; a
            node with an unknown type or field, or without a required one (naming file, node
            and field); the type check's mismatch; or any other refusal by ``nir.read``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such NIR file: {path}")
    try:
        assumed = check_fields(path)
    except (OSError, KeyError) as exc:  # h5py: not HDF5 / truncated; KeyError: HDF5 without a NIR graph
        raise NIRImportError(f"not a NIR file: {path} ({exc})") from None
    _warn_assumed(path, assumed)
    try:
        return nir.read(path, type_check=type_check)
    except (OSError, KeyError) as exc:
        raise NIRImportError(f"not a NIR file: {path} ({exc})") from None
    except ValueError as exc:
        if type_check and "type" in str(exc).lower():
            raise NIRImportError(
                f"{path}: nir.read's type check fails ({exc}); read_nir/import_nir(..., "
                "type_check=False) read the graph as written"
            ) from None
        raise NIRImportError(f"{path}: nir.read refuses the file: {exc}") from None
    except (TypeError, AssertionError) as exc:  # nir checks shapes with assert
        raise NIRImportError(f"{path}: nir.read refuses the file: {exc or type(exc).__name__}") from None


def from_nir(graph: nir.NIRGraph, semantics: str | dict = "file", dt: float | None = None) -> fx.GraphModule:
    """Build an SNN GraphModule from a NIR graph.

    Args:
        graph: the NIR graph (built by :func:`exporters.nir_torch.graph_to_snn`: nested graphs
            inlined, each ``I → Threshold → Scale → I`` cycle one IF node with reset by
            subtraction).
        semantics: ``"file"`` (default: honour the file's IF metadata, NIR's rules where
            absent), ``"nir"`` or ``"sinabs"`` (simulate the file the way that kind of reader
            does), or a dict of overrides (:func:`exporters.semantics.reader_rules`).
        dt: length of one simulated step in the file's time unit (``None``: the nodes' ``dt``
            metadata, else 1); the current per step is ``dt · r · I``.

    Returns:
        A GraphModule taking ``[steps * B, *input_shape]`` like a converted SNN; its
        ``meta['ann2snn']`` holds the graph metadata (``output_scale``, ``mode``, ``T``, ...).

    Raises:
        NIRImportError: a node type we cannot simulate (named, never dropped), several Input
            nodes, an edge naming a missing node, a cycle other than the subtraction pattern,
            or bad IF metadata. ValueError: an unknown ``semantics`` or ``dt <= 0``.
    """
    if dt is not None and not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    return graph_to_snn(graph, ImportOptions(reader_rules(semantics), dt))


def import_nir(
    path: str | Path, semantics: str | dict = "file", dt: float | None = None, type_check: bool = True
) -> fx.GraphModule:
    """Read a ``.nir`` file and rebuild the SNN for :func:`simulator.simulate`.

    Honours our IF metadata (reset, spike rule, initial potential); files without it get NIR's
    semantics (:mod:`exporters.semantics`). ``semantics`` and ``dt``: see :func:`from_nir`
    (``semantics="nir"`` shows what a reset-to-zero reader such as Norse does with the file,
    ``"sinabs"`` what Sinabs does). ``type_check``: see :func:`read_nir`.

    Raises:
        FileNotFoundError, NIRImportError: see :func:`read_nir` and :func:`from_nir`.
        ValueError: an unknown ``semantics`` or ``dt <= 0``.
    """
    reader_rules(semantics)
    try:
        return from_nir(read_nir(path, type_check), semantics, dt)
    except NIRImportError as exc:
        if str(path) in str(exc):
            raise
        raise NIRImportError(f"{path}: {exc}") from None


__all__ = [
    "IMPORTERS",
    "Assumed",
    "ImportOptions",
    "NIRImportError",
    "Scale",
    "check_fields",
    "from_nir",
    "import_nir",
    "inline_subgraphs",
    "read_nir",
]
