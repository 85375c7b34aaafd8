"""snnTorch 1.0.0 writes a .nir file with its own exporter (export_to_nir) and runs the network.

snnTorch has no IF neuron and its exporter maps no IF: ``mlp`` uses ``Leaky(beta=1.0)`` (no
leak, reset by subtraction: snnTorch's integrate-and-fire), ``lif`` ``Leaky(beta=0.9)``; both
Sequential(Linear(8, 16), Leaky, Linear(16, 4), Leaky) with ``init_hidden=True`` (the form the
exporter's docstring uses), exported as ``export_to_nir(net, torch.zeros(1, 8), ignore_dims=[0])``:
with the default ``ignore_dims=[]`` the Input node keeps the batch axis, ``[1, 8]``, and the
exporter's own ``infer_types`` fails (``Type inference error: type mismatch: input.output:
[[1 8]] -> 0.input: [[8]]``; ``--keep-batch-dim`` shows it). Per-neuron ``beta`` and
``threshold`` tensors: with scalars (``--scalar``) the LIF node's ``tau`` is 0-d and
``infer_types`` fails again (``0.output: [[16]] -> 1.input: []``). Run one call per step
(``snntorch.utils.reset`` first), spike counts from forward hooks on the Leaky layers. See
writer.py.
"""

from __future__ import annotations

import writer


def main() -> None:
    args = writer.parse_args(
        __doc__,
        ("mlp", "lif"),
        extra=[("--keep-batch-dim", "export with ignore_dims=[]"), ("--scalar", "scalar beta and threshold")],
    )
    x_np = writer.load_input(args.input)
    import nir
    import numpy as np
    import snntorch as snn
    import torch
    from snntorch import utils
    from snntorch.export_nir import export_to_nir
    from torch import nn

    beta = 1.0 if args.network == "mlp" else 0.9
    first, second = writer.layers(args.network)
    if args.scalar:
        neurons = [snn.Leaky(beta=beta, init_hidden=True), snn.Leaky(beta=beta, init_hidden=True)]
    else:
        neurons = [snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), init_hidden=True) for n in (16, 4)]
    model = nn.Sequential(first, neurons[0], second, neurons[1])
    try:
        with np.errstate(divide="ignore"):
            graph = export_to_nir(model, torch.zeros(1, 8), ignore_dims=[] if args.keep_batch_dim else [0])
    except Exception as exc:  # noqa: BLE001 - the exporter's failure is the result
        writer.fail("snntorch.export_nir.export_to_nir", exc)
    try:
        nir.write(args.out, graph)
    except Exception as exc:  # noqa: BLE001
        writer.fail("nir.write of export_to_nir's graph", exc)
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    utils.reset(model)
    spikes = writer.record(neurons, dtype)
    x = torch.as_tensor(x_np).to(dtype)
    steps = []
    with torch.no_grad():
        for _ in range(args.T):
            steps.append(model(x).double().numpy())
    writer.write_result(
        args.result,
        np.stack(steps),
        [np.sum(s, axis=0) for s in spikes],
        "snntorch",
        note=f"nodes {', '.join(f'{k} ({type(v).__name__})' for k, v in graph.nodes.items())}",
    )


if __name__ == "__main__":
    main()
