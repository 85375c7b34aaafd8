"""Capture the ANN as a torch.fx graph and check that every operation can be converted.

This file also holds the node classifiers the other passes share (:func:`relu_cap`,
:func:`is_add`, :func:`is_cat`, :func:`is_transparent`, ...), so that "what counts as a ReLU"
is written once.
"""

from __future__ import annotations

import copy
import logging
import math
import operator
import traceback
import warnings
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: Modules whose output is linear in their input (weights scaled by normalisation).
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: Modules that commute with a positive scale factor (scale passes through unchanged).
SCALE_TRANSPARENT = (nn.AvgPool1d, nn.AvgPool2d, nn.Flatten, nn.Unflatten)
REMOVED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
REMOVED_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, torch.dropout)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
SOFTMAXES = (nn.Softmax, nn.LogSoftmax)
SOFTMAX_FUNCTIONS = (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)
SOFTMAX_METHODS = ("softmax", "log_softmax")

RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
RELU_METHODS = ("relu", "relu_")
CLAMP_FUNCTIONS = (torch.clamp, torch.clip, torch.clamp_min)
CLAMP_METHODS = ("clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_")
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
ADD_METHODS = ("add", "add_")
CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape)
RESHAPE_METHODS = ("view", "reshape", "flatten")
TRANSPARENT_FUNCTIONS = (*RESHAPE_FUNCTIONS, F.avg_pool2d, F.avg_pool1d)
TRANSPARENT_METHODS = (*RESHAPE_METHODS, "contiguous")
SHAPE_FUNCTIONS = (getattr,)
SHAPE_METHODS = ("size", "dim")
OTHER_ACTIVATIONS = (
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Threshold,
)


class UnsupportedLayerError(ValueError):
    """A layer or operation the converter cannot turn into an SNN; names its path and type."""


class NotTraceableError(TypeError):
    """The model's forward cannot be captured by torch.fx symbolic tracing."""


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _clamp_cap(node: fx.Node) -> float | None:
    """The cap ``c`` of ``clamp(x, 0, c)`` (``inf`` for ``clamp(x, min=0)``); None otherwise."""
    is_min_only = str(node.target).startswith("clamp_min") or node.target is torch.clamp_min
    low = _arg(node, 1, "min")
    high = None if is_min_only else _arg(node, 2, "max")
    if not isinstance(low, (int, float)) or low != 0:
        return None
    if high is None:
        return math.inf
    return float(high) if isinstance(high, (int, float)) and high > 0 else None


def relu_cap(node: fx.Node, modules: dict[str, nn.Module]) -> float | None:
    """``inf`` for a ReLU in any form, ``c`` for a ReLU capped at ``c``, None for anything else.

    ReLU forms: ``nn.ReLU`` (inplace or not), ``F.relu``, ``torch.relu``/``relu_``,
    ``x.relu()``/``x.relu_()``. Capped forms (an IF neuron saturates at one spike per step, so a
    scale λ <= c reproduces the cap): ``nn.ReLU6``, ``F.relu6``, ``nn.Hardtanh(0, c)``,
    ``F.hardtanh(x, 0, c)``, ``torch.clamp(x, 0, c)``/``x.clamp(0, c)`` (``min=0`` alone is a ReLU).
    """
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.ReLU6):
            return 6.0
        if isinstance(module, nn.ReLU):
            return math.inf
        if type(module) is nn.Hardtanh and module.min_val == 0 and module.max_val > 0:
            return float(module.max_val)
        return None
    if node.op == "call_function":
        if node.target in RELU_FUNCTIONS:
            return math.inf
        if node.target is F.relu6:
            return 6.0
        if node.target is F.hardtanh:
            low, high = _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)
            ok = isinstance(high, (int, float)) and low == 0 and high > 0
            return float(high) if ok else None
        return _clamp_cap(node) if node.target in CLAMP_FUNCTIONS else None
    if node.op == "call_method":
        if node.target in RELU_METHODS:
            return math.inf
        return _clamp_cap(node) if node.target in CLAMP_METHODS else None
    return None


