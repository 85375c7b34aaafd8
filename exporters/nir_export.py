"""SNN (torch.fx GraphModule) → NIR graph → ``.nir`` file.

Export is a table from module type to one small mapping function (:data:`EXPORTERS`), which a
user can extend. Shapes come from running the graph once on a zero input of the recorded
input shape (torch.fx ``ShapeProp``); NIR shapes have no batch axis.

Joins: NIR sums every edge that enters a node, so a residual add (``a + b``, ``torch.add``,
``+=``) becomes no node at all: the edges of both summands go into each consumer (on import
they are summed in edge order, the order of the add's arguments). NIR 1.0.8 has no
concatenation node, so a ``torch.cat`` on the channel axis becomes one channel-embedding node
per input (a 1×1 Conv with 0/1 weights for ``[C, ...]`` tensors, an Affine map for ``[C]``),
all feeding the consumers, whose sum is the concatenation, bit for bit. Residual scale
factors are :class:`simulator.Scale` modules, written as ``nir.Scale`` nodes.

What each fx node is (an add, a concatenation, a reshape, ...) is decided by
:mod:`simulator.graph`, the vocabulary the converter also uses. Anything that cannot be
written exactly is refused with an :class:`ExportError` naming the node, never dropped: NIR
sums the edges into a node with weight 1 and has no constant source, so a constant summand
(``fc(x) + 0.7``), ``torch.add(a, b, alpha=2)``, a subtraction, a product or quotient (by a
number or a tensor), a constant tensor operand and a summand counted twice (``h + h``) have
no encoding; neither have a second input or a second output.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import nir
import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from exporters.atomic import atomic_path
from exporters.nir_torch import graph_to_snn
from exporters.profiles import PROFILES, apply_profile
from exporters.semantics import JSON_GRAPH_KEYS
from simulator import META_KEY, IFNeuron, Integrator, Scale, model_encoding, readout_kind, reset_states, simulate
from simulator.graph import (
    arithmetic,
    describe,
    is_add,
    is_cat,
    is_identity,
    is_reshape,
    node_arg,
    trace_snn,
)

ExportFn = Callable[[Any, tuple[int, ...], tuple[int, ...]], nir.NIRNode]  # (module, in shape, out shape)


class ExportError(ValueError):
    """A node of the SNN has no NIR equivalent; the message names it."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _conv(module: nn.Conv1d | nn.Conv2d, in_shape, out_shape) -> nir.NIRNode:
    if module.padding_mode != "zeros":
        raise ExportError(f"padding_mode={module.padding_mode!r} has no NIR equivalent (only 'zeros')")
    weight = _np(module.weight)
    if module.groups != 1:  # nir 1.0.8's type inference reads the input channels from weight.shape[1]
        weight = _dense_weight(weight, module.groups)
    bias = module.bias if module.bias is not None else torch.zeros(module.out_channels)
    cls = nir.Conv2d if isinstance(module, nn.Conv2d) else nir.Conv1d
    spatial = tuple(in_shape[1:]) if cls is nir.Conv2d else int(in_shape[1])
    unpack = (lambda v: v) if cls is nir.Conv2d else (lambda v: v[0] if isinstance(v, tuple) else v)
    return cls(
        input_shape=spatial,
        weight=weight,
        stride=unpack(module.stride),
        padding=unpack(module.padding),
        dilation=unpack(module.dilation),
        groups=1,
        bias=_np(bias),
        metadata={"groups": module.groups} if module.groups != 1 else {},
    )


