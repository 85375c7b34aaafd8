"""Membrane-potential readout: the output layer integrates and does not spike.

The IF layer that produces the network's output (or, if the network ends in a Conv/Linear, the
output itself) is replaced by a :class:`simulator.Integrator`, so the class at time t is the
argmax of the accumulated input current — no ties, and no loss from the output layer's
quantisation (Rueckauer et al. 2017, Front. Neurosci. 11:682). The final ReLU is dropped: the
argmax is unchanged, and ``rates()`` then gives the output layer's pre-activation.
"""

from __future__ import annotations

import copy

import torch.fx as fx

from simulator import META_KEY, IFNeuron, Integrator

READOUTS = ("membrane", "spike_count")


def membrane_readout(snn: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``snn`` whose output comes from an :class:`~simulator.Integrator` named ``readout``.

    The IF layer that gave the output, if any, is removed, and with it its entry in
    ``snn.meta['ann2snn']['if_layers']`` (which keeps listing only IF layers of the SNN).

    Raises:
        ValueError: the network has several outputs or its output is not a tensor node.
    """
    snn = copy.deepcopy(snn)
    out_node = next(n for n in snn.graph.nodes if n.op == "output")
    source = out_node.args[0]
    if not isinstance(source, fx.Node):
        raise ValueError("membrane readout needs a single tensor output")
    if source.op == "call_module" and isinstance(snn.get_submodule(source.target), IFNeuron):
        source = source.args[0]
    snn.add_submodule("readout", Integrator())
    with snn.graph.inserting_before(out_node):
        integrator = snn.graph.call_module("readout", (source,))
    out_node.args = (integrator,)
    snn.graph.eliminate_dead_code()
    snn.graph.lint()
    snn.delete_all_unused_submodules()
    snn.recompile()
    info = snn.meta.get(META_KEY, {})
    if "if_layers" in info:
        modules = dict(snn.named_modules())
        info["if_layers"] = {p: relu for p, relu in info["if_layers"].items() if isinstance(modules.get(p), IFNeuron)}
    return snn
