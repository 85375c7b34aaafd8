"""Map and run our Speck-target .nir in Sinabs' DYNAP-CNN backend; imports nothing from ann2snn.

    python interop/readers/run_sinabs_speck.py --nir FILE.nir --spikes IN.npy --out OUT.npz

Runs in the Sinabs interop venv (sinabs 3.1.3). ``sinabs.backend.dynapcnn`` imports SynSense's
closed driver ``samna`` (and ``samnagui``) at module level; this script puts the stand-in
``interop/samna_stub`` first on ``sys.path`` (for this process only: the stand-in raises when any
driver function is called). The Sinabs functions that run, all Sinabs' own code:

1. ``sinabs.from_nir(graph, batch_size=B)`` maps the file's nodes (Conv2d, IF → ``IAFSqueeze``,
   SumPool2d → ``sinabs.layers.SumPool2d``, Flatten, Affine → ``nn.Linear``); its modules, in the
   graph's order, become an ``nn.Sequential`` (``DynapcnnNetwork`` takes a sequential model).
   Three settings of each ``IAFSqueeze`` are then stated from the file, because ``from_nir``
   does not read them: the one threshold per layer as a scalar (``from_nir`` gives a per-neuron
   array, which ``discretize`` and the chip config cannot take), ``spike_fn=SingleSpike`` (the
   file's ``spike_rule`` ``>=``: one spike per step; ``from_nir`` uses ``MultiSpike``) and
   ``min_v_mem = -2^15`` (the file's 16-bit state; Speck's ``threshold_low`` when unset).
2. ``DynapcnnNetwork(model, input_shape, batch_size=B, discretize=True)`` (graph extraction,
   ``DynapcnnLayer`` construction, ``discretize_conv_spike_``: weights and thresholds scaled to
   8 / 16 bits; the script reports whether that scaling changed any weight or bias, each layer's
   largest |bias| and whether its ``leak_enable`` would be set, as ``chips/dynapcnn.py``
   ``get_dynapcnn_layer_config_dict`` computes it: ``biases.bool().any()``).
3. ``Speck2FConfigBuilder.map_layers_to_cores`` (``ChipFactory("speck2fmodule")``:
   ``get_valid_mapping`` with Speck 2f's ``get_constraints``) and ``DynapcnnNetwork.memory_summary``.
4. The software forward pass ``DynapcnnNetwork.forward`` on ``IN.npy`` (``[T, B, C, H, W]``
   input spikes), time folded into the batch axis, each layer's ``v_mem`` set to the file's
   ``V[0]`` (``v_init_fraction · V_th``; the chip's ``neurons_initial_value``) before it.

``OUT.npz``: ``counts__<i>`` ``[B, ...]`` spike counts of DYNAP-CNN layer ``i`` and ``info`` (JSON:
versions, mapping, memory, the discretisation check). Exit 3 with one line on failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np

STUB = Path(__file__).resolve().parents[1] / "samna_stub"


def _fail(stage: str, exc: BaseException) -> None:
    print(f"{stage}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
    raise SystemExit(3)


def _sequential(graph, batch: int):
    """Sinabs' ``from_nir`` modules in the graph's order, IF layers stated from the file."""
    import sinabs
    import sinabs.layers as sl
    import torch
    from sinabs.activation import SingleSpike

    executor = sinabs.from_nir(graph, batch_size=batch)
    by_name = {node.name: node.elem for node in executor.graph.node_list}  # nirtorch writes "." as "_"
    order, seen, todo = [], set(), ["input"]
    while todo:  # a chain: follow the edges from the input
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        todo += [b for a, b in graph.edges if a == name]
    modules, v_init = [], []
    for name in order:
        elem = by_name.get(name.replace(".", "_"))
        if elem is None or isinstance(elem, torch.nn.Identity):
            continue
        if isinstance(elem, sl.IAFSqueeze):
            node = graph.nodes[name]
            values = np.unique(np.asarray(node.v_threshold))
            if values.size != 1:
                raise ValueError(f"{name}: {values.size} thresholds (Speck: one per layer)")
            elem.spike_threshold = torch.nn.Parameter(torch.tensor(float(values[0])), requires_grad=False)
            elem.spike_fn = SingleSpike
            elem.min_v_mem = torch.nn.Parameter(torch.tensor(-(2.0**15)), requires_grad=False)
            v_init.append(float((node.metadata or {}).get("v_init_fraction", 0.0)) * float(values[0]))
        modules.append(elem)
    return torch.nn.Sequential(*modules), v_init


def main(argv: list[str] | None = None) -> int:
    """See the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nir", required=True)
    parser.add_argument("--spikes", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(STUB))

    import nir
    import torch

    try:
        graph = nir.read(args.nir)
    except Exception as exc:  # noqa: BLE001
        _fail("nir.read", exc)
    spikes = torch.from_numpy(np.load(args.spikes))  # [T, B, C, H, W]
    steps, batch = spikes.shape[:2]
    try:
        from sinabs.backend.dynapcnn import DynapcnnLayer, DynapcnnNetwork
        from sinabs.backend.dynapcnn.chip_factory import ChipFactory

        model, v_init = _sequential(graph, batch)
        weighted = [m for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        originals = [m.weight.detach().clone() for m in weighted]
        original_biases = [
            torch.zeros(m.weight.shape[0]) if m.bias is None else m.bias.detach().clone() for m in weighted
        ]
        net = DynapcnnNetwork(model, input_shape=tuple(spikes.shape[2:]), batch_size=batch, discretize=True)
    except Exception as exc:  # noqa: BLE001
        _fail("DynapcnnNetwork(..., discretize=True)", exc)
    layers = {i: layer for i, layer in net.dynapcnn_layers.items() if isinstance(layer, DynapcnnLayer)}
    unchanged = [
        bool(torch.equal(layer.conv_layer.weight.detach().reshape(w.shape[0], -1), w.reshape(w.shape[0], -1)))
        for layer, w in zip(layers.values(), originals, strict=True)
    ]
    biases_unchanged = [
        bool(torch.equal(torch.zeros_like(b) if layer.conv_layer.bias is None else layer.conv_layer.bias.detach(), b))
        for layer, b in zip(layers.values(), original_biases, strict=True)
    ]
    try:
        mapping = ChipFactory("speck2fmodule").get_config_builder().map_layers_to_cores(net.dynapcnn_layers)
    except Exception as exc:  # noqa: BLE001
        _fail("Speck2FConfigBuilder.map_layers_to_cores", exc)
    memory = net.memory_summary()
    counts: dict[int, torch.Tensor] = {}
    for i, layer in layers.items():
        spk = layer.spk_layer

        def hook(module, inputs, output, i=i):
            counts[i] = output.detach().reshape(batch, steps, *output.shape[1:]).sum(1)

        spk.register_forward_hook(hook)
    x = spikes.transpose(0, 1).reshape(batch * steps, *spikes.shape[2:])  # sample-major [B * T, ...]
    try:
        # DynapcnnNetwork.reset_states reads a missing attribute in sinabs 3.1.3 ('sequence'):
        # each layer's state is set directly (init_state_with_shape zeroes it, then V[0])
        for layer, v0 in zip(layers.values(), v_init, strict=True):
            shape = (batch, *layer.get_neuron_shape())
            layer.spk_layer.init_state_with_shape(shape)
            layer.spk_layer.v_mem.fill_(v0)
        with torch.no_grad():
            net(x)
    except Exception as exc:  # noqa: BLE001
        _fail("DynapcnnNetwork.forward", exc)
    info = {
        "sinabs": importlib.metadata.version("sinabs"),
        "nir": importlib.metadata.version("nir"),
        "torch": importlib.metadata.version("torch"),
        "cores": {str(i): int(c) for i, c in mapping.items()},
        "memory": {str(i): [int(memory[k][i]) for k in ("kernel", "neuron", "bias")] for i in layers},
        "thresholds": {str(i): float(layer.spk_layer.spike_threshold) for i, layer in layers.items()},
        "discretize_unchanged": unchanged,
        "discretize_biases_unchanged": biases_unchanged,
        "bias_max": {
            str(i): 0 if layer.conv_layer.bias is None else int(layer.conv_layer.bias.detach().abs().max())
            for i, layer in layers.items()
        },
        "leak_enable": {
            str(i): bool(layer.conv_layer.bias is not None and layer.conv_layer.bias.bool().any())
            for i, layer in layers.items()
        },
    }
    np.savez(args.out, info=json.dumps(info), **{f"counts__{i}": c.numpy() for i, c in counts.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
