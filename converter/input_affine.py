"""Fold a fixed per-channel affine map at the input (``(x - mean) / std``) into the first layer.

Many models normalise their pixels as their first operation (``(x - self.mean) / self.std`` with
``[C, 1, 1]`` buffers, ``x.sub(m).div(s)``, ``x * a + b``). An SNN has no place for that map: the
converter folds it into the Conv/Linear it feeds, so the SNN takes the same raw inputs (pixels
in [0, 1]) the ANN takes. With ``y = a * x + b`` per input channel ``c``:

``conv(y) = conv_{W * a}(x) + sum_{c, kernel} W[:, c] * b[c]`` (the second term joins the bias).

This is exact only where the convolution sees no padding: a zero padded in the normalised space is
``-b / a`` (the channel mean) in pixel space, so at the borders the folded layer would differ. A
zero-padded first convolution after a normalisation whose shift is not zero is therefore refused
with an explanation (remove the normalisation from the model, use ``padding=0`` after an explicit
pad of the normalised input, or let BatchNorm after the first convolution absorb the scale).
Rueckauer et al. 2017 (Front. Neurosci. 11:682) fold input preprocessing the same way.
"""

from __future__ import annotations

import logging

import torch
import torch.fx as fx
from torch import nn

from simulator.graph import (
    ADD_FUNCTIONS,
    ADD_METHODS,
    DIV_FUNCTIONS,
    DIV_METHODS,
    MUL_FUNCTIONS,
    MUL_METHODS,
    SUB_FUNCTIONS,
    SUB_METHODS,
)

__all__ = ["InputAffineError", "fold_input_affine"]

log = logging.getLogger(__name__)

_OPS = {
    **{f: "add" for f in ADD_FUNCTIONS},
    **{f: "sub" for f in SUB_FUNCTIONS},
    **{f: "mul" for f in MUL_FUNCTIONS},
    **{f: "div" for f in DIV_FUNCTIONS},
}
_METHOD_OPS = {
    **{m: "add" for m in ADD_METHODS},
    **{m: "sub" for m in SUB_METHODS},
    **{m: "mul" for m in MUL_METHODS},
    **{m: "div" for m in DIV_METHODS},
}


class InputAffineError(ValueError):
    """An input normalisation that cannot be folded exactly into the first layer; names both."""


def _op(node: fx.Node) -> str | None:
    if node.op == "call_function":
        return _OPS.get(node.target)  # type: ignore[arg-type]
    if node.op == "call_method":
        return _METHOD_OPS.get(str(node.target))
    return None