def _dense_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weight ``[C_out, C_in / g, *k]`` as the equivalent dense one
    ``[C_out, C_in, *k]`` (zeros outside each group's block): nir 1.0.8's type check takes
    the input channels from ``weight.shape[1]``, so ``groups > 1`` fails ``nir.read``. The
    node's metadata keeps ``groups`` for information."""
    c_out, per_group = weight.shape[:2]
    dense = np.zeros((c_out, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    out_per_group = c_out // groups
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * per_group : (g + 1) * per_group] = weight[rows]
    return dense


def _linear(module: nn.Linear, in_shape, out_shape) -> nir.NIRNode:
    bias = module.bias if module.bias is not None else torch.zeros(module.out_features)
    return nir.Affine(weight=_np(module.weight), bias=_np(bias))


def _avgpool(module: nn.AvgPool2d, in_shape, out_shape) -> nir.NIRNode:
    if module.ceil_mode or module.divisor_override not in (None, 1):
        raise ExportError("AvgPool2d with ceil_mode or a divisor_override other than 1 has no NIR equivalent")
    pair = lambda v: np.array(v if isinstance(v, tuple) else (v, v))  # noqa: E731
    if np.any(pair(module.padding)) and not module.count_include_pad:
        raise ExportError("AvgPool2d with padding and count_include_pad=False has no NIR equivalent")
    pool = nir.SumPool2d if module.divisor_override == 1 else nir.AvgPool2d  # divisor 1: a sum pool
    return pool(
        kernel_size=pair(module.kernel_size),
        stride=pair(module.stride or module.kernel_size),
        padding=pair(module.padding),
    )


def _flatten(module: nn.Flatten, in_shape, out_shape) -> nir.NIRNode:
    end = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
    return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=module.start_dim - 1, end_dim=end)


def _if(module: IFNeuron, in_shape, out_shape) -> nir.NIRNode:
    full = lambda t: np.broadcast_to(_np(t), out_shape).copy()  # noqa: E731
    return nir.IF(
        r=full(module.r),
        v_threshold=full(module.v_threshold),
        v_reset=full(module.v_reset),
        metadata={
            "reset": module.reset,
            "spike_rule": module.spike_rule,
            "v_init_fraction": float(module.v_init),
            "dt": 1.0,
        }
        | ({} if module.v_min is None else {"v_min_fraction": module.v_min})
        | ({} if module.state_bits is None else {"state_bits": int(module.state_bits)})
        | ({"integer": True} if module.integer else {}),
    )


def _integrator(module: Integrator, in_shape, out_shape) -> nir.NIRNode:
    return nir.I(r=np.broadcast_to(_np(module.r), out_shape).copy(), metadata={"dt": 1.0})


def _scale(module: Scale, in_shape, out_shape) -> nir.NIRNode:
    return nir.Scale(scale=np.broadcast_to(_np(module.scale), out_shape).copy())


#: Module type → function ``(module, input shape, output shape) -> nir.NIRNode`` (no batch axis).
EXPORTERS: dict[type, ExportFn] = {
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Linear: _linear,
    nn.AvgPool2d: _avgpool,
    nn.Flatten: _flatten,
    Scale: _scale,
    IFNeuron: _if,
    Integrator: _integrator,
}


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if not isinstance(meta, TensorMetadata):
        raise ExportError(f"node {node.name!r} does not produce one tensor")
    return tuple(meta.shape[1:])


def _tensor_inputs(node: fx.Node, mapped: dict[fx.Node, list[str]]) -> list[str]:
    """NIR sources of ``node``'s tensor inputs (an add contributes the sources of its summands)."""
    return [name for a in node.all_input_nodes if a in mapped for name in mapped[a]]


def _constant(value, mapped: dict[fx.Node, list[str]]) -> str | None:
    """How to name ``value`` (an operand) if it is not computed from the network input, else None."""
    if not isinstance(value, fx.Node):
        return f"the constant {value!r}"
    if value in mapped:
        return None
    return f"{value.name!r}, which is not computed from the network input ({value.op} {value.target})"


def _add_sources(node: fx.Node, mapped: dict[fx.Node, list[str]]) -> list[str]:
    """The NIR sources of a tensor + tensor add: those of both summands, in argument order.

    Raises:
        ExportError: ``alpha`` other than 1, a constant summand, another form of add, or a
            summand that the other one already contains (each without the node's description).
    """
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1:
        raise ExportError(
            f"alpha={alpha!r} scales the second summand, and NIR sums the edges into a node with weight 1; "
            "put the factor in a simulator.Scale layer on that branch (a NIR Scale node)"
        )
    for operand in (node_arg(node, 0, "input"), node_arg(node, 1, "other")):
        if (what := _constant(operand, mapped)) is not None:
            raise ExportError(
                f"it adds {what}, and NIR has no constant source; fold a constant summand into the bias of "
                "the layer before the add"
            )
    if not is_add(node):
        raise ExportError("only the sum of two tensors (a + b, torch.add(a, b)) can be written as NIR edges")
    sources = [name for operand in node.args[:2] for name in mapped[cast(fx.Node, operand)]]
    repeated = next((name for i, name in enumerate(sources) if name in sources[:i]), None)
    if repeated is not None:
        raise ExportError(
            f"it sums the output of NIR node {repeated!r} more than once, and a repeated NIR edge does not "
            "reliably double a value (readers may merge it); scale that branch with simulator.Scale instead"
        )
    return sources


def _arithmetic_refusal(node: fx.Node, kind: str, mapped: dict[fx.Node, list[str]]) -> str:
    """Why a subtraction, product or quotient cannot be written (NIR only sums edges)."""
    operands = (node_arg(node, 0, "input"), node_arg(node, 1, "other"))
    constants = [c for c in (_constant(o, mapped) for o in operands) if c is not None]
    if kind == "subtract":
        if constants:
            return (
                f"it subtracts with {constants[0]}, and NIR has no constant source; fold a constant into the "
                "bias of the layer before it"
            )
        return (
            "NIR sums the edges into a node and cannot subtract; negate the subtracted branch with "
            "simulator.Scale(-1) and add"
        )
    verb = "multiplies" if kind == "multiply" else "divides"
    if constants:
        return (
            f"it {verb} by {constants[-1]}, and a NIR edge carries no factor; put the factor in a simulator.Scale "
            "layer (a NIR Scale node) or in the weights of the layer before it"
        )
    return f"it {verb} two tensors computed from the network input, and NIR has no node for that"


def _cat_parts(node: fx.Node, mapped: dict[fx.Node, list[str]]) -> list[fx.Node]:
    parts = node_arg(node, 0, "tensors")
    dim = node_arg(node, 1, "dim", 0)
    rank = len(_shape(node)) + 1
    if not isinstance(dim, int) or dim % rank != 1:
        raise ExportError(
            f"cannot export node {node.name!r} (torch.cat on axis {dim}): only the channel axis (1) "
            "can be written as NIR channel-embedding nodes"
        )
    for part in parts:
        if (what := _constant(part, mapped)) is not None:
            raise ExportError(
                f"cannot export node {node.name!r} (torch.cat): it joins {what}, and NIR has no constant source"
            )
    return list(parts)


def _embedding(offset: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nir.NIRNode:
    """A node copying ``[C_in, ...]`` into channels ``offset .. offset + C_in`` of ``[C_out, ...]``."""
    c_in, c_out = in_shape[0], out_shape[0]
    weight = np.zeros((c_out, c_in), dtype=np.float32)
    weight[offset + np.arange(c_in), np.arange(c_in)] = 1.0
    bias = np.zeros(c_out, dtype=np.float32)
    if len(in_shape) == 1:
        return nir.Affine(weight=weight, bias=bias)
    if len(in_shape) == 2:
        return nir.Conv1d(
            input_shape=int(in_shape[1]),
            weight=weight[:, :, None],
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            bias=bias,
        )
    if len(in_shape) == 3:
        return nir.Conv2d(
            input_shape=tuple(in_shape[1:]),
            weight=weight[:, :, None, None],
            stride=(1, 1),
            padding=(0, 0),
            dilation=(1, 1),
            groups=1,
            bias=bias,
        )
    raise ExportError(f"no NIR channel embedding for tensors of shape {in_shape}")


def _export_cat(node: fx.Node, parts: list[fx.Node], mapped, nodes: dict, edges: list) -> list[str]:
    """Write one embedding node per concatenated tensor; return their names (summed by consumers)."""
    names, offset = [], 0
    for i, part in enumerate(parts):
        name = f"{node.name}_embed{i}"
        in_shape = _shape(part)
        nodes[name] = _embedding(offset, in_shape, _shape(node))
        edges.extend((src, name) for src in mapped[part])
        names.append(name)
        offset += in_shape[0]
    return names


def _map_node(node: fx.Node, modules: dict[str, nn.Module], in_shape, out_shape) -> nir.NIRNode:
    if node.op == "call_module":
        module = modules[str(node.target)]
        fn = next((f for t, f in EXPORTERS.items() if type(module) is t), None)
        if fn is None:
            raise ExportError(f"cannot export {node.target!r} ({type(module).__name__}): no NIR mapping")
        try:
            return fn(module, in_shape, out_shape)
        except ExportError as exc:
            raise ExportError(f"cannot export {node.target!r} ({type(module).__name__}): {exc}") from None
    if node.op == "call_function" and node.target is F.avg_pool2d:
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        kwargs: dict[str, Any] = {**dict(zip(names, node.args[1:], strict=False)), **node.kwargs}
        return _avgpool(nn.AvgPool2d(**kwargs), in_shape, out_shape)
    if is_reshape(node, modules) and len(out_shape) == 1:
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
    raise ExportError(f"cannot export node {node.name!r} ({node.op} {getattr(node.target, '__name__', node.target)})")


def _graph_metadata(snn: fx.GraphModule, T: int | None, extra: dict | None) -> dict:
    info = snn.meta.get(META_KEY, {})
    meta = {
        "T": T,
        "input_encoding": model_encoding(snn),
        "readout": readout_kind(snn),
        "mode": info.get("mode"),
        "output_scale": info.get("output_scale"),
        **{key: _json_dict(info.get(key)) for key in JSON_GRAPH_KEYS},
        "generator": f"ann2snn {_version()}",
        "nir_version": nir.version,
        **_quantization_metadata(info.get("quantization")),
        **(extra or {}),
    }
    return {k: v for k, v in meta.items() if v is not None}  # nir.write crashes on None


def _json_dict(value: dict | None) -> str | None:
    """A conversion dict (``lambdas``, ``if_layers``) as a JSON string (None stays None)."""
    return None if not value else json.dumps({str(k): v for k, v in value.items()}, sort_keys=True)


def _quantization_metadata(quantization: dict | None) -> dict:
    """A quantised SNN's bit widths as graph metadata, and everything
    :func:`converter.quantize` recorded (per layer: the factor, the integer threshold and V[0],
    the bits they need) as one JSON string under ``quantization`` (NIR metadata holds flat values)."""
    if not quantization:
        return {}
    return {"weight_bits": quantization.get("weight_bits"), "state_bits": quantization.get("state_bits")}


def _version() -> str:
    try:
        return importlib.metadata.version("ann2snn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def to_nir(
    snn: nn.Module, T: int | None = None, input_shape: tuple[int, ...] | None = None, metadata: dict | None = None
) -> nir.NIRGraph:
    """Build the ``nir.NIRGraph`` of a converted SNN.

    Args:
        snn: the GraphModule from :class:`converter.Converter` (or :func:`exporters.import_nir`),
            or any module of supported layers and :class:`simulator.IFNeuron` (traced here,
            :func:`simulator.graph.trace_snn`).
        T: the time steps to record in the graph metadata.
        input_shape: input shape without batch axis, e.g. ``(1, 28, 28)``; defaults to the one
            recorded at conversion (``snn.meta['ann2snn']['input_shape']``).
        metadata: extra graph metadata (``None`` values are dropped).

    Returns:
        A type-checked ``nir.NIRGraph``: nodes ``input``, one per layer (named by module path,
        e.g. ``network.0``, or by fx node name for functions), ``output``; IF nodes carry the
        metadata of :mod:`exporters.semantics`.

    Raises:
        ExportError: a node that cannot be written exactly, named with the reason (no NIR
            mapping; a constant summand, factor or concatenated tensor; ``alpha``; a
            subtraction, product or quotient; a summand counted twice; a torch.cat off the
            channel axis), more than one input or output, or an unknown input shape.
    """
    snn = trace_snn(snn)
    input_shape = input_shape or tuple(snn.meta.get(META_KEY, {}).get("input_shape", ()))
    if not input_shape:
        raise ExportError("unknown input shape: pass input_shape=(C, H, W)")
    _check_inputs(snn)
    device = next((p.device for p in snn.parameters()), torch.device("cpu"))
    reset_states(snn)
    with torch.no_grad():
        ShapeProp(snn).propagate(torch.zeros(1, *input_shape, device=device))
    reset_states(snn)
    modules = dict(snn.named_modules())
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    mapped: dict[fx.Node, list[str]] = {}
    for node in snn.graph.nodes:
        if node.op == "placeholder":
            if not mapped:  # the network input; a later placeholder has a default value: a constant
                nodes["input"] = _input_node(input_shape, model_encoding(snn))
                mapped[node] = ["input"]
        elif node.op == "output":
            sources = _output_sources(node, mapped)
            nodes["output"] = nir.Output(output_type={"output": np.array(_shape(node.args[0]))})
            edges.extend((src, "output") for src in sources)
        elif "tensor_meta" in node.meta and any(a in mapped for a in node.all_input_nodes):
            mapped[node] = _export_node(node, modules, mapped, nodes, edges)
        # else: a constant or a shape (x.size(0)); an exported node that uses it is refused or reads it as an argument
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_graph_metadata(snn, T, metadata))


def _input_node(input_shape: tuple[int, ...], encoding: str) -> nir.Input:
    """The graph's Input; its metadata says what enters there: ``encoding`` (the graph's
    ``input_encoding``) and ``events`` (true when the input is spikes: ``"rate"``, IF encoders
    of threshold 1 and V[0] = 1/2 driven by the values in [0, 1], or ``"poisson"``)."""
    meta = {"encoding": encoding, "events": encoding != "constant"}
    if encoding == "rate":
        meta["encoder"] = "IF, v_threshold 1, V[0] = 1/2, reset by subtraction, driven by the input in [0, 1]"
    return nir.Input(input_type={"input": np.array(input_shape)}, metadata=meta)


def _check_inputs(snn: fx.GraphModule) -> None:
    """Refuse a graph with more than one input without a default value (NIR here has one Input)."""
    required = [n.name for n in snn.graph.nodes if n.op == "placeholder" and not n.args]
    if len(required) > 1:
        raise ExportError(f"the SNN takes {len(required)} inputs {required}; a NIR graph is written with one Input")


def _output_sources(node: fx.Node, mapped: dict[fx.Node, list[str]]) -> list[str]:
    value = node.args[0]
    if not isinstance(value, fx.Node):
        raise ExportError(f"the SNN returns {type(value).__name__} {value!r}; a NIR graph has one Output tensor")
    if value not in mapped:
        raise ExportError(f"the SNN's output {value.name!r} is not computed from the network input")
    return mapped[value]


def _export_node(node: fx.Node, modules, mapped, nodes: dict, edges: list) -> list[str]:
    """Add ``node`` to the NIR graph; return the NIR names whose sum is its value.

    Raises:
        ExportError: a node that cannot be written exactly (named, with the reason): an add with a
            constant summand, ``alpha`` or a repeated summand; a subtraction, product or quotient;
            a constant tensor operand; a torch.cat off the channel axis; an op with no NIR mapping.
    """
    kind = arithmetic(node)
    if kind == "add":
        try:
            return _add_sources(node, mapped)
        except ExportError as exc:
            raise ExportError(f"cannot export {describe(node, modules)}: {exc}") from None
    if kind is not None:
        raise ExportError(f"cannot export {describe(node, modules)}: {_arithmetic_refusal(node, kind, mapped)}")
    if is_cat(node):
        return _export_cat(node, _cat_parts(node, mapped), mapped, nodes, edges)
    constant = next((a for a in node.all_input_nodes if a not in mapped and "tensor_meta" in a.meta), None)
    if constant is not None:
        raise ExportError(
            f"cannot export {describe(node, modules)}: its operand {_constant(constant, mapped)} is a tensor, "
            "and NIR has no constant source"
        )
    if is_identity(node):
        return _tensor_inputs(node, mapped)
    in_shape = _shape(next(a for a in node.all_input_nodes if a in mapped))
    name = str(node.target) if node.op == "call_module" else node.name
    nodes[name] = _map_node(node, modules, in_shape, _shape(node))
    edges.extend((s, name) for s in _tensor_inputs(node, mapped))
    return [name]


def reference_metadata(
    snn: nn.Module, T: int, input_shape: tuple[int, ...], inputs: torch.Tensor | None = None, samples: int = 2
) -> dict:
    """A self-check for the file: a few inputs and the exact outputs our simulator gives them.

    The outputs are simulated in float64 (on a copy of ``snn``): the parameters are float32,
    so their products with 0/1 spikes and float32 inputs are exact in float64 and the sums do
    not depend on summation order; any reader, with any batch or time chunking, can reproduce
    them bit for bit. (In float32 a linear layer run on 5 or on 10 steps at once already
    differs in the last bits.)

    Args:
        inputs: ``[B, *input_shape]`` float32; by default ``samples`` uniform [0, 1) inputs
            drawn with seed 0.

    Returns:
        ``{"reference_input": [B, ...] float32, "reference_output": [T, B, ...] float64}``
        (the per-step outputs of :func:`simulator.simulate`, with the model's input encoding).
    """
    if inputs is None:
        inputs = torch.rand(samples, *input_shape, generator=torch.Generator().manual_seed(0))
    inputs = inputs.detach().float().cpu()
    model = copy.deepcopy(snn).cpu().double()
    reset_states(model)
    result = simulate(model, inputs.double(), T, warn_silent=False)
    return {"reference_input": _np(inputs), "reference_output": result.outputs.numpy().astype(np.float64)}


def export_nir(
    snn: nn.Module,
    path: str | Path,
    T: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    metadata: dict | None = None,
    reference_inputs: torch.Tensor | None = None,
    profile: str = "exact",
) -> Path:
    """Write the SNN to ``path`` as a ``.nir`` (HDF5) file, atomically.

    See :func:`to_nir` for the arguments; the file passes ``nir.read`` with type checking.
    When ``T`` is given, the graph metadata also carries a self-check
    (:func:`reference_metadata`: ``reference_input`` ``[B, ...]`` and ``reference_output``
    ``[T, B, ...]``) that :func:`exporters.verify_file` reproduces. On any failure no file
    (and no partial file) is left at ``path``. ``profile`` (:mod:`exporters.profiles`):
    ``"exact"`` (default), ``"portable"`` (AvgPool2d as SumPool2d with folded weights, Scale
    folded where possible), for readers that lack some nodes, or ``"recurrent"``. With a profile
    other than ``"exact"`` the reference is computed from the graph as written, built by
    :func:`exporters.nir_torch.graph_to_snn` (what :func:`exporters.import_nir` builds from the
    file), since folded weights round differently in float32.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ExportError: a node that cannot be written exactly (see :func:`to_nir`).
            exporters.profiles.ProfileError: a node the profile cannot express. ValueError: an
            unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"export profile must be one of {PROFILES}, got {profile!r}")
    graph = apply_profile(to_nir(snn, T=T, input_shape=input_shape, metadata=metadata), profile)
    if T is not None:  # the reference comes from the graph as written (a portable file rounds differently)
        shape = tuple(int(v) for v in graph.nodes["input"].input_type["input"])
        model = trace_snn(snn) if profile == "exact" else graph_to_snn(graph)
        graph.metadata.update(reference_metadata(model, T, shape, reference_inputs))
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return Path(path)
