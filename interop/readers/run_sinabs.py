"""Run a .nir file in Sinabs (interop protocol, interop/README.md); imports nothing from ann2snn.

    python interop/readers/run_sinabs.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

Sinabs's own import, ``sinabs.from_nir(graph, batch_size=B)`` (sinabs 3.1.3: ``nirtorch.load``
with Sinabs's node map), gives a ``nirtorch`` graph executor whose IF layers are
``sinabs.layers.IAFSqueeze``; it is stepped the Sinabs way: time folded into the batch axis,
one call on ``[B * T, ...]`` (sample-major), output ``[B * T, ...]``.

Sinabs maps ``nir.IF`` to ``IAFSqueeze(spike_threshold=v_threshold, min_v_mem=-v_threshold)``
with its defaults ``MultiSpike`` and ``MembraneSubtract``; per step: ``v = 1.0 * v + input``
(no ``r``), ``spikes = (v > 0) * trunc(v / v_th)`` (several per step), ``v -= spikes * v_th``,
then the clamp ``v = relu(v - min_v_mem) + min_v_mem`` (which rounds: ``(v + v_th) - v_th`` is
not always ``v`` in floating point); ``v = 0`` at the start. ``v_reset`` is ignored. Nodes
without a Sinabs mapping (``AvgPool2d``, ``Scale``, ``I``) become ``None``: one such node is
skipped silently, several make ``nirtorch`` fail with a KeyError. ``SumPool2d`` drops padding.
``MultiSpike`` returns float32 spike counts, so with ``--dtype float64`` the inputs of the
Linear/Conv layers are cast to float64 (spike counts are integers: the cast is exact).

Exit status 3 with a one-line reason on stderr when the file cannot be read, loaded or run.
"""

from __future__ import annotations

import importlib.metadata
import sys

import protocol

#: NIR node types that sinabs 3.1.3's ``_import_sinabs_module`` maps (the rest become ``None``).
MAPPED = ("Input", "Output", "Affine", "Conv1d", "Conv2d", "LI", "IF", "LIF", "SumPool2d", "Flatten")


def main(argv: list[str] | None = None) -> int:
    """Read ``--nir``, run it for ``--T`` steps on the constant input ``--input``, write ``--out``."""
    args, x_in, graph = protocol.start(__doc__, argv, read_stage=f"nir.read (nir {importlib.metadata.version('nir')})")

    import sinabs
    import torch

    dtype = getattr(torch, args.dtype)
    x = torch.from_numpy(x_in).to(dtype)
    batch, steps = len(x), args.T
    try:
        model = sinabs.from_nir(graph, batch_size=batch).to(dtype)
    except Exception as exc:  # noqa: BLE001
        unmapped = protocol.unmapped(graph, MAPPED)
        protocol.fail("sinabs.from_nir" + (f" (no Sinabs mapping for {', '.join(unmapped)})" if unmapped else ""), exc)

    if_names = protocol.if_nodes(graph)
    counts: dict[str, torch.Tensor] = {}
    for node in model.graph.node_list:
        if node.name in if_names and node.elem is not None:
            key = if_names[node.name]

            def hook(module, inputs, output, key=key):
                counts[key] = output.detach().reshape(batch, steps, *output.shape[1:]).sum(1)

            node.elem.register_forward_hook(hook)
    if dtype == torch.float64:  # MultiSpike returns float32 spike counts (integers: exact in float64)
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                module.register_forward_pre_hook(lambda m, inputs: tuple(t.to(dtype) for t in inputs))
    series = x.unsqueeze(1).expand(batch, steps, *x.shape[1:]).reshape(batch * steps, *x.shape[1:])
    try:
        with torch.no_grad():
            out, _ = model(series)
    except Exception as exc:  # noqa: BLE001
        protocol.fail("running the Sinabs model", exc)

    output = out.reshape(batch, steps, *out.shape[1:]).transpose(0, 1)
    unmapped = protocol.unmapped(graph, MAPPED)
    notes = [f"skipped, no Sinabs mapping: {', '.join(unmapped)}"] if unmapped else []
    protocol.write_out(
        args.out,
        output.numpy(),
        "sinabs",
        protocol.versions("sinabs"),
        "; ".join(notes),
        {name: c.numpy() for name, c in counts.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
