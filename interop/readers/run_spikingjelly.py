"""Run a .nir file in SpikingJelly 2.0 (interop protocol, interop/README.md); imports nothing from ann2snn.

    python interop/readers/run_spikingjelly.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

SpikingJelly's own import, ``spikingjelly.activation_based.nir_exchange.import_from_nir(graph,
dt=1.0, dtype=..., step_mode="s")`` (``nirtorch.nir_to_torch`` with SpikingJelly's node map),
gives a ``torch.fx.GraphModule`` ``forward(x, state) -> (output, state)``, stepped once per time
step with the returned state passed back.

- ``nir.IF`` becomes ``neuron.IFNode(v_threshold, v_reset)`` with the file's (uniform) values,
  so it resets *to* ``v_reset`` (to zero for our files), spikes when ``v >= v_threshold``
  (Heaviside with H(0) = 1), starts at ``v = 0`` and ignores node metadata (our ``reset``,
  ``spike_rule``, ``v_init_fraction``): our ``import_nir`` rules ``{"reset": "zero",
  "spike_rule": ">=", "v_init_fraction": 0.0}``. The importer insists on ``r == 1/dt`` (to
  1e-6): with its default ``dt = 1e-4`` our ``r = 1`` files are refused, so ``dt = 1.0``.
- It maps Affine, Linear, Conv1d/2d, AvgPool2d, Flatten (shifted for the batch axis), IF, LIF
  and CubaLIF itself and leaves the rest to nirtorch 2.6's defaults (``SumPool2d`` becomes
  ``nn.LPPool2d(1, ...)``); ``I`` (our membrane readout) and ``Scale`` have no map, so such
  files do not load.

Exit status 3 with a one-line reason on stderr when the file cannot be read, loaded or run.
"""

from __future__ import annotations

import sys

import protocol

#: NIR node types SpikingJelly 2.0's importer maps itself (the others go to nirtorch's defaults).
OWN_MAP = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "AvgPool2d", "Flatten", "IF", "LIF", "CubaLIF")


def main(argv: list[str] | None = None) -> int:
    """Read ``--nir``, run it for ``--T`` steps on the constant input ``--input``, write ``--out``."""
    args, x_in, graph = protocol.start(__doc__, argv)

    import torch
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    dtype = getattr(torch, args.dtype)
    x = torch.from_numpy(x_in).to(dtype)
    try:
        model = import_from_nir(graph, dt=1.0, dtype=dtype, step_mode="s").eval()
    except Exception as exc:  # noqa: BLE001
        protocol.fail("spikingjelly import_from_nir(dt=1.0)", exc)

    spikes = protocol.hook_if_children(model, graph)
    try:
        with torch.no_grad():
            functional.reset_net(model)
            output, counts = protocol.step_per_call(model, x, args.T, graph, spikes)
    except Exception as exc:  # noqa: BLE001
        protocol.fail("running the SpikingJelly model", exc)

    borrowed = protocol.unmapped(graph, OWN_MAP)
    note = f"nirtorch 2.6's default map for {', '.join(borrowed)}" if borrowed else ""
    protocol.write_out(args.out, output, "spikingjelly", protocol.versions("spikingjelly"), note, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
