"""What an ANN's or SNN's torch.fx graph may contain, written once, and the one SNN tracer.

The converter's passes (what can be converted, where scales pass through, where branches
join), the multi-step executor (what it traces) and the NIR exporter (what it can write) all
classify fx nodes with the tables and functions below, so that "what counts as an add" or
"what counts as a ReLU" cannot drift apart between them.

A node is recognised in each form torch.fx records it: a module call (``call_module``, by
module type), a function call (``call_function``, by function, including the ``operator``
functions that ``a + b`` becomes) and a tensor method call (``call_method``, by name).

Example:
    >>> from torch import nn
    >>> gm = trace_snn(nn.Sequential(nn.Linear(2, 2), IFNeuron()))
    >>> [n.op for n in gm.graph.nodes]  # the IF layer is one node, not its traced time loop
    ['placeholder', 'call_module', 'call_module', 'output']
"""

from __future__ import annotations

import math
import operator
import threading
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from simulator.integrator import Integrator
from simulator.neuron import IFNeuron
from simulator.scale import Scale

#: Modules whose output is linear in their input (weights scaled by normalisation).
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: Average pooling, as modules and as functions (per channel, linear).
AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d)
AVG_POOL_FUNCTIONS = (F.avg_pool1d, F.avg_pool2d)
#: Modules that commute with a positive scale factor (scale passes through unchanged).
SCALE_TRANSPARENT = (*AVG_POOLS, nn.Flatten, nn.Unflatten)
#: Modules and functions that are no-ops at inference (removed by the converter).
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
SUB_FUNCTIONS = (operator.sub, operator.isub, torch.sub, torch.subtract)
SUB_METHODS = ("sub", "sub_", "subtract", "subtract_")
MUL_FUNCTIONS = (operator.mul, operator.imul, torch.mul, torch.multiply)
MUL_METHODS = ("mul", "mul_", "multiply", "multiply_")
DIV_FUNCTIONS = (operator.truediv, operator.itruediv, torch.div, torch.divide, torch.true_divide)
DIV_METHODS = ("div", "div_", "divide", "divide_", "true_divide", "true_divide_")
CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
FLATTEN_FUNCTIONS = (torch.flatten,)
FLATTEN_METHODS = ("flatten",)
VIEW_FUNCTIONS = (torch.reshape,)
VIEW_METHODS = ("view", "reshape")
#: Flatten, view and reshape in function and method form (they only move elements).
RESHAPE_FUNCTIONS = (*FLATTEN_FUNCTIONS, *VIEW_FUNCTIONS)
RESHAPE_METHODS = (*VIEW_METHODS, *FLATTEN_METHODS)


def view_or_reshape(x: torch.Tensor, *shape: Any, **kwargs: Any) -> torch.Tensor:
    """``x.view(*shape)`` (or ``x.view(size=...)``), or ``x.reshape`` to the same shape (same
    values, maybe a copy) where the view is impossible. The simulator keeps 2-d feature maps
    channels-last on the CPU (docs/simulation.md), so a ``.view(B, -1)`` the ANN could take on
    its contiguous maps needs a copy here. A dtype view (``x.view(torch.int32)``) is never turned
    into a reshape."""
    try:
        return x.view(*shape, **kwargs)
    except RuntimeError:
        if any(isinstance(s, torch.dtype) for s in (*shape, *kwargs.values())) or set(kwargs) - {"size"}:
            raise
        return x.reshape(kwargs["size"]) if "size" in kwargs else x.reshape(*shape)


#: Tensor methods that return their input's values unchanged.
IDENTITY_METHODS = ("contiguous",)
TRANSPARENT_FUNCTIONS = (*RESHAPE_FUNCTIONS, *AVG_POOL_FUNCTIONS)
TRANSPARENT_METHODS = (*RESHAPE_METHODS, *IDENTITY_METHODS)
SHAPE_FUNCTIONS = (getattr,)
SHAPE_METHODS = ("size", "dim")
#: Activations with no integrate-and-fire equivalent (named in the converter's refusals).
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
#: The simulator's layers that an SNN trace keeps as single nodes: IF neurons and integrators
#: hold state between calls (their forward is a time loop), and a Scale is one NIR node.
SNN_LEAVES = (IFNeuron, Integrator, Scale)

_ARITHMETIC = {
    "add": (ADD_FUNCTIONS, ADD_METHODS),
    "subtract": (SUB_FUNCTIONS, SUB_METHODS),
    "multiply": (MUL_FUNCTIONS, MUL_METHODS),
    "divide": (DIV_FUNCTIONS, DIV_METHODS),
}


