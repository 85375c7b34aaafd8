"""Norse 1.1.0 writes a .nir file with its own exporter (norse.torch.to_nir) and runs the network.

``mlp``: SequentialState(Linear(8, 16), IAFCell(p), Linear(16, 4), IAFCell(p)) with per-neuron
parameters (v_th = 1 of the layer's shape); ``mlp-scalar``: the same with Norse's default scalar
parameters, whose 0-d arrays ``nir.write`` refuses; ``lif``: LIFBoxCell (exported as nir.LIF) and
LIFCell (exported as nir.CubaLIF), per-neuron defaults. Run one call per
step, ``out, state = model(x, state)`` (Norse's way), on the constant input; spike counts from
forward hooks on the neuron cells. See interop/writers/writer.py for the protocol.
"""

from __future__ import annotations

import writer


def main() -> None:
    args = writer.parse_args(__doc__, ("mlp", "mlp-scalar", "lif"))
    x_np = writer.load_input(args.input)
    import nir
    import numpy as np
    import torch
    from norse.torch import (
        IAFCell,
        IAFParameters,
        LIFBoxCell,
        LIFBoxParameters,
        LIFCell,
        LIFParameters,
        SequentialState,
        to_nir,
    )

    first, second = writer.layers("mlp" if args.network == "mlp-scalar" else args.network)
    if args.network == "mlp-scalar":
        cells = [IAFCell(), IAFCell()]
    elif args.network == "mlp":
        cells = [IAFCell(IAFParameters(v_th=torch.ones(n))) for n in (16, 4)]
    else:
        box, lif = LIFBoxParameters(), LIFParameters()
        cells = [
            LIFBoxCell(
                LIFBoxParameters(
                    tau_mem_inv=torch.full((16,), float(box.tau_mem_inv)), v_leak=torch.zeros(16), v_th=torch.ones(16)
                )
            ),
            LIFCell(
                LIFParameters(
                    tau_syn_inv=torch.full((4,), float(lif.tau_syn_inv)),
                    tau_mem_inv=torch.full((4,), float(lif.tau_mem_inv)),
                    v_leak=torch.zeros(4),
                    v_th=torch.ones(4),
                )
            ),
        ]
    model = SequentialState(first, cells[0], second, cells[1])
    try:
        graph = to_nir(model, torch.zeros(1, 8))
    except Exception as exc:  # noqa: BLE001 - the exporter's failure is the result
        writer.fail("norse.torch.to_nir", exc)
    try:
        nir.write(args.out, graph)
    except Exception as exc:  # noqa: BLE001
        shapes = ", ".join(
            f"{k} {tuple(v.v_threshold.shape)}" for k, v in graph.nodes.items() if hasattr(v, "v_threshold")
        )
        writer.fail("nir.write of norse.torch.to_nir's graph", exc, f" (v_threshold shapes: {shapes})")
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    spikes = writer.record(cells, index=0)
    x = torch.as_tensor(x_np).to(dtype)
    steps, state = [], None
    with torch.no_grad():
        for _ in range(args.T):
            out, state = model(x, state)
            steps.append(out.double().numpy())
    writer.write_result(
        args.result,
        np.stack(steps),
        [np.sum(s, axis=0) for s in spikes],
        "norse",
        note=f"nodes {', '.join(f'{k} ({type(v).__name__})' for k, v in graph.nodes.items())}",
    )


if __name__ == "__main__":
    main()
