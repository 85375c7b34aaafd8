"""The reader protocol's shared part (interop/README.md): arguments, failure, input, OUT.npz.

Imported by every ``interop/readers/run_<reader>.py`` (the script's folder is first on
``sys.path``), inside that reader's venv: standard library and numpy only, nothing from
ann2snn, torch or the reader at import (:func:`start` imports ``nir``, which every reader's venv
has, when it reads the file; the graph is otherwise only read through its attributes).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import warnings
from typing import NoReturn

import numpy as np

#: Exit status of a reader script that cannot read, load or run the file.
EXIT_FAIL = 3


def parse_args(doc: str, argv: list[str] | None = None, quiet: bool = True) -> argparse.Namespace:
    """``--nir --input --T --out [--dtype float32|float64]``, described by ``doc``'s first line.

    With ``quiet``, warnings and log records below ERROR are silenced afterwards: stderr is left
    for the one-line reason of :func:`fail`.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--nir", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--T", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    if quiet:
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
    return args


def fail(stage: str, exc: BaseException, detail: str = "") -> NoReturn:
    """Print ``"<stage>: <type>: <first line of exc><detail>"`` on stderr; exit with :data:`EXIT_FAIL`."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"{stage}: {type(exc).__name__}: {first}{detail}", file=sys.stderr)
    sys.exit(EXIT_FAIL)


def load_input(path: str) -> np.ndarray:
    """``IN.npy``: the constant input ``[B, *input_shape]`` fed at every step."""
    return np.load(path)


def start(doc: str, argv: list[str] | None = None, read_stage: str = "nir.read"):
    """:func:`parse_args` (quiet), then ``IN.npy`` and ``nir.read(--nir)``.

    Returns:
        ``(args, input [B, *input_shape] as stored, NIR graph)``; when ``nir.read`` raises,
        :func:`fail` with ``read_stage``.
    """
    args = parse_args(doc, argv)
    inputs = load_input(args.input)
    import nir

    try:
        graph = nir.read(args.nir)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as "does not load"
        fail(read_stage, exc)
    return args, inputs, graph


def versions(package: str) -> str:
    """``"<package> X (nir Y, nirtorch Z, torch W)"`` as installed in this venv."""
    v = importlib.metadata.version
    return f"{package} {v(package)} (nir {v('nir')}, nirtorch {v('nirtorch')}, torch {v('torch')})"


def unmapped(graph, mapped: tuple[str, ...]) -> list[str]:
    """``"<node> (<type>)"`` for each node of the NIR ``graph`` whose type name is not in ``mapped``."""
    return [
        f"{name} ({type(node).__name__})" for name, node in graph.nodes.items() if type(node).__name__ not in mapped
    ]


def if_nodes(graph) -> dict[str, str]:
    """The graph's ``IF`` nodes: ``{name with "." as "_" (nirtorch's module name): node name}``."""
    return {name.replace(".", "_"): name for name, node in graph.nodes.items() if type(node).__name__ == "IF"}


def hook_if_children(model, graph) -> dict[str, list]:
    """Record the spikes of each IF node that is a direct child module of ``model`` (named as
    nirtorch names it): ``{node name: [per-call spike arrays]}``, filled as ``model`` runs. A
    module returning a tuple contributes its first element (the spikes)."""
    modules = dict(model.named_children())
    spikes: dict[str, list] = {name: [] for name in if_nodes(graph).values()}
    for short, name in if_nodes(graph).items():
        if short in modules:
            modules[short].register_forward_hook(
                lambda m, i, o, key=name: spikes[key].append((o[0] if isinstance(o, tuple) else o).detach().numpy())
            )
    return spikes


def has_flatten(graph) -> bool:
    """Whether the graph has a ``Flatten`` node (readers that do not shift its dims run one sample at a time)."""
    return any(type(node).__name__ == "Flatten" for node in graph.nodes.values())


def step_per_call(model, x, T: int, graph, spikes: dict[str, list], per_sample: bool = False):
    """Step a one-call-per-step model ``T`` times on the constant input ``x`` (``[B, ...]``).

    Each run starts from ``state = None`` and calls ``out, state = model(x, state)`` (``out[0]``
    when ``out`` is a tuple), reshaped to the shape of ``graph``'s ``Output`` node; with
    ``per_sample`` one sample at a time (``x[i:i + 1]``). ``spikes[node]`` is the list that the
    caller's forward hook appends IF node ``node``'s spikes of each call to (numpy arrays): it
    is cleared before each run and summed after it, in the shape of the node's ``v_threshold``.
    Call it under the reader's ``no_grad`` (outputs are read with ``np.asarray``).

    Returns:
        ``(output [T, B, *out_shape], {node: counts [B, ...]})``, counts for the nodes whose
        hook saw spikes.
    """
    out_node = next(node for node in graph.nodes.values() if type(node).__name__ == "Output")
    out_shape = [int(v) for v in next(iter(out_node.output_type.values()))]
    batches = [x[i : i + 1] for i in range(len(x))] if per_sample else [x]
    outputs, counts = [], {name: [] for name in spikes}
    for xb in batches:
        for s in spikes.values():
            s.clear()
        state, steps = None, []
        for _ in range(T):
            out, state = model(xb, state)
            out = out[0] if isinstance(out, tuple) else out
            steps.append(np.asarray(out).reshape(len(xb), *out_shape))
        outputs.append(np.stack(steps))
        for name, s in spikes.items():
            if s:
                shape = graph.nodes[name].v_threshold.shape
                counts[name].append(np.stack(s).sum(0).reshape(len(xb), *shape))
    return np.concatenate(outputs, axis=1), {name: np.concatenate(c) for name, c in counts.items() if c}


def write_out(
    path: str, output: np.ndarray, reader: str, version: str, note: str, counts: dict[str, np.ndarray] | None = None
) -> None:
    """``OUT.npz``: ``output`` ``[T, B, ...]``, ``reader``, ``version``, ``note``, ``counts__<node>``."""
    result = {"output": output, "reader": reader, "version": version, "note": note}
    result.update({f"counts__{name}": c for name, c in (counts or {}).items()})
    np.savez(path, **result)
