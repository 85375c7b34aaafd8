"""Weight normalisation: scale weights and biases so that each layer's activation scale λ maps
to an IF threshold of 1 (Diehl et al. 2015; Rueckauer et al. 2017).

Every tensor in the SNN carries a scale ``s`` such that ``SNN value × s = ANN value``: the
input has ``s = 1``, a spike train leaving the IF layer that replaces ReLU ``r`` has
``s = λ_r``, and pooling, flatten and reshape pass the scale through. A Conv/Linear with input
scale ``s_in`` whose output reaches ReLU ``r`` (through pooling, reshapes, adds or concats,
each used once) gets

.. math::  \\hat W = W \\, s_{in} / \\lambda_r, \\qquad \\hat b = b / \\lambda_r

so the IF threshold is 1 (in multiples of λ). A layer reaching no ReLU keeps ``s_out = s_in``.
We scale weights rather than thresholds so that every spike is a unit event and every
threshold is 1, which is what NIR readers and hardware expect of binary spikes.
Where a ReLU's input scale differs from its λ (a ReLU right on the input, say), its IF
threshold absorbs the ratio: ``V_th = λ_r / s_in``.

**Residual joins** (Rueckauer et al. 2017, section 2.2). An add or concat whose inputs carry
scales ``s_i`` must bring them to one scale ``t``: ``t = λ_r`` of the ReLU the join feeds (else
the largest ``s_i``). Inputs from a Conv/Linear already arrive at ``t`` (their weights were
scaled for that ReLU); any other input, typically the identity skip carrying spikes of scale
``λ_skip``, gets an explicit :class:`simulator.Scale` node with factor ``s_i / t`` on that edge,
so the reconciling factor is visible in the graph and in the exported NIR file.

A ReLU that is zero on all calibration data gets the fallback λ = :data:`DEAD_LAYER_SCALE`,
with a warning (:func:`scales_from_stats` says why the network's output is unchanged there).
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
import torch.fx as fx
from torch import nn

from simulator import Scale
from simulator.graph import WEIGHTED, cat_inputs, is_add, is_relu, is_transparent

log = logging.getLogger(__name__)

#: Relative difference below which two scales are taken as equal (no Scale node inserted).
SCALE_RTOL = 1e-7


def _is_join(node: fx.Node) -> bool:
    return is_add(node) or cat_inputs(node) is not None


def _downstream_relu(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The ReLU that ``node``'s output reaches through single-user scale-transparent ops and joins."""
    while len(node.users) == 1:
        (node,) = node.users
        if is_relu(node, modules):
            return node
        if not (is_transparent(node, modules) or _is_join(node)):
            return None
    return None


def scale_edge(
    gm: fx.GraphModule, join: fx.Node, source: fx.Node, factor: float | torch.Tensor, prefix: str = "scale"
) -> fx.Node:
    """Insert a :class:`simulator.Scale` ``(factor)`` module, named ``<prefix>_<join>_<source>``,
    on the edge ``source -> join`` only (``factor``: a float, or a tensor broadcastable to one
    sample, e.g. ``[C, 1, 1]`` per channel); returns its node."""
    name = f"{prefix}_{join.name}_{source.name}"
    while hasattr(gm, name):
        name += "_"
    gm.add_submodule(name, Scale(factor))
    with gm.graph.inserting_before(join):
        scaled = gm.graph.call_module(name, (source,))
    join.replace_input_with(source, scaled)
    log.debug("%s: input %s rescaled by %s", join.name, source.name, gm.get_submodule(name).extra_repr())
    return scaled


def _reconcile(gm: fx.GraphModule, join: fx.Node, scale: dict[fx.Node, float], target: float) -> None:
    for source in dict.fromkeys(a for a in join.all_input_nodes if a in scale):
        if abs(scale[source] - target) > SCALE_RTOL * target:
            scale_edge(gm, join, source, scale[source] / target)


