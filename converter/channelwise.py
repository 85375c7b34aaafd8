"""Channel-wise normalisation (Kim et al., AAAI 2020, "Spiking-YOLO"): one scale per channel.

Runs after :func:`~converter.normalize.normalize` (layer-wise, every threshold 1). For an IF
layer whose channel ``c`` has scale ``ρ_c λ`` (``ρ_c`` in (0, 1], the channel's λ over the
layer's), the rows of the Conv/Linear producing it are divided by ``ρ_c`` and the input columns
of every Conv/Linear consuming it are multiplied by ``ρ_c``. The ANN function is unchanged at
infinite T, while channels with small activations now fire at up to the full rate, which cuts
the quantisation error at low T. The scale lives in the weights (thresholds stay 1), as in the
layer-wise pass.

A layer is left layer-wise (with a log message) when the path between producer and consumers
is not a chain of per-channel-preserving ops, when it feeds the network's output (spike-count
readout compares raw counts across channels), or when a consumer has groups > 1.
"""

from __future__ import annotations

import copy
import logging
from typing import cast

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from simulator.graph import AVG_POOLS, WEIGHTED, is_transparent

log = logging.getLogger(__name__)


def _producer(node: fx.Node, modules) -> fx.Node | None:
    """The Conv/Linear feeding ``node`` through single-user, per-channel-preserving ops."""
    prev = node.args[0] if node.args else None
    while isinstance(prev, fx.Node) and len(prev.users) == 1:
        if prev.op == "call_module" and isinstance(modules[prev.target], WEIGHTED):
            return prev
        if not (prev.op == "call_module" and isinstance(modules[prev.target], AVG_POOLS)):
            return None
        prev = prev.args[0]
    return None


def _consumers(node: fx.Node, modules) -> list[tuple[fx.Node, fx.Node]] | None:
    """``(consumer Conv/Linear, the node feeding it)`` pairs reached through transparent ops, or
    None if some path reaches anything else (an add, the output, ...)."""
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        for user in current.users:
            if user.op == "call_module" and isinstance(modules[user.target], WEIGHTED):
                found.append((user, current))
            elif is_transparent(user, modules):
                stack.append(user)
            else:
                return None
    return found


def _column_scale(ratio: torch.Tensor, feeding: fx.Node, consumer: nn.Module) -> torch.Tensor | None:
    """Per-input-column factors of ``consumer`` for per-channel ``ratio`` ``[C]``."""
    shape = feeding.meta["tensor_meta"].shape[1:]
    if isinstance(consumer, (nn.Conv1d, nn.Conv2d)):
        if consumer.groups != 1 or shape[0] != ratio.numel():
            return None
        return ratio.view(1, -1, *([1] * (consumer.weight.dim() - 2)))
    if len(shape) == 1 and shape[0] == ratio.numel():  # Linear right after the IF layer
        return ratio.view(1, -1)
    if len(shape) == 1 and shape[0] % ratio.numel() == 0:  # after a flatten of [C, ...]
        return ratio.repeat_interleave(shape[0] // ratio.numel()).view(1, -1)
    return None


@torch.no_grad()
def channel_normalize(
    gm: fx.GraphModule, ratios: dict[str, torch.Tensor], input_shape: tuple[int, ...]
) -> tuple[fx.GraphModule, list[str]]:
    """Apply per-channel scales ``ratios`` (ReLU node name → ``[C]`` values in (0, 1]).

    Args:
        gm: the layer-wise normalised ANN (ReLU nodes still present).
        input_shape: the input shape without batch axis (for shape propagation).

    Returns:
        ``(new GraphModule, names of the ReLU nodes made channel-wise)``.
    """
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    device = next((p.device for p in gm.parameters()), torch.device("cpu"))
    ShapeProp(gm).propagate(torch.zeros(1, *input_shape, device=device))
    done = []
    for node in gm.graph.nodes:
        ratio = ratios.get(node.name)
        if ratio is None:
            continue
        producer, consumers = _producer(node, modules), _consumers(node, modules)
        if producer is None or not consumers:
            log.info("channel-wise: %s left layer-wise (no single producer or consumers)", node.name)
            continue
        columns = [(modules[c.target], _column_scale(ratio, feeding, modules[c.target])) for c, feeding in consumers]
        if any(scale is None for _, scale in columns):
            log.info("channel-wise: %s left layer-wise (unsupported consumer shape)", node.name)
            continue
        layer = modules[producer.target]
        rows = ratio.to(layer.weight.dtype).view(-1, *([1] * (layer.weight.dim() - 1)))
        layer.weight.div_(rows.to(layer.weight.device))
        if layer.bias is not None:
            layer.bias.div_(rows.view(-1).to(layer.bias.device))
        for consumer, scale in columns:
            consumer.weight.mul_(cast(torch.Tensor, scale).to(consumer.weight.dtype).to(consumer.weight.device))
        done.append(node.name)
    gm.recompile()
    return gm, done
