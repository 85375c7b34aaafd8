"""Integer quantisation of a converted SNN: N-bit signed integer weights, integer biases,
thresholds and initial potentials, one factor per layer.

An IF layer's spikes do not change when its input weights ``W``, biases ``b``, threshold
``V_th`` and initial potential ``V[0]`` are all multiplied by one positive factor ``α``
(``V[t]`` is then ``α`` times the original at every step, and ``V >= V_th`` is scale-free). The
next layer receives spikes (0 or 1), so each layer's factor is independent. This pass picks
``α_l`` per IF layer so that ``α_l W_l`` fits ``weight_bits``-bit signed integers and rounds:

.. math::  W^q = \\operatorname{clamp}(\\operatorname{round}(\\alpha W), -q, q), \\quad
    b^q = \\operatorname{round}(\\alpha b), \\quad V_{th}^q = \\alpha V_{th} \\in \\mathbb{N}, \\quad
    V^q[0] = \\operatorname{round}(v_{init} V_{th}^q), \\qquad q = 2^{N-1} - 1

- **Pools.** An integer chip sums, it does not divide: every ``AvgPool2d`` becomes a sum pool
  (``nn.AvgPool2d(..., divisor_override=1)``, NIR's ``SumPool2d``) and its ``1/k²`` is folded
  into the weights it feeds (a pool of spikes: the next Conv/Linear's weights or the ``Scale``
  on a skip edge) or that feed it (a pool of currents: the Conv/Linear's weights and bias).
- **Joins.** All inputs of one IF layer share its factor: the weights of every Conv/Linear
  reaching it through adds, and every ``Scale`` on a skip edge (an identity skip without one
  gets ``Scale(1)``, which becomes the integer ``α``). The largest magnitude among them sets
  the range.
- **The analog first layer** gets integer weights too; its input stays float pixels (integer
  input needs spike input).
- **The membrane readout** (:class:`simulator.Integrator`) has no threshold: its factor only
  maps its input weights onto the integer range (argmax is scale-invariant).

**Rounding** (``rounding="search"``, the default): the factor is chosen so that the threshold
is an exact integer, ``α = k / V_th``, and ``k`` is searched (also beyond the no-clip range, up
to 1.25x) for the least squared weight and bias error ``Σ (W^q/α - W)²``; with ``v_init`` the
initial potential must be exact too (``k`` even for ``v_init = 0.5``). Then, given calibration
inputs, each layer's bias is corrected for the mean change of its input current on those
inputs (its inputs measured in the float SNN after the pool rewrite, over ``calibration_T``
steps; Nagel et al., ICCV 2019, "bias correction"), which also absorbs the bias rounding.
``rounding="plain"`` is the baseline: ``α = q / max|W|``, everything rounded to nearest.

The result keeps float tensors that hold integers (exact in float32 below 2^24), so the usual
simulator runs it; its IF layers are ``integer`` (the membrane is held as float64 integers,
exact) and saturate to ``state_bits`` when given (:class:`simulator.IFNeuron`);
``snn.meta['ann2snn']['quantization']`` records the bit widths, the rounding
and, per layer (IF or readout module path): the factor, the integer threshold and ``V[0]``, the
largest integer weight and bias, the bits the bias and threshold need.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from converter.calibrate import _Trains
from converter.normalize import scale_edge
from converter.record import calibration_batches, first_samples
from simulator import META_KEY, IFNeuron, Integrator, Scale, model_encoding, simulate
from simulator.graph import WEIGHTED, is_add, is_identity, is_reshape

log = logging.getLogger(__name__)

BIASES = ("keep", "none", "leak")
ROUNDINGS = ("search", "plain")
#: Widest weights: 16 bits (the widest of the chips in view; int16 products fit float32 sums).
MAX_WEIGHT_BITS = 16
MAX_STATE_BITS = 32
#: Candidate integer thresholds tried per layer by the search.
SEARCH_CANDIDATES = 256
#: The search also tries factors up to this multiple of the no-clipping one (clipping the largest weights).
SEARCH_CLIP = 1.25


class QuantizationError(ValueError):
    """A network or setting the quantisation cannot honour; the message names the layer."""


def check_bits(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def bits_signed(value: float) -> int:
    """The width of the signed integer type that holds ``±value`` (an integer): 5 for 15, 6 for 16."""
    return int(abs(value)).bit_length() + 1


@dataclass
class _Layer:
    """One quantisation unit: a target (IF layer, integrator, or the output) and its inputs."""

    target: fx.Node
    weighted: list[fx.Node] = field(default_factory=list)
    scales: list[fx.Node] = field(default_factory=list)


# -- graph walks ---------------------------------------------------------------------------


def _is_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(_layer(node, modules), (nn.AvgPool1d, nn.AvgPool2d))
    return node.op == "call_function" and node.target in (F.avg_pool1d, F.avg_pool2d)


def _module(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    return modules.get(str(node.target)) if node.op == "call_module" else None


def _layer(node: fx.Node, modules: dict[str, nn.Module]) -> Any:
    """The module a ``call_module`` node calls (``Any``: a Conv/Linear, Scale or IF layer whose
    tensors the passes read and scale in place)."""
    return modules[str(node.target)]


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """``weighted``, ``scale``, ``pool``, ``pass`` (reshape, identity), ``join``, ``target``
    (IF layer, integrator, output), ``source`` (input) or ``other``."""
    module = _module(node, modules)
    if isinstance(module, WEIGHTED):
        return "weighted"
    if isinstance(module, Scale):
        return "scale"
    if isinstance(module, (IFNeuron, Integrator)) or node.op == "output":
        return "target"
    if node.op == "placeholder":
        return "source"
    if _is_pool(node, modules):
        return "pool"
    if is_reshape(node, modules) or is_identity(node):
        return "pass"
    if is_add(node):
        return "join"
    return "other"


def _target_of(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node:
    """The IF layer, integrator or output that ``node``'s output reaches through pools,
    reshapes and adds.

    Raises:
        QuantizationError: it reaches another weighted layer first, or branches.
    """
    start = node
    while node.op != "output":
        users = list(node.users)
        if len(users) != 1:
            raise QuantizationError(f"layer {start.name!r} feeds {len(users)} consumers; expected one")
        node = users[0]
        kind = _kind(node, modules)
        if kind == "target":
            return node
        if kind not in ("pool", "pass", "join"):
            raise QuantizationError(
                f"layer {start.name!r} reaches {node.name!r} before any IF layer: "
                "two linear layers without a neuron between them cannot share one integer factor"
            )
    return node


def _check_pool(node: fx.Node, modules: dict[str, nn.Module]) -> float:
    """The divisor of a 2-d average pool (``k_h k_w``, or its ``divisor_override``).

    Raises:
        QuantizationError: a 1-d pool, ``ceil_mode``, or padding without ``count_include_pad``
            (the divisor then varies at the borders).
    """
    module = _module(node, modules)
    if module is None:
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        values: dict[str, Any] = dict(zip(names, (None, None, 0, False, True, None), strict=True))
        values.update(zip(names, node.args[1:], strict=False))
        values.update(node.kwargs)
        is_2d = node.target is F.avg_pool2d
    else:
        values = {k: getattr(module, k) for k in ("kernel_size", "padding", "ceil_mode", "count_include_pad")}
        values["divisor_override"] = getattr(module, "divisor_override", None)
        is_2d = isinstance(module, nn.AvgPool2d)
    if not is_2d:
        raise QuantizationError(f"pool {node.name!r}: only 2-d average pools can become sum pools")
    kernel = values["kernel_size"]
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    padding = values["padding"]
    padded = any(padding) if isinstance(padding, (tuple, list)) else bool(padding)
    if values["ceil_mode"] or (padded and not values["count_include_pad"]):
        raise QuantizationError(f"pool {node.name!r}: ceil_mode or count_include_pad=False has no sum-pool equivalent")
    return float(values["divisor_override"] or kh * kw)


def _fold_forward(gm: fx.GraphModule, pool: fx.Node, factor: float, modules: dict[str, nn.Module]) -> None:
    """Multiply what ``pool``'s output feeds by ``factor``: the weights of each Conv/Linear
    or the factor of each Scale reached through reshapes and further pools; a Scale is
    inserted on any other edge (into an add, an IF layer or the output)."""
    stack = [pool]
    while stack:
        node = stack.pop()
        for user in list(node.users):
            kind = _kind(user, modules)
            if kind == "weighted":
                _layer(user, modules).weight.data.mul_(factor)
            elif kind == "scale":
                _layer(user, modules).scale.mul_(factor)
            elif kind in ("pass", "pool"):
                stack.append(user)
            else:
                scale_edge(gm, user, node, factor, prefix="qscale")


def _fold_backward(pool: fx.Node, factor: float, modules: dict[str, nn.Module]) -> bool:
    """Multiply the weights and bias of the one Conv/Linear feeding ``pool`` (through reshapes)
    by ``factor``; False if the pool's input is not such a layer's alone."""
    node = pool.args[0]
    while isinstance(node, fx.Node) and _kind(node, modules) == "pass" and len(node.users) == 1:
        node = node.args[0]
    if not isinstance(node, fx.Node) or _kind(node, modules) != "weighted" or len(node.users) != 1:
        return False
    layer = _layer(node, modules)
    layer.weight.data.mul_(factor)
    if layer.bias is not None:
        layer.bias.data.mul_(factor)
    return True


def _carries_spikes(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` (a pool's input) is spikes or the network input, through reshapes and pools."""
    while _kind(node, modules) in ("pass", "pool"):
        node = cast(fx.Node, node.args[0])
    return node.op == "placeholder" or isinstance(_module(node, modules), (IFNeuron, Integrator))


