"""Fold BatchNorm into the preceding Conv/Linear (a pure function and an fx pass).

For a BatchNorm with running mean μ, running variance σ², ``eps``, weight γ and bias β after a
layer with weight W and bias b (per output channel), with ``σ = sqrt(running_var + eps)``:

.. math::  W' = W \\gamma / \\sigma, \\qquad b' = \\gamma (b - \\mu) / \\sigma + \\beta

which equals the two layers in eval mode (Ioffe & Szegedy 2015; as used for conversion by
Rueckauer et al. 2017).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.fx as fx
from torch import nn

log = logging.getLogger(__name__)

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_bn_weights(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(W', b')`` of the layer with the BatchNorm folded in.

    Args:
        weight: ``[C_out, ...]`` (Linear ``[C_out, C_in]``, Conv ``[C_out, C_in/groups, *k]``).
        bias: ``[C_out]`` or None (zeros).
        running_mean, running_var: ``[C_out]``.
        gamma, beta: ``[C_out]`` or None (an affine-free BatchNorm: 1 and 0).

    Raises:
        ValueError: a statistic whose length is not ``C_out`` (both sizes in the message).
    """
    c_out = weight.shape[0]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("gamma", gamma), ("beta", beta)):
        if t is not None and t.shape != (c_out,):
            raise ValueError(f"BatchNorm {name} has shape {tuple(t.shape)}, layer has {c_out} output channels")
    gamma = torch.ones_like(running_mean) if gamma is None else gamma
    beta = torch.zeros_like(running_mean) if beta is None else beta
    bias = torch.zeros_like(running_mean) if bias is None else bias
    factor = gamma / torch.sqrt(running_var + eps)
    w = weight * factor.reshape(-1, *([1] * (weight.dim() - 1)))
    b = (bias - running_mean) * factor + beta
    return w, b


def _fold_pair(layer: nn.Module, bn: nn.Module, name: str) -> nn.Module:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"BatchNorm {name!r} has no running statistics (track_running_stats=False)")
    w, b = fold_bn_weights(
        layer.weight.detach(), None if layer.bias is None else layer.bias.detach(),
        bn.running_mean, bn.running_var, bn.eps,
        None if bn.weight is None else bn.weight.detach(), None if bn.bias is None else bn.bias.detach(),
    )
    fused = copy.deepcopy(layer)
    fused.weight = nn.Parameter(w)
    fused.bias = nn.Parameter(b)
    return fused


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold every BatchNorm1d/2d that directly follows a Conv1d/Conv2d/Linear.

    The input is not modified; the returned GraphModule has no BatchNorm left.

    Raises:
        ValueError: a BatchNorm whose input is not a Conv/Linear used by it alone, naming
            the BatchNorm's module path; a BatchNorm without running statistics.
    """
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], _BATCHNORMS):
            continue
        prev = node.args[0]
        ok = (
            isinstance(prev, fx.Node) and prev.op == "call_module"
            and isinstance(modules[prev.target], _FOLDABLE) and len(prev.users) == 1
        )
        if not ok:
            raise ValueError(
                f"BatchNorm {node.target!r} does not directly follow a Conv1d/Conv2d/Linear "
                "used only by it, so it cannot be folded"
            )
        fused = _fold_pair(modules[prev.target], modules[node.target], node.target)
        gm.add_submodule(prev.target, fused)
        modules[prev.target] = fused
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        log.debug("folded BatchNorm %s into %s", node.target, prev.target)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
