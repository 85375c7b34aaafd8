"""Synaptic operations of an SNN and multiply-accumulates of the ANN it came from, per layer.

A spike of neuron ``(c, i, j)`` costs one accumulate per synapse it drives: ``fan_out[c, i, j]``,
the number of (output neuron, kernel tap) pairs of the next Conv/Linear that read position
``(c, i, j)`` (all taps, zero weights included: a synapse is a connection). For a Conv2d that
is ``out_channels / groups`` times the number of output positions whose receptive field covers
``(i, j)`` — fewer at the borders with padding, and uneven with strides. It is computed exactly
as the gradient of ``sum(conv(x, ones))`` with respect to ``x``, through any sum pools and
reshapes between the layer and the next Conv/Linear (a pool passes each spike to every pool
window covering it). A ``Scale`` on a skip edge, or an identity skip, is one synapse per neuron.

.. math::  \\mathrm{SynOps}_l = \\sum_{c,i,j} n_l[c,i,j] \\, \\mathrm{fan\\_out}_l[c,i,j]

where ``n_l`` is the layer's spike count map (over the samples and steps simulated). The
ANN's MACs of a Conv/Linear are ``out positions × out channels × in_channels/groups × k_h k_w``
(Linear: ``in × out``); a layer's row counts the MACs of the Conv/Linear layers its output
feeds, the same connections its spikes drive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from simulator.graph import WEIGHTED, is_identity, is_reshape, trace_snn
from simulator.neuron import IFNeuron
from simulator.simulate import reset_states

#: The name of the network input among the sources of :func:`fan_outs`.
INPUT = "input"


def _is_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], (nn.AvgPool1d, nn.AvgPool2d))
    return node.op == "call_function" and node.target in (F.avg_pool1d, F.avg_pool2d)


def _sum_pool(node: fx.Node, modules: dict[str, nn.Module], x: torch.Tensor) -> torch.Tensor:
    """What the pool ``node`` sums (divisor 1), applied to ``x``."""
    if node.op == "call_module":
        m: Any = modules[str(node.target)]  # an AvgPool1d or AvgPool2d (:func:`_is_pool`)
        if isinstance(m, nn.AvgPool1d):
            size = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            return F.avg_pool1d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad) * float(size)
        return F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, 1)
    args: list[Any] = list(node.args[1:])
    if node.target is F.avg_pool1d:
        kernel: Any = args[0] if args else node.kwargs["kernel_size"]
        k = kernel if isinstance(kernel, int) else kernel[0]
        return F.avg_pool1d(x, *args, **cast(dict[str, Any], node.kwargs)) * float(k)
    kwargs: dict[str, Any] = {**node.kwargs, "divisor_override": 1}
    return F.avg_pool2d(x, *args[:5], **kwargs)


def _ones_layer(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module``'s connections with every weight 1 and no bias, applied to ``x``."""
    w = torch.ones_like(cast(torch.Tensor, module.weight), dtype=x.dtype)
    if isinstance(module, nn.Linear):
        return F.linear(x, w)
    layer: Any = module  # a Conv1d or Conv2d (:data:`simulator.graph.WEIGHTED`)
    conv: Callable[..., torch.Tensor] = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    return conv(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def _sources(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> dict[str, fx.Node]:
    """Spike sources by name: the network input and every IF layer."""
    found = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder" and INPUT not in found:
            found[INPUT] = node
        elif node.op == "call_module" and isinstance(modules[str(node.target)], IFNeuron):
            found[str(node.target)] = node
    return found


@torch.enable_grad()
def _fan_out(gm: fx.GraphModule, modules: dict[str, nn.Module], source: fx.Node, shape) -> tuple[torch.Tensor, list]:
    """``[C, ...]`` synapses driven per neuron of ``source``, and the Conv/Linear nodes reached."""
    x = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
    values = {source: x}
    total = torch.zeros((), dtype=torch.float64)
    reached = []
    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes if a in values]
        if not inputs or node is source:
            continue
        value = values[inputs[0]]
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        if _is_pool(node, modules):
            values[node] = _sum_pool(node, modules, value)
        elif is_reshape(node, modules) or is_identity(node):
            rest: Any = fx.node.map_arg(node.args[1:], lambda a: a)
            kwargs: Any = node.kwargs
            if module is not None:
                values[node] = module(value)
            elif node.op == "call_method":
                values[node] = getattr(value, str(node.target))(*rest, **kwargs)
            else:
                values[node] = cast(Callable[..., torch.Tensor], node.target)(value, *rest, **kwargs)
        elif isinstance(module, WEIGHTED):
            total = total + _ones_layer(module, value).sum()
            reached.append(node)
        else:  # a Scale, an add (identity skip), an IF layer, the output: one synapse per element
            total = total + sum(values[a].sum() for a in inputs)
    if total.requires_grad:
        total.backward()
        return torch.round(cast(torch.Tensor, x.grad)[0]), reached
    return torch.zeros(shape, dtype=torch.float64), reached


def _shapes(gm: fx.GraphModule, input_shape) -> None:
    """Annotate every node with its shape for one sample."""
    reset_states(gm)
    device = next((p.device for p in gm.parameters()), torch.device("cpu"))
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape, device=device))
    reset_states(gm)


