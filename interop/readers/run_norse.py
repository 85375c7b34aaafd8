"""Run a .nir file in Norse (interop protocol, interop/README.md); imports nothing from ann2snn.

    python interop/readers/run_norse.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

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

import sys

import protocol

#: NIR node types that norse 1.1.0's ``_import_norse_module`` maps (the rest become ``None``).
MAPPED = ("Input", "Output", "Affine", "Conv2d", "Flatten", "Linear", "IF", "CubaLIF", "LIF", "SumPool2d")


def main(argv: list[str] | None = None) -> int:
    """Read ``--nir``, run it for ``--T`` steps on the constant input ``--input``, write ``--out``."""
    args, x_in, graph = protocol.start(__doc__, argv)

    import norse.torch
    import torch

    dtype = getattr(torch, args.dtype)
    x = torch.from_numpy(x_in).to(dtype)
    try:
        model = norse.torch.from_nir(graph).to(dtype)
    except Exception as exc:  # noqa: BLE001
        unmapped = protocol.unmapped(graph, MAPPED)
        protocol.fail(
            "norse.torch.from_nir" + (f" (no Norse mapping for {', '.join(unmapped)})" if unmapped else ""), exc
        )

    if_names = protocol.if_nodes(graph)
    spikes: dict[str, list] = {name: [] for name in if_names.values()}
    for node in model.graph.node_list:
        if node.name in if_names and node.elem is not None:
            key = if_names[node.name]
            node.elem.register_forward_hook(lambda m, i, o, key=key: spikes[key].append(o[0].detach().numpy()))
    per_sample = protocol.has_flatten(graph)
    try:
        with torch.no_grad():
            output, counts = protocol.step_per_call(model, x, args.T, graph, spikes, per_sample)
    except Exception as exc:  # noqa: BLE001
        protocol.fail("running the Norse model", exc)

    notes = ["run one sample at a time (Norse maps NIR's batch-less Flatten dims unshifted)"] if per_sample else []
    if protocol.unmapped(graph, MAPPED):
        notes.append(f"skipped, no Norse mapping: {', '.join(protocol.unmapped(graph, MAPPED))}")
    protocol.write_out(args.out, output, "norse", protocol.versions("norse"), "; ".join(notes), counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
