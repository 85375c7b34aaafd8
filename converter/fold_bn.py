"""Fold BatchNorm into the preceding Conv/Linear (a pure function and an fx pass).

For a BatchNorm with running mean μ, running variance σ², ``eps``, weight γ and bias β after a
layer with weight W and bias b (per output channel), with ``σ = sqrt(running_var + eps)``:

.. math::  W' = W \\gamma / \\sigma, \\qquad b' = \\gamma (b - \\mu) / \\sigma + \\beta

which equals the two layers in eval mode (Ioffe & Szegedy 2015; as used for conversion by
Rueckauer et al. 2017).

A BatchNorm with no such layer before it (on the network input, say) is an affine map
``x -> a x + c`` per channel (``a = γ/σ``, ``c = β - μ γ/σ``) and is folded into the *next*
Linear or unpadded, ungrouped Conv instead: ``W' = W a`` (along the input channels),
``b' = b + Σ W c``. A zero-padded convolution would see the shift ``c`` at the border where the
original sees 0, so that case is refused, naming the BatchNorm.
"""

from __future__ import annotations

import copy
import logging
from typing import cast

import torch
import torch.fx as fx
from torch import nn

from converter.trace import UnsupportedLayerError
from simulator.graph import BATCHNORMS, WEIGHTED

log = logging.getLogger(__name__)


def bn_affine(
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    n: int,
    what: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as ``y = a x + c`` per channel: ``a = γ/σ``, ``c = β − μ a``.

    Raises:
        ValueError: a statistic whose length is not ``n``; ``what`` (with ``{n}``) describes
            the layer's side in the message.
    """
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("gamma", gamma), ("beta", beta)):
        if t is not None and t.shape != (n,):
            raise ValueError(f"BatchNorm {name} has shape {tuple(t.shape)}, {what.format(n=n)}")
    a = gamma / torch.sqrt(running_var + eps) if gamma is not None else 1 / torch.sqrt(running_var + eps)
    c = (beta if beta is not None else torch.zeros_like(running_mean)) - running_mean * a
    return a, c


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
    a, c = bn_affine(running_mean, running_var, eps, gamma, beta, weight.shape[0], "layer has {n} output channels")
    w = weight * a.reshape(-1, *([1] * (weight.dim() - 1)))
    b = c if bias is None else bias * a + c  # = γ(b − μ)/σ + β
    return w, b


def fold_bn_into_next(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(W', b')`` of a Linear/Conv (groups 1, no padding) with the BatchNorm *before* it
    folded in.

    Args:
        weight: ``[C_out, C_in, ...]``; the BatchNorm's statistics are ``[C_in]``.
        bias: ``[C_out]`` or None (zeros).

    Raises:
        ValueError: a statistic whose length is not ``C_in`` (both sizes in the message).
    """
    a, c = bn_affine(running_mean, running_var, eps, gamma, beta, weight.shape[1], "next layer has {n} input channels")
    bias = weight.new_zeros(weight.shape[0]) if bias is None else bias
    shape = (1, -1, *([1] * (weight.dim() - 2)))
    w = weight * a.reshape(shape)
    b = bias + (weight * c.reshape(shape)).flatten(1).sum(1)
    return w, b


def _bn_args(bn: nn.Module, name: str) -> tuple:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"BatchNorm {name!r} has no running statistics (track_running_stats=False)")
    return (
        bn.running_mean,
        bn.running_var,
        bn.eps,
        None if bn.weight is None else cast(torch.Tensor, bn.weight).detach(),
        None if bn.bias is None else cast(torch.Tensor, bn.bias).detach(),
    )


def _fold_pair(layer: nn.Module, bn: nn.Module, name: str, after: bool = True) -> nn.Module:
    fold = fold_bn_weights if after else fold_bn_into_next
    weight, bias = cast(torch.Tensor, layer.weight), cast("torch.Tensor | None", layer.bias)
    w, b = fold(weight.detach(), None if bias is None else bias.detach(), *_bn_args(bn, name))
    fused = copy.deepcopy(layer)
    fused.weight = nn.Parameter(w)
    fused.bias = nn.Parameter(b)
    return fused


def _single_user_weighted(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return (
        isinstance(node, fx.Node)
        and node.op == "call_module"
        and isinstance(modules[str(node.target)], WEIGHTED)
        and len(node.users) == 1
    )


def _next_foldable(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The Linear or unpadded, ungrouped Conv that is the only user of BatchNorm ``node``."""
    if len(node.users) != 1:
        return None
    (user,) = node.users
    if user.op != "call_module" or not isinstance(modules[str(user.target)], WEIGHTED):
        return None
    layer = modules[str(user.target)]
    if isinstance(layer, nn.Linear):
        return user
    pad = cast("str | tuple[int, ...]", layer.padding)  # a Conv (WEIGHTED, not Linear)
    padded = pad == "same" or (not isinstance(pad, str) and any(p != 0 for p in pad))
    return None if padded or layer.groups != 1 else user


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold every BatchNorm1d/2d into the Conv1d/Conv2d/Linear right before it or, failing that,
    into the Linear or unpadded Conv right after it.

    The input is not modified; the returned GraphModule has no BatchNorm left.

    Raises:
        converter.trace.UnsupportedLayerError: a BatchNorm that can be folded neither way (after
            a ReLU, an add or a pool, or before a padded Conv), naming the BatchNorm's module path.
        ValueError: a BatchNorm without running statistics.
    """
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[str(node.target)], BATCHNORMS):
            continue
        prev, bn = node.args[0], modules[str(node.target)]
        if _single_user_weighted(prev, modules):
            target, after = prev, True
        elif (nxt := _next_foldable(node, modules)) is not None:
            target, after = nxt, False
        else:
            raise UnsupportedLayerError(
                f"BatchNorm {node.target!r} ({type(bn).__name__}) cannot be folded: it neither directly follows "
                "a Conv1d/Conv2d/Linear used only by it, nor directly precedes a Linear or an unpadded Conv"
            )
        fused = _fold_pair(modules[target.target], bn, node.target, after)
        gm.add_submodule(target.target, fused)
        modules[target.target] = fused
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        log.debug("folded BatchNorm %s into %s", node.target, target.target)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
