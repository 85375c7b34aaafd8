"""Run a .nir file in snnTorch (interop protocol, interop/README.md); imports nothing from ann2snn.

    python interop/readers/snntorch.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

snnTorch's own import, ``snntorch.import_nir.import_from_nir`` (snntorch 1.0.0:
``nirtorch.nir_to_torch`` with snnTorch's node map), gives a ``torch.fx.GraphModule``
``forward(x, state) -> (output, state)``, stepped once per time step.

snntorch 1.0.0 maps ``nir.IF`` to ``snntorch.Leaky(beta=0.9, threshold=v_th, init_hidden=False,
reset_delay=False)``: a *leaky* neuron (the membrane decays by 0.9 per step) whose forward
returns the tuple ``(spk, mem)``; ``nirtorch`` passes that tuple unchanged to the next node (a
Leaky has no ``state`` argument, so nirtorch does not treat it as stateful), so an IF that feeds
any layer crashes it. ``Flatten`` is mapped without shifting NIR's batch-less dims, so a graph
with a Flatten node is run one sample at a time. ``I``, ``Scale`` and ``SumPool2d`` have no
mapping (nirtorch raises "Unknown node type").

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


def _fail(stage: str, exc: BaseException, detail: str = "") -> int:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"{stage}: {type(exc).__name__}: {first}{detail}", file=sys.stderr)
    return 3


def _versions() -> str:
    v = importlib.metadata.version
    return f"snntorch {v('snntorch')} (nir {v('nir')}, nirtorch {v('nirtorch')}, torch {v('torch')})"


def _describe_if(graph, modules: dict) -> str:
    """How the IF nodes were mapped, e.g. ``Leaky(beta=0.9, init_hidden=False)``, once per kind."""
    import nir

    kinds = []
    for name, node in graph.nodes.items():
        module = modules.get(name.replace(".", "_"))
        if isinstance(node, nir.IF) and module is not None:
            beta = getattr(module, "beta", None)
            beta = float(beta) if beta is not None else None
            kind = type(module).__name__
            if beta is not None:
                kind += (f"(beta={beta:g}, init_hidden={getattr(module, 'init_hidden', None)}, "
                         f"reset={getattr(module, 'reset_mechanism', None)!r})")
            if kind not in kinds:
                kinds.append(kind)
    return f" (nir.IF is mapped to {', '.join(kinds)}, whose (spk, mem) tuple is fed to the next node)" if kinds else ""


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

    import contextlib
    import io

    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    dtype = getattr(torch, args.dtype)
    x = torch.from_numpy(np.load(args.input)).to(dtype)
    try:
        graph = nir.read(args.nir)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as "does not load"
        return _fail("nir.read", exc)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # import_from_nir prints progress to stdout
            model = import_from_nir(graph).to(dtype)
    except Exception as exc:  # noqa: BLE001
        return _fail("snntorch.import_nir.import_from_nir", exc)

    modules = dict(model.named_children())
    if_names = {name.replace(".", "_"): name for name, node in graph.nodes.items() if isinstance(node, nir.IF)}
    spikes: dict[str, list] = {name: [] for name in if_names.values()}
    for short, name in if_names.items():
        if short in modules:
            modules[short].register_forward_hook(
                lambda m, i, o, key=name: spikes[key].append((o[0] if isinstance(o, tuple) else o).detach()))
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
                    out = out[0] if isinstance(out, tuple) else out
                    steps.append(out.reshape(len(xb), *out_shape))
                outputs.append(torch.stack(steps))
                for name, s in spikes.items():
                    if s:
                        shape = graph.nodes[name].v_threshold.shape
                        counts[name].append(torch.stack(s).sum(0).reshape(len(xb), *shape))
    except Exception as exc:  # noqa: BLE001
        return _fail("running the snnTorch model", exc, _describe_if(graph, modules))

    note = "run one sample at a time (snnTorch maps NIR's batch-less Flatten dims unshifted)" if per_sample else ""
    result = {"output": torch.cat(outputs, dim=1).numpy(), "reader": "snntorch", "version": _versions(),
              "note": note}
    result.update({f"counts__{name}": torch.cat(c).numpy() for name, c in counts.items() if c})
    np.savez(args.out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