def sum_pools(gm: fx.GraphModule) -> list[str]:
    """Turn every 2-d average pool of ``gm`` into a sum pool, in place, folding its divisor into
    the neighbouring weights (see the module docstring); returns the pools' node names.

    Raises:
        QuantizationError: a pool that cannot become a sum pool, or whose divisor has nowhere to go.
    """
    modules = dict(gm.named_modules())
    changed = []
    for node in list(gm.graph.nodes):
        if not _is_pool(node, modules):
            continue
        divisor = _check_pool(node, modules)
        if divisor == 1.0:
            continue
        if _carries_spikes(node.args[0], modules):
            _fold_forward(gm, node, 1.0 / divisor, modules)
        elif not _fold_backward(node, 1.0 / divisor, modules):
            raise QuantizationError(f"pool {node.name!r}: its input is neither spikes nor one Conv/Linear's output")
        if node.op == "call_module":
            old = _layer(node, modules)
            new = nn.AvgPool2d(old.kernel_size, old.stride, old.padding, divisor_override=1)
            parent, _, leaf = str(node.target).rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, leaf, new)
            modules[str(node.target)] = new
        else:
            node.kwargs = {**node.kwargs, "divisor_override": 1}
        changed.append(node.name)
    return changed


def _bare_edges(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> None:
    """Give every input path of an IF layer or integrator that has no Conv/Linear or Scale on it
    (an identity skip) a ``Scale(1)``, so that it too carries the layer's integer factor."""
    for node in list(gm.graph.nodes):
        if _kind(node, modules) != "target" or node.op == "output":
            continue
        stack = [(node, a) for a in node.all_input_nodes]
        while stack:
            consumer, source = stack.pop()
            kind = _kind(source, modules)
            if kind in ("pool", "pass", "join"):
                stack.extend((source, a) for a in source.all_input_nodes)
            elif kind in ("source", "target"):
                scale_edge(gm, consumer, source, 1.0, prefix="qscale")
    modules.update(gm.named_modules())


def layers_of(gm: fx.GraphModule) -> dict[str, _Layer]:
    """The quantisation units of ``gm``: per IF layer or integrator (by module path; ``output``
    for a network ending in a Conv/Linear), the Conv/Linear and Scale nodes feeding it."""
    modules = dict(gm.named_modules())
    units: dict[str, _Layer] = {}
    for node in gm.graph.nodes:
        kind = _kind(node, modules)
        if kind not in ("weighted", "scale"):
            continue
        target = _target_of(node, modules)
        key = "output" if target.op == "output" else str(target.target)
        unit = units.setdefault(key, _Layer(target))
        (unit.weighted if kind == "weighted" else unit.scales).append(node)
    return units


# -- the factor ----------------------------------------------------------------------------


def _tensors(unit: _Layer, modules: dict[str, nn.Module]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Float64 copies of the unit's weights (and Scale factors), and of its biases."""
    weights = [_layer(n, modules).weight.detach().double().flatten() for n in unit.weighted]
    weights += [_layer(n, modules).scale.detach().double().flatten() for n in unit.scales]
    biases = [_layer(n, modules).bias.detach().double() for n in unit.weighted if _layer(n, modules).bias is not None]
    return weights, biases


def _error(alpha: float, weights: torch.Tensor, biases: torch.Tensor, qmax: int) -> float:
    """Squared error of the rounded weights and biases in float units, ``Σ (x^q/α - x)²``."""
    wq = torch.round(weights * alpha).clamp(-qmax, qmax) / alpha
    bq = torch.round(biases * alpha) / alpha
    return float(((wq - weights) ** 2).sum() + ((bq - biases) ** 2).sum())


def _exact_v0(k: int, v_init: float) -> bool:
    """Whether ``v_init · k`` is an integer that ``IFNeuron`` reproduces exactly from a fraction."""
    if v_init == 0:
        return True
    v0 = round(v_init * k)
    fraction = v0 / k
    exact32 = float(torch.tensor(fraction, dtype=torch.float32) * torch.tensor(float(k))) == v0
    return abs(v_init * k - v0) < 1e-9 and exact32


def _bias_cap(biases: torch.Tensor, bias_qmax: int | None) -> float:
    """The largest factor at which every bias rounds into ``[-bias_qmax, bias_qmax]`` (``inf``:
    no limit or no non-zero bias): ``α |b| < bias_qmax + 1/2``."""
    bmax = float(biases.abs().max()) if biases.numel() else 0.0
    if bias_qmax is None or bmax == 0:
        return math.inf
    return math.nextafter((bias_qmax + 0.5) / bmax, 0.0)


def _search_threshold(
    name: str,
    theta: float,
    v_init: float,
    weights: torch.Tensor,
    biases: torch.Tensor,
    qmax: int,
    bias_qmax: int | None = None,
) -> int:
    """The integer threshold ``k`` (factor ``k / V_th``) with the least rounding error; with
    ``bias_qmax``, ``k`` is at most the one whose factor keeps every bias within it."""
    wmax = float(weights.abs().max())
    k0 = theta * (qmax + 0.5) / wmax  # the largest k without clipping (before rounding)
    low, high = max(1, math.ceil(k0 / 2)), max(1, math.floor(k0 * SEARCH_CLIP))
    cap = _bias_cap(biases, bias_qmax)
    if cap < math.inf:
        k_bias = math.floor(theta * cap)
        if k_bias < 1:
            raise QuantizationError(
                f"layer {name!r}: its biases (largest {float(biases.abs().max()):.3g} x V_th {theta:.3g}) need a "
                f"threshold below 1 to fit {bits_signed(bias_qmax or 0)}-bit biases"
            )
        high = min(high, k_bias)
        low = min(low, max(1, math.ceil(high / 2)))
    span: Iterable[int] = range(low, high + 1)
    if high + 1 - low > SEARCH_CANDIDATES:
        span = sorted({round(v) for v in torch.linspace(low, high, SEARCH_CANDIDATES).tolist()})
    candidates = [k for k in span if _exact_v0(k, v_init)]
    if not candidates:
        raise QuantizationError(f"layer {name!r}: no integer threshold near {k0:.3g} makes V[0] = {v_init}·V_th exact")
    return min(candidates, key=lambda k: (_error(k / theta, weights, biases, qmax), -k))


def _search_factor(weights: torch.Tensor, biases: torch.Tensor, qmax: int, bias_qmax: int | None = None) -> float:
    """The factor with the least rounding error for a layer without threshold (the readout),
    at most :func:`_bias_cap`."""
    base = min(qmax / float(weights.abs().max()), _bias_cap(biases, bias_qmax))
    grid = torch.linspace(0.5, SEARCH_CLIP if base == qmax / float(weights.abs().max()) else 1.0, SEARCH_CANDIDATES)
    return min((base * g for g in grid.tolist()), key=lambda a: (_error(a, weights, biases, qmax), -a))


def _threshold(name: str, layer: IFNeuron) -> float:
    theta = layer.v_threshold
    if theta.numel() > 1 and not bool((theta == theta.reshape(-1)[0]).all()):
        raise QuantizationError(
            f"IF layer {name!r} has one threshold per neuron or channel; integer hardware takes one per layer "
            "(convert with per-channel scales in the weights, the converter's default)"
        )
    return float(theta.reshape(-1)[0])


# -- bias correction -------------------------------------------------------------------------


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``[B, C, ...]`` over the batch and every axis after the channel: ``[C]`` float64."""
    t = t.double()
    return t.mean(0) if t.dim() == 2 else t.transpose(0, 1).flatten(1).mean(1)


def _prefix(gm: fx.GraphModule, last: fx.Node) -> fx.GraphModule:
    """The part of ``gm`` that ``last`` depends on, with ``last`` as its output (modules shared,
    not copied). Its IF layers up to ``last`` spike as in ``gm``: nothing after ``last`` feeds
    them."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        env[node] = graph.node_copy(node, lambda a: env[a])
        if node is last:
            break
    graph.output(env[last])
    prefix = fx.GraphModule(gm, graph)
    prefix.graph.eliminate_dead_code()
    prefix.recompile()
    prefix.meta = copy.deepcopy(gm.meta)
    return prefix


@torch.no_grad()
def _layer_means(gm: fx.GraphModule, x: torch.Tensor, T: int) -> dict[str, torch.Tensor | None]:
    """Per IF layer its mean spikes per step and channel, and for the readout (``output``) the
    mean output current per step and channel, over ``x`` and ``T`` steps."""
    result = simulate(gm, x, T, warn_silent=False)
    means: dict[str, torch.Tensor | None] = {n: _per_channel(c) / T for n, c in result.spike_counts.items()}
    means["output"] = _per_channel(result.outputs[-1]) / T if result.readout == "membrane" else None
    return means


@torch.no_grad()
def _correct_biases(
    snn: fx.GraphModule,
    gm: fx.GraphModule,
    units: dict[str, _Layer],
    alphas: dict[str, float],
    x,
    T: int,
    bias_qmax: int | None = None,
) -> list[str]:
    """Correct the integer biases of ``gm``, layer by layer in graph order, so that each IF
    layer's mean rate per channel on the calibration inputs ``x`` matches the float ``snn``'s
    (``Δb = V_th^q (r_float - r_quantised)``, earlier layers already corrected; for the membrane
    readout the mean output current, ``Δb = α I_float - I_quantised``), each corrected bias
    clamped to ``±bias_qmax`` when given; returns the corrected layers (Conv/Linear module paths)."""
    reference = _layer_means(snn, x, T)
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    # an IF layer's rates depend only on the layers before it, which are final once corrected:
    # their spike trains are kept and each layer is run from them (the calibration's _Trains;
    # for Poisson input, whose draws depend on the batch, the part up to the layer is simulated)
    trains = _Trains(gm, x, T) if model_encoding(gm) != "poisson" else None
    corrected = []
    for key, unit in sorted(units.items(), key=lambda kv: order[kv[1].target]):
        layer: Any = next(
            (
                gm.get_submodule(str(n.target))
                for n in unit.weighted
                if gm.get_submodule(str(n.target)).bias is not None
            ),
            None,
        )
        target = gm.get_submodule(str(unit.target.target)) if unit.target.op == "call_module" else None
        if layer is None or (target is not None and not isinstance(target, (IFNeuron, Integrator))):
            continue
        ref_key = key if isinstance(target, IFNeuron) else "output"
        if reference.get(ref_key) is None:
            continue
        wanted = cast(torch.Tensor, reference[ref_key])
        if not isinstance(target, IFNeuron):  # the readout's current: the whole network
            now = _layer_means(gm, x, T)[ref_key]
        elif trains is not None:
            now = _per_channel(trains.counts(unit.target)) / T
        else:
            now = _layer_means(_prefix(gm, unit.target), x, T)[ref_key]
        if now is None:
            continue
        if isinstance(target, IFNeuron):
            shift = float(target.v_threshold.reshape(-1)[0]) * (wanted - now)
        else:
            shift = alphas[key] * wanted - now
        if shift.shape != layer.bias.shape:
            continue
        fixed = torch.round(layer.bias.detach().double() + shift)
        if bias_qmax is not None:
            fixed = fixed.clamp(-bias_qmax, bias_qmax)
        layer.bias.data.copy_(fixed.to(layer.bias.dtype))
        corrected.append(key)
    return corrected


# -- the pass --------------------------------------------------------------------------------


def _apply(gm: fx.GraphModule, unit: _Layer, alpha: float, qmax: int, bias: str) -> dict:
    """Round the unit's weights, biases and Scale factors at factor ``alpha``, in place."""
    modules = dict(gm.named_modules())
    wmax, bmax = 0.0, 0.0
    for node in unit.weighted:
        layer = _layer(node, modules)
        layer.weight.data.copy_(torch.round(layer.weight.detach().double() * alpha).clamp(-qmax, qmax))
        wmax = max(wmax, float(layer.weight.detach().abs().max()))
        if layer.bias is not None and bias == "none":
            layer.bias = None
        elif layer.bias is not None:
            layer.bias.data.copy_(torch.round(layer.bias.detach().double() * alpha))
            bmax = max(bmax, float(layer.bias.detach().abs().max()))
    for node in unit.scales:
        layer = _layer(node, modules)
        layer.scale.copy_(torch.round(layer.scale.double() * alpha).clamp(-qmax, qmax))
        wmax = max(wmax, float(layer.scale.detach().abs().max()))
    return {"factor": alpha, "weight_max": wmax, "bias_max": bmax}


def _quantize_unit(
    key: str, unit: _Layer, modules: dict[str, nn.Module], qmax: int, rounding: str, bias_qmax: int | None = None
) -> tuple[float, int | None, float]:
    """``(α, integer threshold or None, v_init)`` of one unit (``bias_qmax``: the biases' limit)."""
    weights, biases = _tensors(unit, modules)
    w = torch.cat(weights) if weights else torch.zeros(1, dtype=torch.float64)
    b = torch.cat(biases) if biases else torch.zeros(0, dtype=torch.float64)
    if float(w.abs().max()) == 0:
        raise QuantizationError(f"layer {key!r}: all its input weights are zero")
    layer = _module(unit.target, modules)
    if not isinstance(layer, IFNeuron):
        plain = min(qmax / float(w.abs().max()), _bias_cap(b, bias_qmax))
        return (plain if rounding == "plain" else _search_factor(w, b, qmax, bias_qmax)), None, 0.0
    theta = _threshold(key, layer)
    if rounding == "plain":
        alpha = min(qmax / float(w.abs().max()), _bias_cap(b, bias_qmax))
        k = max(1, round(alpha * theta))
        v0 = round(layer.v_init * k)
        return alpha, k, v0 / k
    k = _search_threshold(key, theta, layer.v_init, w, b, qmax, bias_qmax)
    return k / theta, k, round(layer.v_init * k) / k


def quantize(
    snn: fx.GraphModule,
    weight_bits: int,
    state_bits: int | None = None,
    bias: str = "keep",
    calibration: torch.Tensor | Iterable | None = None,
    calibration_T: int = 16,
    rounding: str = "search",
    calibration_samples: int = 500,
    bias_bits: int | None = None,
) -> fx.GraphModule:
    """A copy of the converted ``snn`` with integer weights, biases, thresholds and ``V[0]``.

    Args:
        snn: a converted SNN (:class:`converter.Converter`), a GraphModule of Conv/Linear,
            AvgPool, Flatten and Scale modules and :class:`simulator.IFNeuron` /
            :class:`simulator.Integrator` layers.
        weight_bits: N, the signed weight width, 2 ≤ N ≤ 16: weights in ``[-(2^(N-1)-1), 2^(N-1)-1]``.
        state_bits: M, the membrane width (2 ≤ M ≤ 32); every integer threshold must fit
            ``2^(M-1) - 1``, and every IF layer saturates its potential to
            ``[-2^(M-1), 2^(M-1) - 1]`` after each step's integration (``IFNeuron.state_bits``).
            ``None``: no limit, no saturation.
        bias: ``"keep"`` (integer biases, added every step), ``"none"`` (biases removed, for
            chips that cannot add one every step) or ``"leak"`` (as ``"keep"``, for a chip that
            adds the bias once per clock tick as a leak, Speck's: the record says so, and
            :mod:`exporters.targets.speck2f` accepts biases only then).
        bias_bits: B, the signed bias width (2 ≤ B ≤ 32), with ``"keep"`` or ``"leak"``: every
            layer's factor is at most the one that rounds its largest bias into
            ``±(2^(B-1) - 1)`` (the weights then use fewer than N bits where a bias is large;
            Sinabs' ``discretize_conv_spike_`` likewise scales weights and biases by one
            factor), and the bias correction clamps to that range. ``None``: no limit.
        calibration: inputs ``[B, ...]`` (or batches of them, or ``(x, y)`` batches) for the bias
            correction; ``None``: none.
        calibration_T: time steps simulated to measure each layer's mean rate.
        rounding: ``"search"`` (default: exact integer thresholds, least-error factor) or
            ``"plain"`` (``α = q / max|W|``, round to nearest).
        calibration_samples: the most calibration inputs used (the first ones).

    Returns:
        The quantised SNN (float tensors holding integers), with
        ``meta['ann2snn']['quantization']``.

    Raises:
        ValueError: a bad bit width, ``bias`` or ``rounding``; ``bias_bits`` with ``bias="none"``.
        QuantizationError: a layer that cannot be quantised, or an integer threshold wider than
            ``state_bits`` (naming the layer and the width it needs).

    Example:
        >>> from simulator.graph import trace_snn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(2, 2), IFNeuron(1.0, v_init=0.5), nn.Linear(2, 2), Integrator())
        >>> q = quantize(trace_snn(net), weight_bits=4)
        >>> q.get_submodule("0").weight.abs().max().item() <= 7  # 4-bit weights
        True
        >>> q.get_submodule("1").v_threshold.item() % 2, q.get_submodule("1").v_init  # V_th even, V[0] = V_th/2
        (0.0, 0.5)
    """
    weight_bits = check_bits("weight_bits", weight_bits, 2, MAX_WEIGHT_BITS)
    if state_bits is not None:
        state_bits = check_bits("state_bits", state_bits, 2, MAX_STATE_BITS)
    if bias not in BIASES:
        raise ValueError(f"bias must be one of {BIASES}, got {bias!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    bias_qmax = None
    if bias_bits is not None:
        if bias == "none":
            raise ValueError(f"bias_bits={bias_bits} limits kept biases; bias='none' removes them")
        bias_qmax = 2 ** (check_bits("bias_bits", bias_bits, 2, MAX_STATE_BITS) - 1) - 1
    qmax = 2 ** (weight_bits - 1) - 1
    gm = copy.deepcopy(snn)
    pools = sum_pools(gm)
    modules = dict(gm.named_modules())
    _bare_edges(gm, modules)
    gm.graph.lint()
    gm.recompile()
    units = layers_of(gm)
    modules = dict(gm.named_modules())
    layers: dict[str, dict] = {}
    alphas: dict[str, float] = {}
    for key, unit in units.items():
        alpha, k, v_init = _quantize_unit(key, unit, modules, qmax, rounding, bias_qmax)
        if k is not None and state_bits is not None and k > 2 ** (state_bits - 1) - 1:
            raise QuantizationError(
                f"IF layer {key!r}: its integer threshold {k} needs {bits_signed(k)} state bits, "
                f"state_bits={state_bits}; use more state bits or fewer weight bits"
            )
        alphas[key] = alpha
        layers[key] = _apply(gm, unit, alpha, qmax, bias)
        if k is not None:
            neuron = modules[unit.target.target]
            neuron.v_threshold.fill_(float(k))
            neuron.v_init = v_init
            neuron.integer, neuron.state_bits = True, state_bits
            layers[key].update({"threshold": k, "v_init": round(v_init * k), "threshold_bits": bits_signed(k)})
    corrected = []
    if calibration is not None and bias != "none":
        x = _calibration_tensor(calibration, calibration_samples)
        corrected = _correct_biases(snn, gm, units, alphas, x, calibration_T, bias_qmax)
        for key, unit in units.items():
            b: list[Any] = [gm.get_submodule(str(n.target)).bias for n in unit.weighted]
            layers[key]["bias_max"] = max((float(t.detach().abs().max()) for t in b if t is not None), default=0.0)
    for info in layers.values():
        info["bias_bits"] = bits_signed(info["bias_max"]) if info["bias_max"] else 0
    gm.graph.lint()
    gm.recompile()
    gm.meta.setdefault(META_KEY, {})["quantization"] = {
        "weight_bits": weight_bits,
        "state_bits": state_bits,
        "bias": bias,
        "bias_bits": bias_bits,
        "rounding": rounding,
        "bias_corrected_layers": corrected,
        "sum_pools": pools,
        "layers": layers,
    }
    log.info("quantised to %d-bit weights (%s rounding), %d layers", weight_bits, rounding, len(layers))
    return gm


def _calibration_tensor(calibration, samples: int) -> torch.Tensor:
    """The first ``samples`` calibration inputs as one ``[B, ...]`` tensor (any form that
    :func:`converter.record.calibration_batches` takes)."""
    return first_samples(calibration_batches(calibration), samples)