def normalize(gm: fx.GraphModule, lambdas: dict[str, float]) -> tuple[fx.GraphModule, dict[str, float], float]:
    """Scale a (BatchNorm-free) traced ANN's weights by the per-ReLU scales ``lambdas`` and
    reconcile the scales at every add and concat.

    Args:
        gm: traced ANN after :func:`~converter.fold_bn.fold_batchnorm`.
        lambdas: λ > 0 for every ReLU node name (activation units).

    Returns:
        ``(normalised copy, IF threshold per ReLU node, output scale)``: the output scale
        turns the SNN's output rate back into the ANN's output units.

    Raises:
        ValueError: a missing or non-positive λ (names the ReLU node).
    """
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    scale: dict[fx.Node, float] = {}
    thresholds: dict[str, float] = {}
    result = 1.0
    for node in list(gm.graph.nodes):
        tensor_inputs = [a for a in node.all_input_nodes if a in scale]
        s_in = scale[tensor_inputs[0]] if tensor_inputs else 1.0
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
        elif _is_join(node):
            relu = _downstream_relu(node, modules)
            target = lambdas[relu.name] if relu is not None else max(scale[a] for a in tensor_inputs)
            _reconcile(gm, node, scale, target)
            scale[node] = target
        elif node.op == "placeholder" or is_transparent(node, modules):
            scale[node] = s_in
        elif node.op == "output":
            result = s_in
    gm.graph.lint()
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


#: λ of a ReLU that is zero on all calibration data (activation units: it would encode an
#: activation ``a`` in [0, 1] at ``a`` spikes per step). See :func:`scales_from_stats`.
DEAD_LAYER_SCALE = 1.0


def _never_positive(s) -> bool:
    """The layer's recorded activations are all exactly 0 (its exact max is 0)."""
    return s.count > 0 and float(torch.as_tensor(s.max).max()) == 0.0


@torch.no_grad()
def scales_from_stats(
    stats: dict, mode, labels: dict[str, str] | None = None, floor: float = 1e-12
) -> dict[str, float]:
    """λ per ReLU node from its :class:`~converter.statistics.ActivationStats` and a
    :class:`~converter.modes.Mode` (max, percentile, or fraction of the max). For per-channel
    statistics the layer's λ is the largest channel λ.

    A ReLU that is zero on all calibration data (a dead layer; its exact max is 0) gets
    :data:`DEAD_LAYER_SCALE`, with a ``UserWarning`` naming it. This does not change what the
    network computes on that data: the layer's pre-activations are <= 0 there, so for any
    λ > 0 its IF neurons receive a current <= 0 (pre-activation / λ, up to the conversion
    error of the layers before it) and do not fire, just as the ReLU outputs 0; the layers
    after it receive nothing from it whatever its λ. A layer that is positive somewhere on
    the calibration data but whose λ under ``mode`` is (almost) 0 (a percentile below its
    share of zeros) is refused: a fallback scale would change its output there.

    ``labels`` maps node names to the descriptions used in messages (module path and type).

    Raises:
        ValueError: a layer that is positive on some calibration data (or has no recorded
            activations) whose λ is <= ``floor``, naming the node, the mode and λ.
    """
    lambdas = {}
    for name, s in stats.items():
        lam = _statistic(s, mode)
        lam = float(lam.max()) if isinstance(lam, torch.Tensor) else lam
        label = (labels or {}).get(name, repr(name))
        if lam <= floor and _never_positive(s):
            warnings.warn(
                f"ReLU {label} is zero on all calibration data: converted with the fallback scale "
                f"λ = {DEAD_LAYER_SCALE:g} (its IF neurons do not fire on that data, as the ReLU outputs 0 there)",
                UserWarning,
                stacklevel=2,
            )
            lambdas[name] = DEAD_LAYER_SCALE
            continue
        if lam <= floor:
            raise ValueError(
                f"ReLU {label} has scale {lam:g} under mode {mode.text!r}: "
                "its activations are (almost) all zero on the calibration data; use a larger percentile or more data"
            )
        lambdas[name] = float(lam)
    return lambdas
