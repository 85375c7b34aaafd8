"""Replace every ReLU node by its own IF layer (:class:`simulator.IFNeuron`)."""

from __future__ import annotations

import copy

import torch.fx as fx

from converter.trace import is_relu
from simulator import META_KEY, IFNeuron


def if_layer_name(node: fx.Node) -> str:
    """The IF layer name :func:`replace_activations` gives the ReLU ``node`` (before any
    collision suffix): ``if_<module path, dots as underscores>``, or ``if_<node name>`` for a
    functional ReLU. Example: the ReLU ``network.2`` becomes ``if_network_2``."""
    base = str(node.target).replace(".", "_") if node.op == "call_module" else node.name
    return f"if_{base}"


def replace_activations(gm: fx.GraphModule, thresholds: dict[str, float], **neuron_kwargs) -> fx.GraphModule:
    """A copy of ``gm`` whose ReLUs (every form, and the capped ReLU6/clamp(0, c), see
    :func:`converter.trace.relu_cap`) are IF layers named ``if_<ReLU module path>``
    (dots as underscores; ``if_<node name>`` for functional ReLUs).

    Each call site gets its own layer (own threshold and state), even when one ``nn.ReLU``
    instance was called twice.

    Args:
        thresholds: V_th per ReLU node name (from :func:`~converter.normalize.normalize`).
        **neuron_kwargs: ``reset``, ``spike_rule``, ``v_init`` for :class:`~simulator.IFNeuron`.

    ``gm.meta['ann2snn']['if_layers']`` maps each new IF module name to its ReLU node name.

    Raises:
        KeyError: a ReLU node without a threshold.
    """
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    if_layers: dict[str, str] = {}
    for node in list(gm.graph.nodes):
        if not is_relu(node, modules):
            continue
        name = if_layer_name(node)
        while hasattr(gm, name):
            name += "_"
        gm.add_submodule(name, IFNeuron(v_threshold=thresholds[node.name], **neuron_kwargs))
        if_layers[name] = node.name
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.meta.setdefault(META_KEY, {})["if_layers"] = if_layers
    return gm
