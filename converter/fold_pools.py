"""Fold sum (and average) pools of spikes into the Conv2d or Linear after them, exactly.

A 2-d sum pool with kernel ``k = (k_h, k_w)``, stride ``k`` and no padding, followed by a
convolution with kernel ``r``, stride ``s`` and zero padding ``p``, is one convolution on the
pool's input:

.. math::  \\operatorname{conv}_{W, s, p}(\\operatorname{pool}_k(x)) =
    \\operatorname{conv}_{W', k s, k p}(x), \\qquad W'[o, i, a, b] = W[o, i, \\lfloor a/k_h \\rfloor,
    \\lfloor b/k_w \\rfloor] / d

with ``W'`` of kernel ``r k`` (each tap replicated over a ``k_h × k_w`` block) and ``d`` the pool's
divisor (1 for a sum pool, ``k_h k_w`` for an average pool). Output ``o`` of the folded
convolution reads input rows ``[o k s - k p, o k s - k p + r k)``, exactly the ``k_h``-row blocks
of pooled rows ``[o s - p, o s - p + r)``; the sizes agree, ``⌊(⌊H/k⌋ + 2p - r)/s⌋ + 1 =
⌊(H + 2kp - rk)/(ks)⌋ + 1``. Rows the pool drops (``H mod k_h`` at the bottom) are never read,
except by a padded convolution (``p > 0``), whose pooled zero rows would then cover real input:
that case is refused unless ``k`` divides the input size. A ``Linear`` after ``Flatten`` of the pool
is a ``Linear`` on the flattened input whose columns are replicated the same way (zero columns for
the dropped rows and columns).

For integer weights and a sum pool the folded layer computes the same integer sums, so an
integer SNN gives identical spikes; for float weights the sums are the same up to the order of
float additions (an average pool's ``1/d`` is multiplied into the weights).

**Memory.** The folded kernel is ``k_h k_w`` times larger (a 3×3 convolution after a 2×2 pool
becomes 6×6; a Linear after a 2×2 pool has 4 times the columns, more where the pool drops
rows): synapse memory grows by that factor, while the pool node disappears. Chips without a
pool (Loihi 2 through lava-nc: no pool process; lava-dl's NIR reader has no pool node) need it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from simulator import META_KEY, reset_states
from simulator.graph import AVG_POOL_FUNCTIONS, AVG_POOLS, FLATTEN_FUNCTIONS, FLATTEN_METHODS

log = logging.getLogger(__name__)


class PoolFoldError(ValueError):
    """A pool that cannot be folded into the next layer; the message names it and says why."""


@dataclass(frozen=True)
class PoolParams:
    """A 2-d pool's settings: kernel, stride and padding as (h, w), ``ceil_mode`` and its divisor."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    ceil_mode: bool
    divisor: float


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def fold_pool_into_conv(
    weight: torch.Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    kernel: tuple[int, int],
    divisor: float = 1.0,
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """The convolution equal to a ``kernel`` pool (stride = kernel, no padding) then a convolution.

    Args:
        weight: the convolution's weight ``[C_out, C_in / groups, r_h, r_w]``.
        stride, padding: the convolution's ``(s_h, s_w)`` and ``(p_h, p_w)``.
        kernel: the pool's ``(k_h, k_w)``.
        divisor: the pool's divisor (1: a sum pool; ``k_h k_w``: an average pool).

    Returns:
        ``(W', stride', padding')``: ``W'`` ``[C_out, C_in / groups, r_h k_h, r_w k_w]`` (each tap
        repeated over a ``k_h × k_w`` block, divided by ``divisor``), ``(s_h k_h, s_w k_w)``,
        ``(p_h k_h, p_w k_w)``.

    Raises:
        ValueError: ``weight`` is not 4-d.

    Example:
        >>> w, s, p = fold_pool_into_conv(torch.ones(1, 1, 3, 3), (1, 1), (0, 0), (2, 2))
        >>> tuple(w.shape), s, p  # a 3x3 conv after a 2x2 sum pool: 6x6, stride 2
        ((1, 1, 6, 6), (2, 2), (0, 0))
    """
    if weight.dim() != 4:
        raise ValueError(f"a Conv2d weight has 4 dimensions, got shape {tuple(weight.shape)}")
    kh, kw = kernel
    folded = weight.repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3)
    if divisor != 1:
        folded = folded / divisor
    return folded, (stride[0] * kh, stride[1] * kw), (padding[0] * kh, padding[1] * kw)


