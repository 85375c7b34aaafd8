"""Capture the ANN as a torch.fx graph and check that every operation can be converted.

What each node is (a ReLU, an add, a concatenation, a reshape, ...) is decided by the
classifiers of :mod:`simulator.graph`, which the other passes, the simulator and the NIR
exporter share; the ones the converter's passes use are re-exported here.
"""

from __future__ import annotations

import copy
import logging
import traceback
import warnings
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from converter.input_affine import fold_input_affine
from converter.qcfs import qcfs_to_clamp
from simulator.graph import (
    BATCHNORMS,
    FLATTEN_FUNCTIONS,
    FLATTEN_METHODS,
    OTHER_ACTIVATIONS,
    REMOVED,
    SCALE_TRANSPARENT,
    SOFTMAXES,
    VIEW_FUNCTIONS,
    VIEW_METHODS,
    WEIGHTED,
    ThreadSafeTracer,
    cat_inputs,
    describe,
    is_add,
    is_relu,
    is_removed,
    is_reshape,
    is_shape_query,
    is_softmax,
    is_transparent,
    node_arg,
    relu_cap,
)

__all__ = [
    "WEIGHTED",
    "NotTraceableError",
    "UnsupportedLayerError",
    "cat_inputs",
    "check_supported",
    "describe",
    "is_add",
    "is_relu",
    "is_reshape",
    "is_transparent",
    "relu_cap",
    "resolve_adaptive_pools",
    "trace",
]

log = logging.getLogger(__name__)


class UnsupportedLayerError(ValueError):
    """A layer or operation the converter cannot turn into an SNN; names its path and type."""


class NotTraceableError(TypeError):
    """The model's forward cannot be captured by torch.fx symbolic tracing."""


#: Module types with no integrate-and-fire equivalent, for the refusal's reason.
ACTIVATION_MODULES = (*OTHER_ACTIVATIONS, nn.RReLU, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.GLU)
#: Function and method names of the same activations (and of clamp with a lower bound other
#: than 0), so that ``F.leaky_relu(x)`` and ``nn.LeakyReLU()`` are refused with one message.
ACTIVATION_NAMES = frozenset(
    {
        *("leaky_relu", "leaky_relu_", "prelu", "rrelu", "rrelu_", "elu", "elu_", "selu", "selu_"),
        *("celu", "celu_", "gelu", "silu", "mish", "sigmoid", "sigmoid_", "tanh", "tanh_", "expit"),
        *("special_expit", "hardswish", "hardsigmoid", "softplus", "hardtanh", "hardtanh_", "threshold"),
        *("threshold_", "_threshold", "log_sigmoid", "logsigmoid", "softsign", "tanhshrink", "glu"),
        *("clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"),
    }
)
MAX_POOL_HINT = ": max-pooling of spikes is not the max of rates; use AvgPool2d"
ACTIVATION_HINT = ": only ReLU, ReLU6 and clamp(0, c) have an integrate-and-fire equivalent"


