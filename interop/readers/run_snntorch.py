"""Run a .nir file in snnTorch (interop protocol, interop/README.md); imports nothing from ann2snn.

    python interop/readers/run_snntorch.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

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

import sys

import protocol


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
                kind += (
                    f"(beta={beta:g}, init_hidden={getattr(module, 'init_hidden', None)}, "
                    f"reset={getattr(module, 'reset_mechanism', None)!r})"
                )
            if kind not in kinds:
                kinds.append(kind)
    return f" (nir.IF is mapped to {', '.join(kinds)}, whose (spk, mem) tuple is fed to the next node)" if kinds else ""


def main(argv: list[str] | None = None) -> int:
    """Read ``--nir``, run it for ``--T`` steps on the constant input ``--input``, write ``--out``."""
    args, x_in, graph = protocol.start(__doc__, argv)

    import contextlib
    import io

    import torch
    from snntorch.import_nir import import_from_nir

    dtype = getattr(torch, args.dtype)
    x = torch.from_numpy(x_in).to(dtype)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # import_from_nir prints progress to stdout
            model = import_from_nir(graph).to(dtype)
    except Exception as exc:  # noqa: BLE001
        protocol.fail("snntorch.import_nir.import_from_nir", exc)

    spikes = protocol.hook_if_children(model, graph)
    per_sample = protocol.has_flatten(graph)
    try:
        with torch.no_grad():
            output, counts = protocol.step_per_call(model, x, args.T, graph, spikes, per_sample)
    except Exception as exc:  # noqa: BLE001
        protocol.fail("running the snnTorch model", exc, _describe_if(graph, dict(model.named_children())))

    note = "run one sample at a time (snnTorch maps NIR's batch-less Flatten dims unshifted)" if per_sample else ""
    protocol.write_out(args.out, output, "snntorch", protocol.versions("snntorch"), note, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