def is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is a ReLU in any form, capped or not (see :func:`relu_cap`)."""
    return relu_cap(node, modules) is not None


def is_add(node: fx.Node) -> bool:
    """Whether ``node`` adds two tensors: ``a + b``, ``a += b``, ``torch.add(a, b)``, ``a.add(b)``."""
    is_fn = node.op == "call_function" and node.target in ADD_FUNCTIONS
    is_method = node.op == "call_method" and node.target in ADD_METHODS
    if not (is_fn or is_method):
        return False
    tensors = [a for a in node.args[:2] if isinstance(a, fx.Node)]
    alpha = node.kwargs.get("alpha", 1)
    return len(tensors) == 2 and len(node.args) == 2 and alpha == 1


def cat_inputs(node: fx.Node) -> list[fx.Node] | None:
    """The tensors ``torch.cat`` joins along a non-batch axis, or None if ``node`` is no such cat."""
    if node.op != "call_function" or node.target not in CAT_FUNCTIONS:
        return None
    tensors, dim = _arg(node, 0, "tensors"), _arg(node, 1, "dim", 0)
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        return None
    return list(tensors) if isinstance(dim, int) and dim != 0 else None


def _matches(
    node: fx.Node, modules: dict[str, nn.Module], module_types: tuple, functions: tuple, methods: tuple
) -> bool:
    """Whether ``node`` calls one of ``module_types``, ``functions`` or tensor ``methods``."""
    if node.op == "call_module":
        return isinstance(modules[node.target], module_types)
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is linear and scale-free (pooling, flatten, reshape): a scale passes through."""
    return _matches(node, modules, SCALE_TRANSPARENT, TRANSPARENT_FUNCTIONS, TRANSPARENT_METHODS)


