"""Capture the ANN as a torch.fx graph and check that every operation can be converted."""

from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

#: Modules whose output is linear in their input (weights scaled by normalisation).
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: Modules that commute with a positive scale factor (scale passes through unchanged).
SCALE_TRANSPARENT = (nn.AvgPool1d, nn.AvgPool2d, nn.Flatten, nn.Unflatten)
REMOVED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
RELU_METHODS = ("relu", "relu_")
TRANSPARENT_FUNCTIONS = (torch.flatten, torch.reshape, F.avg_pool2d, F.avg_pool1d)
TRANSPARENT_METHODS = ("view", "reshape", "flatten", "contiguous")
SHAPE_FUNCTIONS = (getattr,)
SHAPE_METHODS = ("size", "dim")


class UnsupportedLayerError(ValueError):
    """A layer or operation the converter cannot turn into an SNN; names its path and type."""


class NotTraceableError(TypeError):
    """The model's forward cannot be captured by torch.fx symbolic tracing."""


def is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is a ReLU in any form: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``."""
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    return node.op == "call_method" and node.target in RELU_METHODS


def is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is linear and scale-free (pooling, flatten, reshape): a scale passes through."""
    if node.op == "call_module":
        return isinstance(modules[node.target], SCALE_TRANSPARENT)
    if node.op == "call_function":
        return node.target in TRANSPARENT_FUNCTIONS
    return node.op == "call_method" and node.target in TRANSPARENT_METHODS


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in SHAPE_FUNCTIONS or node.target is operator.getitem
    return node.op == "call_method" and node.target in SHAPE_METHODS


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """``'network.5' (MaxPool2d)`` for a module node, ``'add' (function add)`` otherwise."""
    if node.op == "call_module":
        return f"{node.target!r} ({type(modules[node.target]).__name__})"
    kind = "method" if node.op == "call_method" else "function"
    return f"{node.name!r} ({kind} {getattr(node.target, '__name__', node.target)})"


def check_supported(gm: fx.GraphModule) -> None:
    """Raise :class:`UnsupportedLayerError` for the first operation that cannot be converted.

    Supported: Conv1d, Conv2d, Linear, BatchNorm1d/2d (folded), every ReLU form,
    AvgPool1d/2d, Flatten/flatten/view/reshape, Dropout and Identity (removed).
    """
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            module = modules[node.target]
            if isinstance(module, WEIGHTED + SCALE_TRANSPARENT + REMOVED + BATCHNORMS + (nn.ReLU,)):
                continue
        elif is_relu(node, modules) or is_transparent(node, modules) or _is_shape_query(node):
            continue
        is_maxpool = "max_pool" in str(node.target).lower() or (
            node.op == "call_module" and "MaxPool" in type(modules[node.target]).__name__
        )
        hint = " (use AvgPool2d: max-pooling has no exact rate equivalent)" if is_maxpool else ""
        raise UnsupportedLayerError(f"cannot convert {describe(node, modules)}: not supported{hint}")


def _unshare_modules(gm: fx.GraphModule) -> None:
    """Give each call site of a module used more than once its own copy (own scale and state)."""
    seen: set[str] = set()
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        if node.target in seen:
            new_name = f"{node.target.replace('.', '_')}_{node.name}"
            gm.add_submodule(new_name, copy.deepcopy(gm.get_submodule(node.target)))
            node.target = new_name
        seen.add(node.target)


def _remove_no_ops(gm: fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(modules[node.target], REMOVED):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def trace(model: nn.Module) -> fx.GraphModule:
    """A traced, eval-mode copy of ``model`` with Dropout/Identity removed and shared modules
    duplicated per call site. ``model`` itself is not modified (parameters, training flag).

    Raises:
        NotTraceableError: torch.fx cannot trace the forward (the message carries fx's reason).
        UnsupportedLayerError: an operation that cannot be converted (see :func:`check_supported`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    copied = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(copied)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        raise NotTraceableError(
            f"torch.fx cannot trace {type(model).__name__}.forward: {type(exc).__name__}: {exc}"
        ) from exc
    check_supported(gm)
    _remove_no_ops(gm)
    _unshare_modules(gm)
    gm.graph.lint()
    gm.recompile()
    return gm