def _hint(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """Why ``node`` cannot be converted and what to use instead; the same for a module and its
    function or method form (``nn.MaxPool2d`` and ``F.max_pool2d``)."""
    module = modules.get(str(node.target)) if node.op == "call_module" else None
    name = "" if module is not None else str(getattr(node.target, "__name__", node.target))
    if "MaxPool" in type(module).__name__ or "max_pool" in name:
        return MAX_POOL_HINT
    if isinstance(module, ACTIVATION_MODULES) or name in ACTIVATION_NAMES:
        return ACTIVATION_HINT
    if isinstance(module, BATCHNORMS):
        return ""
    if node.op == "call_module" and not isinstance(module, WEIGHTED):
        return ": no conversion rule for this module type"
    return ": not supported"


def _check_reshape(node: fx.Node, modules: dict[str, nn.Module]) -> None:
    """Refuse a reshape that merges or fixes the batch axis (time is folded into it)."""
    bad = ""
    if node.op == "call_module":
        module = modules[str(node.target)]
        bad = "start_dim=0 flattens the batch axis" if isinstance(module, nn.Flatten) and module.start_dim == 0 else ""
    elif node.target in (*FLATTEN_FUNCTIONS, *FLATTEN_METHODS):
        bad = "start_dim=0 flattens the batch axis" if node_arg(node, 1, "start_dim", 0) == 0 else ""
    elif node.target in (*VIEW_FUNCTIONS, *VIEW_METHODS):
        shape = node_arg(node, 1, "shape")
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
    return isinstance(module, WEIGHTED + SCALE_TRANSPARENT + REMOVED + BATCHNORMS + SOFTMAXES + (nn.AdaptiveAvgPool2d,))


#: ``x.mean(dims)`` / ``torch.mean(x, dims)`` dims that are a global average pool of ``[B, C, H, W]``.
GLOBAL_MEAN_DIMS = ((2, 3), (3, 2), (-2, -1), (-1, -2))


def _mean_keepdim(node: fx.Node) -> bool | None:
    """For a spatial mean ``x.mean((2, 3))`` / ``torch.mean(x, (2, 3), keepdim=...)``: its keepdim;
    None for any other node."""
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if not is_mean:
        return None
    dims = node_arg(node, 1, "dim")
    if not isinstance(dims, (tuple, list)) or tuple(dims) not in GLOBAL_MEAN_DIMS:
        return None
    if node.kwargs.get("dtype") is not None:
        return None
    return bool(node_arg(node, 2, "keepdim", False))


def _canonical_global_pools(gm: fx.GraphModule) -> None:
    """Rewrite ``F.adaptive_avg_pool2d(x, s)`` as an ``nn.AdaptiveAvgPool2d(s)`` module and a spatial
    mean ``x.mean((2, 3))`` as ``nn.AdaptiveAvgPool2d(1)`` (followed by ``torch.flatten(·, 1)``
    without keepdim); :func:`resolve_adaptive_pools` later makes each an ``nn.AvgPool2d``."""
    for node in list(gm.graph.nodes):
        keepdim = _mean_keepdim(node)
        functional = node.op == "call_function" and node.target is F.adaptive_avg_pool2d
        if keepdim is None and not functional:
            continue
        size = node_arg(node, 1, "output_size") if functional else 1
        name = f"global_pool_{node.name}"
        gm.add_submodule(name, nn.AdaptiveAvgPool2d(size))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        last = new
        if keepdim is False:
            with gm.graph.inserting_after(new):
                last = gm.graph.call_function(torch.flatten, (new, 1))
        node.replace_all_uses_with(last)
        gm.graph.erase_node(node)


def resolve_adaptive_pools(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """Replace every ``nn.AdaptiveAvgPool2d`` of ``gm`` by the ``nn.AvgPool2d`` it equals on inputs
    shaped like ``example`` (``[B, C, H, W]`` at the model's input): kernel = stride =
    ``(H_in / H_out, W_in / W_out)`` at the pool (a global pool is the whole feature map). In
    place; returns ``gm``.

    Raises:
        UnsupportedLayerError: a pool whose input is not ``[B, C, H, W]``, or whose output size
            does not divide its input size (the windows would overlap unevenly), naming the pool.
    """
    modules = dict(gm.named_modules())
    pools = [
        n for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[str(n.target)], nn.AdaptiveAvgPool2d)
    ]
    if not pools:
        return gm
    with torch.no_grad():
        ShapeProp(gm).propagate(example[:1])
    for node in pools:
        module = modules[str(node.target)]
        meta = node.args[0].meta.get("tensor_meta") if isinstance(node.args[0], fx.Node) else None
        shape = tuple(meta.shape) if meta is not None else ()
        label = f"{node.target!r} ({type(module).__name__}({module.output_size}))"
        if len(shape) != 4:
            raise UnsupportedLayerError(f"cannot convert {label}: its input has shape {list(shape)}, not [B, C, H, W]")
        out = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
        out = tuple(s if o is None else int(o) for o, s in zip(out, shape[2:], strict=True))
        if any(s % o for s, o in zip(shape[2:], out, strict=True)):
            raise UnsupportedLayerError(
                f"cannot convert {label}: the output size {list(out)} does not divide the input size "
                f"{list(shape[2:])}, so it is not one AvgPool2d; use AvgPool2d or an output size that divides it"
            )
        kernel = (shape[2] // out[0], shape[3] // out[1])
        gm.add_submodule(str(node.target), nn.AvgPool2d(kernel, kernel))
        log.debug("%s on %s is AvgPool2d(%s)", label, list(shape[1:]), kernel)
    gm.recompile()
    return gm


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
        if node.op == "call_module" and (_is_supported_module(modules[str(node.target)]) or is_relu(node, modules)):
            continue
        if node.op != "call_module" and (
            is_relu(node, modules)
            or is_transparent(node, modules)
            or is_shape_query(node)
            or is_add(node)
            or cat_inputs(node) is not None
            or is_softmax(node, modules)
            or is_removed(node, modules)
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
        if is_removed(node, modules):
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


def trace(model: nn.Module, example: torch.Tensor | None = None) -> fx.GraphModule:
    """A traced, eval-mode copy of ``model`` with Dropout/Identity removed, a trailing Softmax
    dropped (with a warning), shared modules duplicated per call site, a per-channel input
    normalisation folded into the first layer (:func:`converter.input_affine.fold_input_affine`)
    and global pooling (``nn.AdaptiveAvgPool2d``, ``F.adaptive_avg_pool2d``, ``x.mean((2, 3))``)
    made an ``nn.AvgPool2d`` of the size it has on ``example`` (``[B, C, H, W]`` inputs; without
    ``example`` the pools stay ``nn.AdaptiveAvgPool2d``, see :func:`resolve_adaptive_pools`).
    ``model`` itself is not modified (parameters, training flag).

    Raises:
        NotTraceableError: torch.fx cannot trace the forward; the message names the line that
            blocks tracing and what to use instead.
        UnsupportedLayerError: an operation that cannot be converted (see :func:`check_supported`
            and :func:`resolve_adaptive_pools`).
        converter.input_affine.InputAffineError: an input normalisation that cannot be folded exactly.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    copied = copy.deepcopy(model).eval()
    qcfs_to_clamp(copied)
    try:
        gm = fx.GraphModule(copied, ThreadSafeTracer().trace(copied), type(copied).__name__)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        raise _not_traceable(model, exc) from exc
    fold_input_affine(gm)
    _canonical_global_pools(gm)
    check_supported(gm)
    _remove_no_ops(gm)
    _drop_trailing_softmax(gm)
    _unshare_modules(gm)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    if example is not None:
        resolve_adaptive_pools(gm, example)
    return gm
