"""Sinabs 3.1.3 writes a .nir file with its own exporter (sinabs.to_nir) and runs the network.

``mlp``: Sequential(Linear(8, 16), IAFSqueeze, Linear(16, 4), IAFSqueeze); ``cnn``:
Conv2d(1, 4, 3), IAFSqueeze, SumPool2d(2), Conv2d(4, 8, 3), IAFSqueeze, Flatten, Linear(32, 4),
IAFSqueeze on [1, 10, 10]; ``lif``: the MLP with LIFSqueeze (per-neuron tau_mem = 20 steps,
spike_threshold 1: scalar ones become 0-d arrays that ``nir.write`` refuses). Neurons keep
Sinabs' defaults (spike_threshold 1, MultiSpike, MembraneSubtract, min_v_mem None). Run as
Sinabs runs, one call on the input repeated over time and folded into the batch axis
([B * T, ...], batch-major; in float64 each neuron layer's float32 spikes are cast back), spike
counts from forward hooks on the neuron layers. Exported with ``sinabs.to_nir(model, x_folded[:B])``
after one forward pass (``to_nir`` reads the shape of ``v_mem``). See writer.py.
"""

from __future__ import annotations

import writer


def main() -> None:
    args = writer.parse_args(__doc__, ("mlp", "cnn", "lif"))
    x_np = writer.load_input(args.input)
    import nir
    import numpy as np
    import sinabs
    import sinabs.layers as sl
    import torch
    from torch import nn

    B, T = len(x_np), args.T
    mods = writer.layers(args.network)
    if args.network == "cnn":
        neurons = [sl.IAFSqueeze(batch_size=B) for _ in range(3)]
        model = nn.Sequential(
            mods[0], neurons[0], sl.SumPool2d(2), mods[1], neurons[1], nn.Flatten(), mods[2], neurons[2]
        )
    else:
        make = (
            (lambda n: sl.IAFSqueeze(batch_size=B))
            if args.network == "mlp"
            else (lambda n: sl.LIFSqueeze(tau_mem=torch.full((n,), 20.0), spike_threshold=torch.ones(n), batch_size=B))
        )
        neurons = [make(16), make(4)]
        model = nn.Sequential(mods[0], neurons[0], mods[1], neurons[1])
    x = torch.as_tensor(x_np)
    folded = x.unsqueeze(1).expand(B, T, *x.shape[1:]).reshape(B * T, *x.shape[1:])
    try:
        with torch.no_grad():
            model(folded)  # the neurons' state takes its shape (to_nir reads v_mem.shape)
        graph = sinabs.to_nir(model, folded[:B])
    except Exception as exc:  # noqa: BLE001 - the exporter's failure is the result
        writer.fail("sinabs.to_nir", exc)
    try:
        nir.write(args.out, graph)
    except Exception as exc:  # noqa: BLE001
        empty = ", ".join(f"{k}.{a}" for k, v in graph.nodes.items() for a, b in vars(v).items() if b is None)
        writer.fail("nir.write of sinabs.to_nir's graph", exc, f" (fields left None: {empty})" if empty else "")
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    sinabs.reset_states(model)
    spikes = writer.record(neurons, dtype)
    with torch.no_grad():
        out = model(folded.to(dtype)).double().numpy()
    output = out.reshape(B, T, *out.shape[1:]).swapaxes(0, 1)
    counts = [s[0].reshape(B, T, *s[0].shape[1:]).sum(1) for s in spikes]
    writer.write_result(
        args.result,
        np.ascontiguousarray(output),
        counts,
        "sinabs",
        note=f"nodes {', '.join(f'{k} ({type(v).__name__})' for k, v in graph.nodes.items())}",
    )


if __name__ == "__main__":
    main()
