"""Stateless layers applied directly to compact (``bool``) spike tensors.

An IF layer's output travels as :class:`Spikes` (1 byte per spike instead of 4 or 8). A layer
that has an entry in :data:`SPIKE_OPS` consumes it directly; any other layer gets the spikes
as 0./1. floats. Each entry gives *bitwise* the result the layer computes on float spikes, or
returns ``None`` to decline (the caller then converts). Users may add entries.

Keys: a module class for ``call_module`` nodes, a function for ``call_function`` nodes, a
method name for ``call_method`` nodes. Values: ``fn(spikes, module, args, kwargs)`` where
``spikes`` is the first argument, ``module`` the called module (``None`` for functions and
methods) and ``args``/``kwargs`` the remaining arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from simulator.graph import RESHAPE_FUNCTIONS, RESHAPE_METHODS, view_or_reshape

#: Whether :meth:`Spikes.to_float` gives 2-d feature maps channels-last on the CPU (the default;
#: ``False`` only to measure the difference, as ``benchmarks/cpu_layout.py`` does).
CHANNELS_LAST_ON_CPU = True


class Spikes(NamedTuple):
    """An IF layer's spikes ``[steps * B, ...]`` as ``bool``, and the float dtype they stand for."""

    data: torch.Tensor
    dtype: torch.dtype

    def to_float(self) -> torch.Tensor:
        """The spikes as 0./1. in :attr:`dtype`; 2-d feature maps ``[N, C, H, W]`` on the CPU
        come out channels-last (same values and shape), the layout oneDNN's convolutions prefer
        (docs/simulation.md; measured in docs/benchmarks.md, "CPU layout")."""
        if CHANNELS_LAST_ON_CPU and self.data.dim() == 4 and self.data.device.type == "cpu":
            return self.data.to(self.dtype, memory_format=torch.channels_last)
        return self.data.to(self.dtype)


SpikeOp = Callable[[Spikes, nn.Module | None, tuple, dict], Any]

#: Largest kernel area whose spike count fits in uint8 (15 x 15 = 225 <= 255).
MAX_POOL_AREA = 255


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def sum_pool2d_bool(spikes: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Spike counts in non-overlapping ``kernel`` windows (stride = kernel, no padding, floor):
    ``[N, C, H, W]`` bool -> ``[N, C, H // kh, W // kw]`` uint8, summed in uint8 (rows, then columns)."""
    kh, kw = kernel
    n, c, h, w = spikes.shape
    ho, wo = h // kh, w // kw
    u = spikes[..., : ho * kh, : wo * kw].view(torch.uint8)
    rows = _sum_slices(u.reshape(n, c, ho, kh, wo * kw), 3)
    return _sum_slices(rows.reshape(n, c, ho, wo, kw), 4)


def _sum_slices(u: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over ``dim`` by adding its slices in place (one pass each, no int64 promotion)."""
    if u.shape[dim] == 1:
        return u.select(dim, 0).clone()
    acc = u.select(dim, 0) + u.select(dim, 1)
    for i in range(2, u.shape[dim]):
        acc += u.select(dim, i)
    return acc


def _avg_pool2d(spikes: Spikes, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    kernel = _pair(kernel_size)
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride)
    plain = stride == kernel and _pair(padding) == (0, 0) and not ceil_mode and divisor_override in (None, 1)
    if not plain or kernel[0] * kernel[1] > MAX_POOL_AREA or spikes.data.dim() != 4:
        return None
    counts = sum_pool2d_bool(spikes.data, kernel).to(spikes.dtype)
    return counts if divisor_override == 1 else counts.div_(kernel[0] * kernel[1])  # 1: a sum pool


def _avg_pool_module(spikes: Spikes, m: nn.AvgPool2d, args: tuple, kwargs: dict):
    return _avg_pool2d(spikes, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)


def _avg_pool_function(spikes: Spikes, m: nn.Module | None, args: tuple, kwargs: dict):
    names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    defaults = dict(zip(names, (None, None, 0, False, True, None), strict=True))
    defaults.update(zip(names, args, strict=False))
    defaults.update(kwargs)
    return _avg_pool2d(spikes, **defaults)


def _keep_bool(fn: Callable[..., torch.Tensor]) -> SpikeOp:
    """An op that only moves elements (flatten, view, reshape): apply it to the bool data."""

    def apply(spikes: Spikes, m: nn.Module | None, args: tuple, kwargs: dict) -> Spikes:
        return Spikes(fn(spikes.data, m, args, kwargs), spikes.dtype)

    return apply


def _function(fn: Callable[..., torch.Tensor]) -> SpikeOp:
    return _keep_bool(lambda x, m, a, k: fn(x, *a, **k))


def _method(name: str) -> SpikeOp:
    if name == "view":  # spikes of 2-d maps are channels-last on the CPU: a view may need a copy
        return _keep_bool(lambda x, m, a, k: view_or_reshape(x, *a, **k))
    return _keep_bool(lambda x, m, a, k: getattr(x, name)(*a, **k))


SPIKE_OPS: dict[Any, SpikeOp] = {
    nn.AvgPool2d: cast(SpikeOp, _avg_pool_module),  # called only with an nn.AvgPool2d
    F.avg_pool2d: _avg_pool_function,
    nn.Flatten: _keep_bool(lambda x, m, a, k: m(x)),
    **{fn: _function(fn) for fn in RESHAPE_FUNCTIONS},
    **{name: _method(name) for name in RESHAPE_METHODS},
}


def spike_op(op: str, target: Any, module: nn.Module | None) -> SpikeOp | None:
    """The :data:`SPIKE_OPS` entry for an fx node (``op``, ``target``), if any."""
    if op == "call_module":
        return SPIKE_OPS.get(type(module))
    if op in ("call_function", "call_method"):
        try:
            return SPIKE_OPS.get(target)
        except TypeError:  # unhashable target
            return None
    return None