def is_reshape(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Flatten/view/reshape in any form (these must keep the batch axis)."""
    return _matches(node, modules, (nn.Flatten, nn.Unflatten), RESHAPE_FUNCTIONS, RESHAPE_METHODS)


def is_softmax(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return _matches(node, modules, SOFTMAXES, SOFTMAX_FUNCTIONS, SOFTMAX_METHODS)


def _is_removed(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], REMOVED)
    return node.op == "call_function" and node.target in REMOVED_FUNCTIONS


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in SHAPE_FUNCTIONS or node.target is operator.getitem
    return node.op == "call_method" and node.target in SHAPE_METHODS


def _owner(node: fx.Node) -> str:
    """``" in 'block1.act' (Swish)"``: the innermost module whose forward made ``node``."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path, kind = list(stack.values())[-1]
    return f" in {path!r} ({getattr(kind, '__name__', kind)})"


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """``'network.5' (MaxPool2d)`` for a module node; ``'add' (function add) in 'block' (Block)``
    for an operation called inside a module's forward."""
    if node.op == "call_module":
        return f"{node.target!r} ({type(modules[node.target]).__name__})"
    kind = "method" if node.op == "call_method" else "function"
    return f"{node.name!r} ({kind} {getattr(node.target, '__name__', node.target)}){_owner(node)}"


def _hint(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    module = modules.get(node.target) if node.op == "call_module" else None
    if "max_pool" in str(node.target).lower() or "MaxPool" in type(module).__name__:
        return ": max-pooling of spikes is not the max of rates; use AvgPool2d"
    if isinstance(module, OTHER_ACTIVATIONS) or (node.op != "call_module" and "sigmoid" in str(node.target)):
        return ": only ReLU, ReLU6 and clamp(0, c) have an integrate-and-fire equivalent"
    if isinstance(module, BATCHNORMS):
        return ""
    if node.op == "call_module" and not isinstance(module, WEIGHTED):
        return ": no conversion rule for this module type"
    return ": not supported"


def _check_reshape(node: fx.Node, modules: dict[str, nn.Module]) -> None:
    """Refuse a reshape that merges or fixes the batch axis (time is folded into it)."""
    bad = ""
    if node.op == "call_module":
        module = modules[node.target]
        bad = "start_dim=0 flattens the batch axis" if isinstance(module, nn.Flatten) and module.start_dim == 0 else ""
    elif node.target in (torch.flatten, "flatten"):
        bad = "start_dim=0 flattens the batch axis" if _arg(node, 1, "start_dim", 0) == 0 else ""
    elif node.target in (torch.reshape, "view", "reshape"):
        shape = _arg(node, 1, "shape")
        shape = list(shape) if isinstance(shape, (list, tuple)) else list(node.args[1:])
        if shape and isinstance(shape[0], int) and shape[0] != -1:
            bad = f"the leading dimension is fixed at {shape[0]}"
        elif len(shape) == 1:
            bad = "a 1-d result merges the batch axis"
    if bad:
        raise UnsupportedLayerError(
            f"cannot convert {describe(node, modules)}: {bad}; keep the batch axis with nn.Flatten(), "
            "x.flatten(1) or x.view(x.size(0), -1) (the simulator folds time steps into the batch axis)"
        )


def _is_supported_module(module: nn.Module) -> bool:
    return isinstance(module, WEIGHTED + SCALE_TRANSPARENT + REMOVED + BATCHNORMS + SOFTMAXES)


def check_supported(gm: fx.GraphModule) -> None:
    """Raise :class:`UnsupportedLayerError` for the first operation that cannot be converted.

    Supported: Conv1d, Conv2d, Linear, BatchNorm1d/2d (folded), every ReLU form, ReLU6 and
    clamp(0, c), tensor + tensor adds, ``torch.cat`` on a non-batch axis, AvgPool1d/2d,
    Flatten/flatten/view/reshape keeping the batch axis, Dropout and Identity (removed), a
    trailing Softmax/LogSoftmax (dropped). The message names the module path and type (for an
    operation inside a custom module, that module's path and type) and, where one exists, what
    to use instead.
    """
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if is_reshape(node, modules):
            _check_reshape(node, modules)
        if node.op == "call_module" and (_is_supported_module(modules[node.target]) or is_relu(node, modules)):
            continue
        if node.op != "call_module" and (
            is_relu(node, modules)
            or is_transparent(node, modules)
            or _is_shape_query(node)
            or is_add(node)
            or cat_inputs(node) is not None
            or is_softmax(node, modules)
            or _is_removed(node, modules)
        ):
            continue
        raise UnsupportedLayerError(f"cannot convert {describe(node, modules)}{_hint(node, modules)}")


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
        if _is_removed(node, modules):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            log.debug("removed %s (no-op at inference)", describe(node, modules))


def _drop_trailing_softmax(gm: fx.GraphModule) -> None:
    """Drop a Softmax/LogSoftmax whose only user is the output (it does not change the argmax);
    refuse one anywhere else."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if not is_softmax(node, modules):
            continue
        if not all(user.op == "output" for user in node.users):
            raise UnsupportedLayerError(
                f"cannot convert {describe(node, modules)}: a Softmax is only allowed as the last operation "
                "(where it is dropped: it does not change the predicted class)"
            )
        warnings.warn(
            f"dropped the trailing {describe(node, modules)}: the SNN outputs the scores before it "
            "(the predicted class is the same)",
            UserWarning,
            stacklevel=4,
        )
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)


def _user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The last traceback frame outside torch (the user's line that blocked tracing)."""
    torch_dir = str(Path(torch.__file__).parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(torch_dir)]
    frames = [f for f in frames if not f.filename.endswith(("converter/trace.py", "converter\\trace.py"))]
    return frames[-1] if frames else None


def _trace_advice(exc: BaseException) -> str:
    text = str(exc)
    if "control flow" in text:
        return (
            "Python control flow (if/while/bool/assert) depends on a tensor value, which is unknown "
            "while tracing; make the branch a module attribute or a constructor argument, or use "
            "tensor operations such as torch.where"
        )
    if "Proxy" in text and ("int" in text or "integer" in text or "index" in text):
        return (
            "a traced tensor or shape is turned into a Python int (int(x.shape[0]), range(x.size(0)), ...); "
            "use nn.Flatten(), x.flatten(1) or x.view(x.size(0), -1) instead of shape arithmetic"
        )
    if "iter" in text.lower() or "len" in text:
        return "iterating over a tensor or taking len() of it cannot be traced; use tensor operations"
    return "rewrite this operation with torch functions or nn modules that torch.fx can trace"


def _not_traceable(model: nn.Module, exc: BaseException) -> NotTraceableError:
    frame = _user_frame(exc)
    where = f" at {Path(frame.filename).name}:{frame.lineno} `{(frame.line or '').strip()}`" if frame else ""
    return NotTraceableError(
        f"torch.fx cannot trace {type(model).__name__}.forward{where}: {_trace_advice(exc)} "
        f"(fx said: {type(exc).__name__}: {exc})"
    )


def trace(model: nn.Module) -> fx.GraphModule:
    """A traced, eval-mode copy of ``model`` with Dropout/Identity removed, a trailing Softmax
    dropped (with a warning) and shared modules duplicated per call site. ``model`` itself is
    not modified (parameters, training flag).

    Raises:
        NotTraceableError: torch.fx cannot trace the forward; the message names the line that
            blocks tracing and what to use instead.
        UnsupportedLayerError: an operation that cannot be converted (see :func:`check_supported`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    copied = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(copied)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        raise _not_traceable(model, exc) from exc
    check_supported(gm)
    _remove_no_ops(gm)
    _drop_trailing_softmax(gm)
    _unshare_modules(gm)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
