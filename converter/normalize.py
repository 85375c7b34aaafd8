"""Weight normalisation: scale weights and biases so that each layer's activation scale λ maps
to an IF threshold of 1 (Diehl et al. 2015; Rueckauer et al. 2017).

Every tensor in the SNN carries a scale ``s`` such that ``SNN value × s = ANN value``: the
input has ``s = 1``, a spike train leaving the IF layer that replaces ReLU ``r`` has
``s = λ_r``, and pooling, flatten and reshape pass the scale through. A Conv/Linear with input
scale ``s_in`` whose output reaches ReLU ``r`` (possibly through pooling or reshapes) gets

.. math::  \\hat W = W \\, s_{in} / \\lambda_r, \\qquad \\hat b = b / \\lambda_r

so the IF threshold is 1 (in multiples of λ). A layer reaching no ReLU keeps ``s_out = s_in``.
We scale weights rather than thresholds so that every spike is a unit event and every
threshold is 1, which is what NIR readers and hardware expect of binary spikes.
Where a ReLU's input scale differs from its λ (a ReLU right on the input, say), its IF
threshold absorbs the ratio: ``V_th = λ_r / s_in``.
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn

from converter.trace import WEIGHTED, is_relu, is_transparent


def _downstream_relu(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The ReLU that ``node``'s output reaches through single-user scale-transparent ops."""
    while len(node.users) == 1:
        (node,) = node.users
        if is_relu(node, modules):
            return node
        if not is_transparent(node, modules):
            return None
    return None


def normalize(
    gm: fx.GraphModule, lambdas: dict[str, float]
) -> tuple[fx.GraphModule, dict[str, float], float]:
    """Scale a (BatchNorm-free) traced ANN's weights by the per-ReLU scales ``lambdas``.

    Args:
        gm: traced ANN after :func:`~converter.fold_bn.fold_batchnorm`.
        lambdas: λ > 0 for every ReLU node name (activation units).

    Returns:
        ``(normalised copy, IF threshold per ReLU node, output scale)``: the output scale
        turns the SNN's output rate back into the ANN's output units.

    Raises:
        ValueError: a missing or non-positive λ (names the ReLU node), or an operation with
            more than one tensor input whose scales cannot be reconciled (names the node).
    """
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    scale: dict[fx.Node, float] = {}
    thresholds: dict[str, float] = {}
    result = 1.0
    for node in gm.graph.nodes:
        tensor_inputs = [a for a in node.all_input_nodes if a in scale]
        s_in = scale[tensor_inputs[0]] if tensor_inputs else 1.0
        if len({scale[a] for a in tensor_inputs}) > 1:
            raise ValueError(f"node {node.name!r} joins tensors at different scales")
        if node.op == "call_module" and isinstance(modules[node.target], WEIGHTED):
            relu = _downstream_relu(node, modules)
            s_out = s_in if relu is None else lambdas[relu.name]
            layer = modules[node.target]
            layer.weight.data.mul_(s_in / s_out)
            if layer.bias is not None:
                layer.bias.data.div_(s_out)
            scale[node] = s_out
        elif is_relu(node, modules):
            lam = lambdas.get(node.name)
            if lam is None or not lam > 0:
                raise ValueError(f"ReLU {node.name!r} has scale λ={lam}; it must be > 0")
            thresholds[node.name] = lam / s_in
            scale[node] = lam
        elif node.op == "placeholder" or is_transparent(node, modules):
            scale[node] = s_in
        elif node.op == "output":
            result = s_in
    gm.recompile()
    return gm, thresholds, result


def _statistic(s, mode):
    if mode.kind == "max":
        return s.max
    if mode.kind == "percentile":
        return s.percentile(mode.value)
    return mode.value * s.max


@torch.no_grad()
def channel_scales_from_stats(stats: dict, mode) -> dict[str, torch.Tensor]:
    """``[C]`` λ per channel for every ReLU whose statistics are per channel, relative to the
    layer's λ (the largest channel's): values in (0, 1]. A channel that never fired gets 1."""
    ratios = {}
    for name, s in stats.items():
        if s.channels is None:
            continue
        lam = torch.as_tensor(_statistic(s, mode), dtype=torch.float64)
        top = lam.max()
        ratios[name] = torch.where(lam > 0, lam / top, torch.ones_like(lam)) if top > 0 else torch.ones_like(lam)
    return ratios


@torch.no_grad()
def scales_from_stats(stats: dict, mode, labels: dict[str, str] | None = None,
                      floor: float = 1e-12) -> dict[str, float]:
    """λ per ReLU node from its :class:`~converter.statistics.ActivationStats` and a
    :class:`~converter.modes.Mode` (max, percentile, or fraction of the max). For per-channel
    statistics the layer's λ is the largest channel λ.

    ``labels`` maps node names to the descriptions used in error messages (module path and type).

    Raises:
        ValueError: a layer whose λ is 0 (it never fired), naming the node.
    """
    lambdas = {}
    for name, s in stats.items():
        lam = _statistic(s, mode)
        lam = float(lam.max()) if isinstance(lam, torch.Tensor) else lam
        if lam <= floor:
            raise ValueError(
                f"ReLU {(labels or {}).get(name, repr(name))} has scale {lam:g} under mode {mode.text!r}: "
                "its activations are (almost) all zero on the calibration data; use a larger percentile or more data"
            )
        lambdas[name] = float(lam)
    return lambdas
