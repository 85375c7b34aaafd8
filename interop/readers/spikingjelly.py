"""Run a .nir file in SpikingJelly 2.0 through its own NIR importer (interop/README.md protocol).

    python interop/readers/spikingjelly.py --nir FILE.nir --input IN.npy --T 50 --out OUT.npz [--dtype float64]

Runs in the SpikingJelly venv and imports nothing from this repository.
``spikingjelly.activation_based.nir_exchange.import_from_nir(path, dt=1.0)`` builds the model:

- ``nir.IF`` becomes ``neuron.IFNode(v_threshold, v_reset)`` with the file's (uniform) values,
  so it resets *to* ``v_reset`` (to zero for our files), spikes when ``v >= v_threshold``
  (Heaviside with H(0) = 1), starts at ``v = 0`` and ignores node metadata (our ``reset``,
  ``spike_rule``, ``v_init_fraction``). The importer insists on ``r == 1/dt`` (to 1e-6): with
  its default ``dt = 1e-4`` our ``r = 1`` files are refused, so ``dt = 1.0`` is passed.
- It maps Affine, Linear, Conv1d/2d, AvgPool2d, Flatten, IF, LIF and CubaLIF itself and leaves
  the rest to nirtorch 2.6's defaults (``SumPool2d`` becomes ``nn.LPPool2d(1, ...)``); ``I``
  (our membrane readout) and ``Scale`` have no map, so such files do not load.

The model runs in single-step mode, one call per step with the returned state passed back,
the constant input fed at every step, in ``--dtype`` (``import_from_nir(dtype=...)``). Spike
counts are read from each IF module's output. ``note`` says what the import did. Exit 3
(reason on stderr, one line) when the file does not load or run.

Our ``exporters.import_nir`` rules for this reader: ``{"reset": "zero", "spike_rule": ">=",
"v_init_fraction": 0.0}``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import numpy as np
import torch

# This file is named like the package: drop its folder from the path, or `import spikingjelly`
# would import this script.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]


def fail(stage: str, exc: BaseException) -> None:
    reason = f"{stage}: {type(exc).__name__}: {exc}".replace("\n", " ")
    print(reason, file=sys.stderr)
    sys.exit(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nir", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--T", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.set_grad_enabled(False)
    try:
        import nir
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.nir_exchange import import_from_nir
    except ImportError as exc:
        fail("spikingjelly is not installed", exc)
    x = torch.from_numpy(np.load(args.input)).to(dtype)

    try:
        graph = nir.read(args.nir)
        model = import_from_nir(graph, dt=1.0, dtype=dtype, step_mode="s").eval()
    except Exception as exc:  # noqa: BLE001 - any refusal is a 'does not load'
        fail("does not load", exc)

    counts: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.IF):
            continue
        module = modules.get(name) or modules.get(name.replace(".", "_"))
        if module is None:
            continue

        def record(_module, _inputs, output, name=name):
            spikes = output[0] if isinstance(output, tuple) else output
            counts[name] = counts.get(name, 0) + spikes
        module.register_forward_hook(record)

    try:
        functional.reset_net(model)
        state, outputs = None, []
        for _ in range(args.T):
            out, state = model(x, state)
            outputs.append(out)
        output = torch.stack(outputs)
    except Exception as exc:  # noqa: BLE001
        fail("does not run", exc)

    own = {"Affine", "Linear", "Conv1d", "Conv2d", "AvgPool2d", "Flatten", "IF", "LIF", "CubaLIF", "Input", "Output"}
    borrowed = sorted({type(n).__name__ for n in graph.nodes.values()} - own)
    note = ("import_from_nir(dt=1.0); IF -> IFNode: reset to v_reset, spike at v >= v_th, V[0] = 0, "
            "node metadata ignored")
    if borrowed:
        note += f"; nirtorch 2.6 default map for {', '.join(borrowed)}"
    arrays = {f"counts__{name}": c.numpy() for name, c in counts.items()}
    np.savez(args.out, output=output.numpy(), reader=np.array("spikingjelly"),
             version=np.array(importlib.metadata.version("spikingjelly")), note=np.array(note), **arrays)


if __name__ == "__main__":
    main()