def fold_pool_into_linear(
    weight: torch.Tensor, in_shape: tuple[int, int, int], kernel: tuple[int, int], divisor: float = 1.0
) -> torch.Tensor:
    """The Linear on ``flatten(x)`` equal to ``Linear(flatten(pool(x)))`` (stride = kernel, no padding).

    Args:
        weight: the Linear's weight ``[N_out, C · (H // k_h) · (W // k_w)]``.
        in_shape: the pool's input ``(C, H, W)`` (no batch axis).
        kernel: the pool's ``(k_h, k_w)``; divisor: as in :func:`fold_pool_into_conv`.

    Returns:
        ``[N_out, C · H · W]``: column ``(c, h, w)`` is the pooled column ``(c, h // k_h, w // k_w)``
        divided by ``divisor``, zero for the rows and columns the pool drops (``h >= k_h ⌊H/k_h⌋``).

    Raises:
        ValueError: the Linear's input size is not ``C · ⌊H/k_h⌋ · ⌊W/k_w⌋`` (both numbers named).

    Example:
        >>> fold_pool_into_linear(torch.tensor([[1.0, 2.0]]), (2, 2, 3), (2, 2))  # [1, 2*1*1] -> [1, 12]
        tensor([[1., 1., 0., 1., 1., 0., 2., 2., 0., 2., 2., 0.]])
    """
    c, h, w = in_shape
    kh, kw = kernel
    ho, wo = h // kh, w // kw
    if weight.dim() != 2 or weight.shape[1] != c * ho * wo:
        raise ValueError(
            f"the Linear takes {weight.shape[-1]} inputs, the pool gives {c} x {ho} x {wo} = {c * ho * wo}"
        )
    blocks = weight.reshape(-1, c, ho, wo).repeat_interleave(kh, dim=2).repeat_interleave(kw, dim=3)
    folded = weight.new_zeros(weight.shape[0], c, h, w)
    folded[:, :, : ho * kh, : wo * kw] = blocks / divisor if divisor != 1 else blocks
    return folded.reshape(weight.shape[0], c * h * w)


# -- the fx pass ---------------------------------------------------------------------------


def _is_pool2d(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), AVG_POOLS)
    return node.op == "call_function" and node.target in AVG_POOL_FUNCTIONS


def pool_params(node: fx.Node, modules: dict[str, nn.Module]) -> PoolParams:
    """The settings of the average/sum pool ``node`` (module or ``F.avg_pool2d`` form).

    Raises:
        PoolFoldError: a 1-d pool, or padding without ``count_include_pad`` (a varying divisor).
    """
    if node.op == "call_module":
        module = modules[str(node.target)]
        if not isinstance(module, nn.AvgPool2d):
            raise PoolFoldError(f"pool {_label(node)!r}: only 2-d pools fold, got {type(module).__name__}")
        values: dict[str, Any] = {
            k: getattr(module, k)
            for k in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        }
    else:
        if node.target is not F.avg_pool2d:
            raise PoolFoldError(f"pool {_label(node)!r}: only 2-d pools fold, got avg_pool1d")
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        values = dict(zip(names, (None, None, 0, False, True, None), strict=True))
        values.update(zip(names, node.args[1:], strict=False))
        values.update(node.kwargs)
    kernel = _pair(values["kernel_size"])
    stride = _pair(values["stride"]) if values["stride"] not in (None, ()) else kernel
    padding = _pair(values["padding"])
    if any(padding) and not values["count_include_pad"]:
        raise PoolFoldError(f"pool {_label(node)!r}: padding with count_include_pad=False has a varying divisor")
    divisor = float(values["divisor_override"] or kernel[0] * kernel[1])
    return PoolParams(kernel, stride, padding, bool(values["ceil_mode"]), divisor)


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None:
        raise PoolFoldError(f"node {_label(node)!r}: no shape recorded (shape propagation did not reach it)")
    return tuple(int(s) for s in meta.shape[1:])


