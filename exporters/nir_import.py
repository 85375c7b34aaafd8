"""``.nir`` file → NIR graph → SNN (torch.fx GraphModule) for :func:`simulator.simulate`.

:func:`read_nir` reads the file, :func:`from_nir` picks the reader rules and builds the SNN
with :func:`exporters.nir_torch.graph_to_snn` (the table of node maps, :data:`IMPORTERS`, is
there), :func:`import_nir` does both.
"""

from __future__ import annotations

from pathlib import Path

import nir
import torch.fx as fx

from exporters.nir_torch import IMPORTERS, ImportOptions, NIRImportError, graph_to_snn, inline_subgraphs
from exporters.semantics import reader_rules
from simulator import Scale


def read_nir(path: str | Path, type_check: bool = True) -> nir.NIRGraph:
    """``nir.read`` with a clear error for files that are not NIR.

    ``type_check=False`` skips nir's check that every edge joins equal types (Norse 1.1.0's
    ``to_nir`` writes the batch axis into the Input and Output types, ``[1, 8]`` before an
    Affine whose input is ``[8]``, which the check refuses).

    Raises:
        FileNotFoundError: no file at ``path``. NIRImportError: "not a NIR file: <path>", or
            the type check's mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such NIR file: {path}")
    try:
        return nir.read(path, type_check=type_check)
    except (OSError, KeyError) as exc:  # h5py: not HDF5 / truncated; KeyError: HDF5 without a NIR graph
        raise NIRImportError(f"not a NIR file: {path} ({exc})") from None
    except ValueError as exc:
        if type_check and "type" in str(exc).lower():
            raise NIRImportError(
                f"{path}: nir.read's type check fails ({exc}); read_nir/import_nir(..., "
                "type_check=False) read the graph as written"
            ) from None
        raise


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
    "ImportOptions",
    "NIRImportError",
    "Scale",
    "from_nir",
    "import_nir",
    "inline_subgraphs",
    "read_nir",
]
