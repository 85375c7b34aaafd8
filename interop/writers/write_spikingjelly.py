"""SpikingJelly 2.0.0 writes a .nir file with its own exporter (nir_exchange.export_to_nir) and runs the network.

``mlp``: Sequential(Linear(8, 16), IFNode(), Linear(16, 4), IFNode()) with SpikingJelly's
defaults (v_threshold 1, hard reset to v_reset = 0; its exporter refuses soft reset,
``v_reset=None``); ``lif``: LIFNode(tau=2.0). Exported as ``export_to_nir(net, x, path)`` with
its default ``dt = 1e-4`` (so ``IF.r = 1 / dt``). Run in single-step mode, one call per step
(``functional.reset_net`` first); spike counts from forward hooks on the neuron layers. See
writer.py.
"""

from __future__ import annotations

import writer


def main() -> None:
    args = writer.parse_args(__doc__, ("mlp", "lif"))
    x_np = writer.load_input(args.input)
    import numpy as np
    import torch
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir
    from torch import nn

    first, second = writer.layers(args.network)
    make = neuron.IFNode if args.network == "mlp" else (lambda: neuron.LIFNode(tau=2.0))
    neurons = [make(), make()]
    model = nn.Sequential(first, neurons[0], second, neurons[1])
    x = torch.as_tensor(x_np)
    try:
        export_to_nir(model, x, args.out)
    except Exception as exc:  # noqa: BLE001 - the exporter's failure is the result
        writer.fail("spikingjelly export_to_nir", exc)
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    functional.reset_net(model)
    spikes = writer.record(neurons)
    steps = []
    with torch.no_grad():
        for _ in range(args.T):
            steps.append(model(x.to(dtype)).double().numpy())
    writer.write_result(args.result, np.stack(steps), [np.sum(s, axis=0) for s in spikes], "spikingjelly")


if __name__ == "__main__":
    main()