def _is_flatten_from_1(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` flattens everything after the batch axis (``nn.Flatten()``, ``torch.flatten(x, 1)``)."""
    if node.op == "call_module":
        module = modules.get(str(node.target))
        return isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1
    is_function = node.op == "call_function" and node.target in FLATTEN_FUNCTIONS
    if is_function or (node.op == "call_method" and node.target in FLATTEN_METHODS):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return bool(start == 1 and end == -1)
    return False


def _label(node: fx.Node) -> str:
    """A node as the user knows it: the module path of a module call, else the node's name."""
    return str(node.target) if node.op == "call_module" else node.name


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{_label(node)!r} ({type(modules[str(node.target)]).__name__})"
    if node.op == "output":
        return "the output"
    return f"{_label(node)!r} ({getattr(node.target, '__name__', node.target)})"


def _replace_module(gm: fx.GraphModule, target: str, new: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, new)


def _fold_conv(gm: fx.GraphModule, pool: fx.Node, user: fx.Node, params: PoolParams, modules) -> str:
    conv = modules[str(user.target)]
    if conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise PoolFoldError(
            f"pool {_label(pool)!r}: the next Conv2d {_label(user)!r} has dilation {conv.dilation}, padding "
            f"{conv.padding!r} ({conv.padding_mode}); only undilated, zero-padded convolutions fold"
        )
    _, h, w = _shape(cast(fx.Node, pool.args[0]))
    kh, kw = params.kernel
    if any(conv.padding) and (h % kh or w % kw):
        raise PoolFoldError(
            f"pool {_label(pool)!r}: the next Conv2d {_label(user)!r} is padded ({conv.padding}) and the pool drops "
            f"input rows or columns ({h}x{w} by {kh}x{kw}): the padding would cover them"
        )
    weight, stride, padding = fold_pool_into_conv(
        conv.weight.detach(), conv.stride, conv.padding, params.kernel, params.divisor
    )
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        (int(weight.shape[2]), int(weight.shape[3])),
        stride=stride,
        padding=padding,
        groups=conv.groups,
        bias=conv.bias is not None,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight.data.copy_(weight)
    if conv.bias is not None and new.bias is not None:
        new.bias.data.copy_(conv.bias.detach())
    _replace_module(gm, str(user.target), new)
    return str(user.target)


def _fold_linear(gm: fx.GraphModule, pool: fx.Node, flatten: fx.Node, params: PoolParams, modules) -> str:
    users = list(flatten.users)
    if len(users) != 1 or users[0].op != "call_module" or not isinstance(modules.get(str(users[0].target)), nn.Linear):
        found = ", ".join(_describe(u, modules) for u in users)
        raise PoolFoldError(f"pool {_label(pool)!r}: its Flatten {_label(flatten)!r} feeds {found}, not one Linear")
    linear = modules[str(users[0].target)]
    shape = _shape(cast(fx.Node, pool.args[0]))
    if len(shape) != 3:
        raise PoolFoldError(f"pool {_label(pool)!r}: input shape {list(shape)} is not [C, H, W]")
    try:
        weight = fold_pool_into_linear(linear.weight.detach(), cast(Any, shape), params.kernel, params.divisor)
    except ValueError as exc:
        raise PoolFoldError(f"pool {_label(pool)!r} -> Linear {_label(users[0])!r}: {exc}") from None
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None).to(
        device=linear.weight.device, dtype=linear.weight.dtype
    )
    new.weight.data.copy_(weight)
    if linear.bias is not None and new.bias is not None:
        new.bias.data.copy_(linear.bias.detach())
    _replace_module(gm, str(users[0].target), new)
    return str(users[0].target)


def _fold_one(gm: fx.GraphModule, pool: fx.Node, modules: dict[str, nn.Module]) -> dict:
    """Fold ``pool`` into the layer after it (in place); what was folded, as a record entry."""
    params = pool_params(pool, modules)
    if params.stride != params.kernel or any(params.padding) or params.ceil_mode:
        raise PoolFoldError(
            f"pool {_label(pool)!r}: kernel {params.kernel}, stride {params.stride}, padding {params.padding}, "
            f"ceil_mode {params.ceil_mode}: only non-overlapping pools (stride = kernel) without padding or "
            "ceil_mode fold"
        )
    users = list(pool.users)
    if len(users) != 1:
        found = ", ".join(_describe(u, modules) for u in users)
        raise PoolFoldError(
            f"pool {_label(pool)!r} feeds {len(users)} nodes ({found}); only a pool with one consumer folds"
        )
    user = users[0]
    module = modules.get(str(user.target)) if user.op == "call_module" else None
    if isinstance(module, nn.Conv2d):
        into = _fold_conv(gm, pool, user, params, modules)
    elif _is_flatten_from_1(user, modules):
        into = _fold_linear(gm, pool, user, params, modules)
    else:
        raise PoolFoldError(
            f"pool {_label(pool)!r} feeds {_describe(user, modules)}: only a pool followed by a Conv2d, or by "
            "Flatten and a Linear, folds (a pool before an IF layer, a join or the output has no weights to take it)"
        )
    pool.replace_all_uses_with(cast(fx.Node, pool.args[0]))
    gm.graph.erase_node(pool)
    if pool.op == "call_module":
        _replace_module(gm, str(pool.target), nn.Identity())  # unused: deleted below
        gm.delete_submodule(str(pool.target))
    return {"into": into, "kernel": list(params.kernel), "divisor": params.divisor}


def fold_sum_pools(snn: fx.GraphModule, input_shape: tuple[int, ...] | None = None) -> fx.GraphModule:
    """Fold every 2-d sum or average pool of ``snn`` into the Conv2d or Linear after it (module docstring).

    Pools are folded from the last to the first, so a pool followed by another pool and a
    convolution folds too (the later pool first). The IF layers keep their names and inputs;
    the folded layers keep their module paths (new, larger modules). The record
    ``snn.meta['ann2snn']['folded_pools']``, ``{pool (module path, else node name): {"into":
    module path, "kernel": [k_h, k_w], "divisor": d}}``, is written to the NIR file.

    Args:
        snn: a converted (and possibly quantised) SNN.
        input_shape: one input's shape without the batch axis, e.g. ``(1, 28, 28)``; default the
            one recorded at conversion (``meta['ann2snn']['input_shape']``).

    Returns:
        A copy of the SNN without pools (``snn`` itself is not changed).

    Raises:
        PoolFoldError: a pool that does not fold, naming it and why (overlapping, padded,
            ``ceil_mode``, 1-d, several consumers, followed by anything but a Conv2d or
            Flatten → Linear, e.g. an IF layer; a padded Conv2d after a pool that drops rows);
            no input shape.

    Example:
        >>> from simulator import IFNeuron
        >>> from simulator.graph import trace_snn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2, divisor_override=1), nn.Conv2d(2, 2, 3))
        >>> folded = fold_sum_pools(trace_snn(net), input_shape=(1, 12, 12))
        >>> [type(m).__name__ for m in folded.children()], tuple(folded.get_submodule("3").weight.shape)
        (['Conv2d', 'IFNeuron', 'Conv2d'], (2, 2, 6, 6))
    """
    gm = copy.deepcopy(snn)
    modules = dict(gm.named_modules())
    pools = [n for n in gm.graph.nodes if _is_pool2d(n, modules)]
    if not pools:
        return gm
    shape = input_shape or tuple(gm.meta.get(META_KEY, {}).get("input_shape", ()))
    if not shape:
        raise PoolFoldError("unknown input shape: pass input_shape=(C, H, W)")
    device = next((p.device for p in gm.parameters()), torch.device("cpu"))
    reset_states(gm)
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, *shape, device=device))
    reset_states(gm)
    record: dict[str, dict] = {}
    for pool in reversed(pools):
        name = _label(pool)
        record[name] = _fold_one(gm, pool, dict(gm.named_modules()))
        log.info("folded pool %s into %s (kernel x%d)", name, record[name]["into"], pool_area(record[name]))
    gm.graph.lint()
    gm.recompile()
    gm.meta.setdefault(META_KEY, {})["folded_pools"] = dict(reversed(list(record.items())))
    return gm


def pool_area(entry: dict) -> int:
    """How many times larger the folded layer's kernel is: ``k_h k_w`` of a record entry."""
    return int(entry["kernel"][0] * entry["kernel"][1])