def node_arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` of ``node`` if it was passed by position, else keyword ``name``, else ``default``."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _clamp_cap(node: fx.Node) -> float | None:
    """The cap ``c`` of ``clamp(x, 0, c)`` (``inf`` for ``clamp(x, min=0)``); None otherwise."""
    is_min_only = str(node.target).startswith("clamp_min") or node.target is torch.clamp_min
    low = node_arg(node, 1, "min")
    high = None if is_min_only else node_arg(node, 2, "max")
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
    ``modules`` is ``dict(gm.named_modules())``.
    """
    if node.op == "call_module":
        module = modules[str(node.target)]
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
            low, high = node_arg(node, 1, "min_val", -1.0), node_arg(node, 2, "max_val", 1.0)
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


def arithmetic(node: fx.Node) -> str | None:
    """``"add"``, ``"subtract"``, ``"multiply"`` or ``"divide"`` for an element-wise arithmetic
    node in any form (``a + b``, ``a += b``, ``torch.add(a, b)``, ``a.add_(b)``, ``a * 2``, ...),
    whatever its operands; None for any other node."""
    for kind, (functions, methods) in _ARITHMETIC.items():
        if (node.op == "call_function" and node.target in functions) or (
            node.op == "call_method" and node.target in methods
        ):
            return kind
    return None


def is_add(node: fx.Node) -> bool:
    """Whether ``node`` adds two tensors: ``a + b``, ``a += b``, ``torch.add(a, b)``, ``a.add(b)``
    (no constant operand, no ``alpha`` other than 1)."""
    if arithmetic(node) != "add":
        return False
    tensors = [a for a in node.args[:2] if isinstance(a, fx.Node)]
    alpha: object = node.kwargs.get("alpha", 1)
    return len(tensors) == 2 and len(node.args) == 2 and alpha == 1


def is_cat(node: fx.Node) -> bool:
    """Whether ``node`` is ``torch.cat``/``concat``/``concatenate`` (on any axis)."""
    return node.op == "call_function" and node.target in CAT_FUNCTIONS


def cat_inputs(node: fx.Node) -> list[fx.Node] | None:
    """The tensors ``torch.cat`` joins along a non-batch axis, or None if ``node`` is no such cat."""
    if not is_cat(node):
        return None
    tensors, dim = node_arg(node, 0, "tensors"), node_arg(node, 1, "dim", 0)
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        return None
    return list(tensors) if isinstance(dim, int) and dim != 0 else None


def _matches(
    node: fx.Node, modules: dict[str, nn.Module], module_types: tuple, functions: tuple, methods: tuple
) -> bool:
    """Whether ``node`` calls one of ``module_types``, ``functions`` or tensor ``methods``."""
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], module_types)
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is linear and scale-free (pooling, flatten, reshape): a scale passes through."""
    return _matches(node, modules, SCALE_TRANSPARENT, TRANSPARENT_FUNCTIONS, TRANSPARENT_METHODS)


def is_reshape(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Flatten/view/reshape in any form (these must keep the batch axis)."""
    return _matches(node, modules, (nn.Flatten, nn.Unflatten), RESHAPE_FUNCTIONS, RESHAPE_METHODS)


def is_identity(node: fx.Node) -> bool:
    """Whether ``node`` returns its input's values unchanged (``x.contiguous()``)."""
    return node.op == "call_method" and node.target in IDENTITY_METHODS


def is_softmax(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Softmax or LogSoftmax in any form."""
    return _matches(node, modules, SOFTMAXES, SOFTMAX_FUNCTIONS, SOFTMAX_METHODS)


def is_removed(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Dropout (any kind) or Identity: a no-op at inference."""
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], REMOVED)
    return node.op == "call_function" and node.target in REMOVED_FUNCTIONS


def is_shape_query(node: fx.Node) -> bool:
    """``x.size()``, ``x.shape``, ``x.dim()`` or an index into one: a value about a tensor's
    shape, not its contents."""
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
        return f"{node.target!r} ({type(modules[str(node.target)]).__name__})"
    kind = "method" if node.op == "call_method" else "function"
    return f"{node.name!r} ({kind} {getattr(node.target, '__name__', node.target)}){_owner(node)}"


#: Held while one of ann2snn's tracers traces: torch.fx patches ``nn.Module.__call__`` and
#: ``__getattr__`` for the whole process while it traces, and two traces at once would restore
#: each other's patches (leaving one in place for good).
TRACE_LOCK = threading.RLock()


class ThreadSafeTracer(fx.Tracer):
    """A ``torch.fx.Tracer`` that records only the module calls of the thread that traces.

    While fx traces, ``nn.Module.__call__`` is patched process-wide, so a module called by
    another thread at that moment (a simulation, an ANN's inference) went into the graph being
    traced: that thread failed ("module is not installed as a submodule") or, silently, got
    wrong outputs, and the trace was corrupted. Here such calls run as if nothing were traced,
    and traces by ann2snn's tracers take turns (:data:`TRACE_LOCK`). Code that traces with a
    plain ``fx.Tracer`` in another thread is not covered.
    """

    _thread: int | None = None

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with TRACE_LOCK:
            self._thread = threading.get_ident()
            try:
                return super().trace(root, concrete_args)
            finally:
                self._thread = None

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)  # another thread's call: the module's own __call__
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


class SNNTracer(ThreadSafeTracer):
    """A torch.fx tracer that keeps :data:`SNN_LEAVES` (IF layers, integrators, Scale) as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SNN_LEAVES) or super().is_leaf_module(m, qualname)


def trace_snn(model: nn.Module) -> fx.GraphModule:
    """``model`` as a GraphModule whose IF layers, integrators and Scale layers are single nodes.

    A GraphModule (a converted SNN) is returned as it is; a lone IF, Integrator or Scale layer is
    traced as ``nn.Sequential(model)`` (node target ``"0"``). ``model`` is not copied.

    Raises:
        Exception: whatever torch.fx raises for a forward it cannot trace (data-dependent
            control flow, iteration over a tensor, ...).
    """
    if isinstance(model, fx.GraphModule):
        return model
    root = nn.Sequential(model) if isinstance(model, SNN_LEAVES) else model
    return fx.GraphModule(root, SNNTracer().trace(root))


def _first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first ``nn.Conv1d``/``Conv2d``/``Conv3d`` or ``nn.Linear`` the input reaches: the first
    in the traced graph's order (:func:`trace_snn`), or in registration order for an
    ``nn.Sequential`` that cannot be traced; None when neither applies (registration order need
    not be the order of the forward: a model may register its classifier first)."""
    try:
        gm = trace_snn(model)
    except Exception:  # untraceable forward: only a Sequential's order is known
        if not isinstance(model, nn.Sequential):
            return None
        order = list(model.named_modules())
    else:
        modules = dict(gm.named_modules())
        order = [(str(n.target), modules[str(n.target)]) for n in gm.graph.nodes if n.op == "call_module"]
    return next(((name, m) for name, m in order if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))), None)


def input_shape_problem(model: nn.Module, shape: tuple[int, ...] | torch.Size) -> str | None:
    """Why inputs of ``shape`` (batch axis included) cannot fit ``model``'s first layer, or None.

    The first layer is the first ``nn.Conv1d``/``Conv2d``/``Conv3d`` or ``nn.Linear`` the
    forward calls (in the traced graph; for an untraceable ``nn.Sequential``, its first such
    layer; anything else untraceable is not checked): a ConvNd needs ``[B, in_channels, ...]``
    with N spatial axes; a Linear needs a batch axis and ``in_features`` either as the last axis
    or as all axes after the batch axis together (flattened first). Anything else is not checked
    (None).

    Example:
        >>> problem = input_shape_problem(nn.Sequential(nn.Conv2d(1, 4, 3)), (1, 28, 28))
        >>> problem.startswith("expected [B, 1, H, W] (the first layer, 0, is Conv2d(1, 4,"), problem[-15:]
        (True, 'got [1, 28, 28]')
    """
    shape = tuple(shape)
    first = _first_layer(model)
    if first is None:
        return None
    name, m = first
    if isinstance(m, nn.Linear):
        if len(shape) < 2 or (shape[-1] != m.in_features and math.prod(shape[1:]) != m.in_features):
            return (
                f"expected [B, {m.in_features}] or [B, ...] of {m.in_features} values per sample "
                f"(the first layer, {name}, is {m}), got {list(shape)}"
            )
        return None
    spatial = ["L"] if isinstance(m, nn.Conv1d) else ["H", "W"] if isinstance(m, nn.Conv2d) else ["D", "H", "W"]
    if len(shape) != 2 + len(spatial) or shape[1] != m.in_channels:
        expected = ", ".join(["B", str(m.in_channels), *spatial])
        return f"expected [{expected}] (the first layer, {name}, is {m}), got {list(shape)}"
    return None


def input_dtype_problem(model: nn.Module, dtype: torch.dtype) -> str | None:
    """Why inputs of ``dtype`` cannot enter ``model`` (its first floating-point parameter has
    another dtype: a Conv or Linear would raise deep inside the forward), or None (also for a
    model without floating-point parameters).

    Example:
        >>> print(input_dtype_problem(nn.Linear(2, 3), torch.uint8))  # doctest: +NORMALIZE_WHITESPACE
        inputs of dtype torch.uint8 but the model's parameters are torch.float32: convert them with
        x.to(torch.float32) (8-bit pixels: x.float() / 255)
        >>> input_dtype_problem(nn.Linear(2, 3), torch.float32) is None
        True
    """
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is None or dtype == weight.dtype:
        return None
    hint = "" if dtype.is_floating_point else " (8-bit pixels: x.float() / 255)"
    return (
        f"inputs of dtype {dtype} but the model's parameters are {weight.dtype}: "
        f"convert them with x.to({weight.dtype}){hint}"
    )