def _constant(gm: fx.GraphModule, arg: object) -> torch.Tensor | None:
    """``arg`` as a tensor when it is a number or a parameter/buffer/constant (get_attr)."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return torch.tensor(float(arg))
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        value = gm
        for part in str(arg.target).split("."):
            value = getattr(value, part)
        if isinstance(value, torch.Tensor):
            return value.detach().float()
    return None


def _per_channel(value: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    """``value`` as ``[channels]``: a scalar, or a ``[C]``, ``[C, 1, 1]``, ``[1, C, 1, 1]`` tensor
    (broadcast along the channel axis only)."""
    if value.numel() == 1:
        return value.reshape(1).expand(channels).clone()
    squeezed = value.squeeze()
    if squeezed.dim() == 1 and squeezed.numel() == channels:
        sizes = list(value.shape)
        # the channel axis must be the one that is not 1, at position 0 of [C, 1, ...] or 1 of [1, C, ...]
        if value.dim() == 1 or sizes.index(channels) in (value.dim() - 3, 0, 1):
            return squeezed.clone()
    raise InputAffineError(
        f"{where}: a constant of shape {tuple(value.shape)} is not per channel for {channels} input channels"
    )


def _chain(gm: fx.GraphModule, placeholder: fx.Node) -> tuple[list[tuple[str, torch.Tensor, bool]], fx.Node]:
    """The elementwise ops ``(op, constant, input_is_left)`` that follow ``placeholder`` while each
    node has one user, and the first node that is not such an op."""
    ops: list[tuple[str, torch.Tensor, bool]] = []
    node = placeholder
    while len(node.users) == 1:
        user = next(iter(node.users))
        op = _op(user)
        if op is None or len(user.args) != 2 or user.kwargs:
            break
        left, right = user.args
        if left is node and (c := _constant(gm, right)) is not None:
            ops.append((op, c, True))
        elif right is node and (c := _constant(gm, left)) is not None and op in ("add", "mul"):
            ops.append((op, c, False))
        else:
            break
        node = user
    return ops, node


def fold_input_affine(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold a per-channel affine map applied to the model's input into the Conv1d/Conv2d/Linear it
    feeds, in place; returns ``gm``. A model without such a map is returned unchanged.

    The map is a chain of ``+ - * /`` with constants (numbers, or ``[C]`` / ``[C, 1, 1]`` /
    ``[1, C, 1, 1]`` buffers or constants) applied to the input ``[B, C, ...]`` before anything
    else, feeding exactly one Conv/Linear (``C`` = its input channels / features). After the fold
    the layer computes, on the raw input, what it computed on the normalised one (to float
    rounding, about 1e-6 relative).

    Raises:
        InputAffineError: the layer zero-pads and the map shifts (``b != 0``): not exact at the
            borders, see the module docstring; a division by zero; a constant that is not per
            channel; or the normalised input feeding something other than one Conv/Linear.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return gm
    ops, end = _chain(gm, placeholders[0])
    if not ops:
        return gm
    modules = dict(gm.named_modules())
    consumers = list(end.users)
    target_node = consumers[0] if len(consumers) == 1 and consumers[0].op == "call_module" else None
    layer = modules.get(str(target_node.target)) if target_node is not None else None
    what = " → ".join(str(getattr(n, "name", n)) for n in [placeholders[0], end])
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)) or target_node is None:
        used = ", ".join(u.format_node() or u.name for u in consumers)
        raise InputAffineError(
            f"the input normalisation ({what}) feeds {used}: it can only be folded into one Conv1d, Conv2d "
            "or Linear that it feeds directly; normalise the data instead, or put the first layer right after it"
        )
    channels = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    where = f"the input normalisation before {target_node.target!r} ({type(layer).__name__})"
    a, b = torch.ones(channels), torch.zeros(channels)
    for op, c, _left in ops:
        c = _per_channel(c, channels, where)
        if op == "add":
            b = b + c
        elif op == "sub":
            b = b - c
        elif op == "mul":
            a, b = a * c, b * c
        else:
            if bool((c == 0).any()):
                raise InputAffineError(f"{where} divides by zero (channel {int((c == 0).nonzero()[0])})")
            a, b = a / c, b / c
    padded = not isinstance(layer, nn.Linear) and any(int(p) for p in _tuple(layer.padding))
    if isinstance(layer, nn.Conv1d | nn.Conv2d) and layer.padding == "same":
        padded = any(k > 1 for k in layer.kernel_size)
    if padded and bool((b != 0).any()) and layer.padding_mode == "zeros":
        raise InputAffineError(
            f"cannot fold {where} exactly: {target_node.target!r} pads with zeros (padding={layer.padding}), and a "
            f"zero padded after the normalisation is the pixel value -b/a = {(-b / a).tolist()} before it, so the "
            "converted first layer would differ at the image borders; remove the normalisation from the model (a "
            "BatchNorm after the first convolution absorbs it), or pad explicitly before normalising and use padding=0"
        )
    with torch.no_grad():
        weight = layer.weight
        shape = (1, channels) + (1,) * (weight.dim() - 2)
        shift = (weight * b.to(weight).view(shape)).sum(dim=tuple(range(1, weight.dim())))
        weight.mul_(a.to(weight).view(shape))
        if layer.bias is None:
            layer.bias = nn.Parameter(shift)
        else:
            layer.bias.add_(shift)
    target_node.replace_input_with(end, placeholders[0])
    for node in reversed(list(gm.graph.nodes)):
        if node.op != "placeholder" and not node.users and node.op != "output":
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    log.info("folded the input normalisation (scale %s, shift %s) into %s", a.tolist(), b.tolist(), target_node.target)
    return gm


def _tuple(value: object) -> tuple:
    if isinstance(value, str):
        return ()
    return value if isinstance(value, tuple) else (value,)
