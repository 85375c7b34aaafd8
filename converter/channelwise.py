"""Channel-wise normalisation (Kim et al., AAAI 2020, "Spiking-YOLO"): one scale per channel.

Runs after :func:`~converter.normalize.normalize` (layer-wise, every threshold 1). For an IF
layer whose channel ``c`` has scale ``ρ_c λ`` (``ρ_c`` in (0, 1], the channel's λ over the
layer's), the rows of the Conv/Linear producing it are divided by ``ρ_c`` and the input columns
of every Conv/Linear consuming it are multiplied by ``ρ_c``. The ANN function is unchanged at
infinite T, while channels with small activations now fire at up to the full rate, which cuts
the quantisation error at low T. The scale lives in the weights (thresholds stay 1), as in the
layer-wise pass.

**Residual joins.** An IF layer fed by an add (``IF(branch + shortcut)``) is made channel-wise
too: each operand of the add is divided by ``ρ_c`` where it is produced, i.e. the rows of the
branch's last Conv/Linear (and of a projection shortcut's 1×1 conv), or an existing
:class:`simulator.Scale` on the shortcut edge, or, for an identity shortcut, a new per-channel
``Scale(1/ρ)`` on that edge. An IF layer whose spikes reach an add (the identity shortcut of
the next block) gets its ``ρ_c`` back on that edge the same way (the edge's Scale, existing or
new, is multiplied by ``ρ_c``). Scaling at the neuron rather than only where a Conv/Linear is
adjacent is what SpikingJelly's channel-wise ``VoltageScaler`` pair does; here the factors
stay in the weights and in per-channel Scale nodes (NIR ``Scale``), every threshold stays 1.

A layer is left layer-wise (with a log message) when the path between producer and consumers
is not a chain of per-channel-preserving ops (average pools, adds, Scale), when it feeds the
network's output (spike-count readout compares raw counts across channels), or when a consumer
has groups > 1.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from converter.normalize import scale_edge
from simulator import Scale
from simulator.graph import AVG_POOLS, WEIGHTED, is_add, is_transparent

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


@dataclass
class _Plan:
    """Where one IF layer's per-channel ratio ``ρ`` goes (see the module docstring)."""

    rows: list[fx.Node] = field(default_factory=list)  # Conv/Linear producers: rows / ρ
    scales_in: list[fx.Node] = field(default_factory=list)  # Scale producers: factor / ρ
    edges_in: list[tuple[fx.Node, fx.Node]] = field(default_factory=list)  # (source, add): new Scale(1/ρ)
    columns: list[tuple[fx.Node, fx.Node]] = field(default_factory=list)  # (Conv/Linear consumer, feeding): columns * ρ
    scales_out: list[fx.Node] = field(default_factory=list)  # Scale consumers: factor * ρ
    edges_out: list[tuple[fx.Node, fx.Node]] = field(default_factory=list)  # (feeding, add): new Scale(ρ)

    def extend(self, other: _Plan) -> None:
        for name in ("rows", "scales_in", "edges_in"):
            getattr(self, name).extend(getattr(other, name))


def _is_module(node: fx.Node, modules, kinds) -> bool:
    return node.op == "call_module" and isinstance(modules[node.target], kinds)


def _plan_rows(node: fx.Node, modules, plan: _Plan) -> bool:
    """Plan the division by ``ρ`` of what ``node`` (feeding the IF layer alone, through
    per-channel-preserving ops) produces; False if that is not possible."""
    if len(node.users) != 1:
        return False
    if _is_module(node, modules, WEIGHTED):
        plan.rows.append(node)
        return True
    if _is_module(node, modules, Scale):
        plan.scales_in.append(node)
        return True
    if _is_module(node, modules, AVG_POOLS):
        prev = node.args[0]
        return isinstance(prev, fx.Node) and _plan_rows(prev, modules, plan)
    if is_add(node):
        for operand in dict.fromkeys(cast(fx.Node, a) for a in node.args[:2]):
            sub = _Plan()
            if _plan_rows(operand, modules, sub):
                plan.extend(sub)
            else:  # an identity shortcut (its source has other users): a Scale on this edge
                plan.edges_in.append((operand, node))
        return True
    return False


def _plan_consumers(node: fx.Node, modules, ratio: torch.Tensor, plan: _Plan) -> bool:
    """Plan the multiplication by ``ρ`` wherever the spikes of IF layer ``node`` are consumed
    (reached through transparent ops); False if some path reaches anything else (the output, ...)."""
    shape = node.meta["tensor_meta"].shape[1:]
    stack = [node]
    while stack:
        current = stack.pop()
        same_layout = (
            tuple(current.meta["tensor_meta"].shape[1:2]) == tuple(shape[:1])
            and len(current.meta["tensor_meta"].shape) == len(shape) + 1
        )
        for user in current.users:
            if _is_module(user, modules, WEIGHTED):
                scale = _column_scale(ratio, current, modules[user.target])
                if scale is None:
                    return False
                plan.columns.append((user, current))
            elif _is_module(user, modules, Scale) and same_layout:
                plan.scales_out.append(user)
            elif is_add(user) and same_layout:
                plan.edges_out.append((current, user))
            elif is_transparent(user, modules):
                stack.append(user)
            else:
                return False
    return bool(plan.columns or plan.scales_out or plan.edges_out)


def _channel_view(ratio: torch.Tensor, ndim: int) -> torch.Tensor:
    """``ρ`` ``[C]`` shaped to broadcast over a sample ``[C, ...]`` of ``ndim`` axes."""
    return ratio.reshape(-1, *([1] * (ndim - 1)))


def _rescale(module: Scale, factor: torch.Tensor) -> None:
    scale = module.scale * factor.to(module.scale.device)
    module.scale = scale.to(torch.float32)


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
    for node in list(gm.graph.nodes):
        ratio = ratios.get(node.name)
        if ratio is None:
            continue
        ndim = len(node.meta["tensor_meta"].shape) - 1
        plan = _Plan()
        source = node.args[0] if node.args else None
        if not (isinstance(source, fx.Node) and _plan_rows(source, modules, plan)) or not plan.rows:
            log.info("channel-wise: %s left layer-wise (no Conv/Linear producer)", node.name)
            continue
        if not _plan_consumers(node, modules, ratio, plan):
            log.info("channel-wise: %s left layer-wise (a consumer is not a Conv/Linear, add or Scale)", node.name)
            continue
        per_channel = _channel_view(ratio.float(), ndim)
        for producer in dict.fromkeys(plan.rows):
            layer = modules[producer.target]
            rows = ratio.to(layer.weight).view(-1, *([1] * (layer.weight.dim() - 1)))
            layer.weight.div_(rows)
            if layer.bias is not None:
                layer.bias.div_(rows.view(-1))
        for scale_node in dict.fromkeys(plan.scales_in):
            _rescale(modules[scale_node.target], 1 / per_channel)
        for source_node, join in plan.edges_in:
            scale_edge(gm, join, source_node, 1 / per_channel, prefix="cwscale")
        for consumer, feeding in plan.columns:
            layer = modules[consumer.target]
            scale = cast(torch.Tensor, _column_scale(ratio, feeding, layer))
            layer.weight.mul_(scale.to(layer.weight))
        for scale_node in dict.fromkeys(plan.scales_out):
            _rescale(modules[scale_node.target], per_channel)
        for feeding, join in plan.edges_out:
            scale_edge(gm, join, feeding, per_channel, prefix="cwscale")
        modules = dict(gm.named_modules())
        done.append(node.name)
    gm.graph.lint()
    gm.recompile()
    return gm, done