def fan_outs(snn: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per spike source (``"input"`` and every IF layer path) the synapses each of its neurons
    drives, ``[C, ...]`` (float64 holding integers).

    Example:
        >>> net = nn.Sequential(IFNeuron(), nn.Conv2d(1, 2, 3, padding=1))
        >>> fan_outs(net, (1, 3, 3))["0"][0].int().tolist()  # 2 channels × covering 3×3 windows
        [[8, 12, 8], [12, 18, 12], [8, 12, 8]]
    """
    gm = trace_snn(snn)
    _shapes(gm, input_shape)
    modules = dict(gm.named_modules())
    result = {}
    for name, node in _sources(gm, modules).items():
        shape = tuple(node.meta["tensor_meta"].shape[1:])
        result[name] = _fan_out(gm, modules, node, shape)[0]
    return result


def macs(snn: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv/Linear (by module path), as the ANN computes them.

    Example:
        >>> macs(nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.Flatten(), nn.Linear(36, 10)), (1, 7, 7))
        {'0': 324, '2': 360}
    """
    gm = trace_snn(snn)
    _shapes(gm, input_shape)
    modules = dict(gm.named_modules())
    result = {}
    for node in gm.graph.nodes:
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        if isinstance(module, WEIGHTED):
            out = node.meta["tensor_meta"].shape
            per_output = module.weight[0].numel()  # in_channels/groups × kernel taps (Linear: in)
            result[str(node.target)] = int(torch.Size(out[1:]).numel() * per_output)
    return result


def consumers(snn: nn.Module, input_shape: tuple[int, ...]) -> dict[str, list[str]]:
    """Per spike source the Conv/Linear module paths its output feeds (through pools and reshapes)."""
    gm = trace_snn(snn)
    _shapes(gm, input_shape)
    modules = dict(gm.named_modules())
    out = {}
    for name, node in _sources(gm, modules).items():
        shape = tuple(node.meta["tensor_meta"].shape[1:])
        out[name] = [str(n.target) for n in _fan_out(gm, modules, node, shape)[1]]
    return out


def synops(counts: torch.Tensor, fan_out: torch.Tensor) -> int:
    """Synaptic operations of one layer: spike counts ``[B, C, ...]`` (or summed ``[C, ...]``)
    times the synapses each neuron drives (:func:`fan_outs`), summed."""
    total = counts.double().sum(0) if counts.dim() == fan_out.dim() + 1 else counts.double()
    return int(round(float((total * fan_out.to(total.device)).sum())))
