"""Run a .nir file in Norse (interop protocol, interop/README.md); imports nothing from ann2snn.

    python interop/readers/norse.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

Norse's own import, ``norse.torch.from_nir`` (norse 1.1.0: ``nirtorch.load`` with Norse's node
map), gives a ``nirtorch`` graph executor that is stepped the Norse way: one call per time step,
``out, state = model(x, state)``. Norse maps ``nir.IF`` to ``IAFCell(IAFParameters(v_th=...))``:
``v += input`` (no ``r``), spike when ``v - v_th > 0``, reset to ``v_reset`` = 0 (the
parameters' default, not the node's), ``v = v_reset`` = 0 at the start. Nodes without a Norse
mapping (``AvgPool2d``, ``Scale``, ``I``) become ``None``: one such node is skipped silently
(edges through it are lost), several make ``nirtorch`` fail with a KeyError.

Norse maps ``nir.Flatten(start_dim, end_dim)`` to ``torch.nn.Flatten(start_dim, end_dim)``
without shifting for the batch axis, so a graph with a Flatten node is run one sample at a
time (batch 1: the flattened tensor loses its batch axis, which is put back here).

Exit status 3 with a one-line reason on stderr when the file cannot be read, loaded or run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import warnings

import numpy as np

# This file is named like the package it reads with: drop its folder from the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

def _fail(stage: str, exc: BaseException) -> int:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"{stage}: {type(exc).__name__}: {first}", file=sys.stderr)
    return 3


#: NIR node types that norse 1.1.0's ``_import_norse_module`` maps (the rest become ``None``).
MAPPED = ("Input", "Output", "Affine", "Conv2d", "Flatten", "Linear", "IF", "CubaLIF", "LIF", "SumPool2d")


def _unmapped(graph) -> list[str]:
    return [f"{name} ({type(node).__name__})" for name, node in graph.nodes.items()
            if type(node).__name__ not in MAPPED]


def _versions() -> str:
    v = importlib.metadata.version
    return f"norse {v('norse')} (nir {v('nir')}, nirtorch {v('nirtorch')}, torch {v('torch')})"


def main(argv: list[str] | None = None) -> int:
    """Read ``--nir``, run it for ``--T`` steps on the constant input ``--input``, write ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nir", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--T", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    import nir
    import norse.torch
    import torch

    dtype = getattr(torch, args.dtype)
    x = torch.from_numpy(np.load(args.input)).to(dtype)
    try:
        graph = nir.read(args.nir)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as "does not load"
        return _fail("nir.read", exc)
    try:
        model = norse.torch.from_nir(graph).to(dtype)
    except Exception as exc:  # noqa: BLE001
        unmapped = _unmapped(graph)
        return _fail("norse.torch.from_nir" + (f" (no Norse mapping for {', '.join(unmapped)})" if unmapped else ""),
                     exc)

    if_names = {name.replace(".", "_"): name for name, node in graph.nodes.items() if isinstance(node, nir.IF)}
    spikes: dict[str, list] = {name: [] for name in if_names.values()}
    for node in model.graph.node_list:
        if node.name in if_names and node.elem is not None:
            key = if_names[node.name]
            node.elem.register_forward_hook(lambda m, i, o, key=key: spikes[key].append(o[0].detach()))
    out_node = next(node for node in graph.nodes.values() if isinstance(node, nir.Output))
    out_shape = [int(v) for v in next(iter(out_node.output_type.values()))]
    per_sample = any(isinstance(node, nir.Flatten) for node in graph.nodes.values())
    batches = [x[i:i + 1] for i in range(len(x))] if per_sample else [x]
    outputs, counts = [], {name: [] for name in spikes}
    try:
        with torch.no_grad():
            for xb in batches:
                for s in spikes.values():
                    s.clear()
                state, steps = None, []
                for _ in range(args.T):
                    out, state = model(xb, state)
                    steps.append(out.reshape(len(xb), *out_shape))
                outputs.append(torch.stack(steps))
                for name, s in spikes.items():
                    if s:
                        shape = graph.nodes[name].v_threshold.shape
                        counts[name].append(torch.stack(s).sum(0).reshape(len(xb), *shape))
    except Exception as exc:  # noqa: BLE001
        return _fail("running the Norse model", exc)

    notes = ["run one sample at a time (Norse maps NIR's batch-less Flatten dims unshifted)"] if per_sample else []
    if _unmapped(graph):
        notes.append(f"skipped, no Norse mapping: {', '.join(_unmapped(graph))}")
    result = {"output": torch.cat(outputs, dim=1).numpy(), "reader": "norse", "version": _versions(),
              "note": "; ".join(notes)}
    for name, c in counts.items():
        if c:
            result[f"counts__{name}"] = torch.cat(c).numpy()
    np.savez(args.out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
