"""Per-layer fidelity of a converted SNN: each IF layer's rate against the ANN's activation.

For IF layer ``l`` standing for ReLU ``r`` with scale λ_l (``snn.meta['ann2snn']['lambdas']``:
one spike per step of that layer stands for an activation λ_l, in ANN units), every neuron
``i`` of every sample gives a pair

.. math::  a_i = \\mathrm{ReLU}_r(x)_i / \\lambda_l, \\qquad \\rho_i = N_i / T

with ``N_i`` the neuron's spike count over ``T`` steps (dimensionless, spikes per step). A
perfect conversion has ρ = clip(a, 0, 1) to within 1/T; ``a > 1`` cannot be reproduced (the
neuron saturates at one spike per step). This is the diagnostic of Rueckauer et al. 2017
(Front. Neurosci. 11:682, Fig. 3): ANN activation against SNN rate, layer by layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.fx as fx
from torch import nn

from converter.fold_bn import fold_batchnorm
from converter.record import capture_activations
from converter.replace import if_layer_name
from converter.trace import trace
from simulator import META_KEY, IFNeuron, simulate
from simulator.graph import input_dtype_problem, input_shape_problem, is_relu

#: Default ratio of a layer's MAE to the previous layer's above which its error "grows".
GROWTH = 2.0
#: A correlation this much below the previous layer's (1 for the exact input) flags a layer.
CORRELATION_DROP = 0.1
#: Correlations below this in every layer: the SNN's weights may not be the model's.
CORRELATION_FLOOR = 0.5
#: More than this fraction of activations above λ (a > 1) flags a layer: its λ is too small.
CLIPPED_LIMIT = 0.01
#: A correlation this much below the best earlier layer's, with no layer flagged: a warning that
#: the error builds up gradually over depth.
CORRELATION_DRIFT = 0.2


@dataclass
class LayerFidelity:
    """One IF layer's agreement with the ANN (all numbers over ``samples`` × ``neurons`` pairs).

    Attributes:
        layer: the IF layer's module path (the NIR node name).
        relu: the ANN's ReLU node name (torch.fx) it stands for.
        lam: λ, the activation scale of the layer (ANN units per spike per step); for a layer
            scaled per channel (``per_channel``), the largest channel's λ (each channel's
            activation is divided by its own λ_c).
        neurons: neurons per sample.
        correlation: Pearson correlation of a and ρ (None when either is constant).
        mae: mean |ρ − a| (dimensionless, in units of λ; a > 1 counts in full).
        saturated: fraction of pairs with ρ ≥ 1 (one spike at every step).
        silent: fraction of pairs with ρ = 0 while a ≥ 1/T (an activation a rate after T steps
            can show: below 1/T, ρ = 0 may be the right rounding, so it does not count).
        mean_activation, mean_rate: means of a and ρ.
        clipped: fraction of pairs with a > 1 (activations above λ, which no rate can reach).
        per_channel: the layer was scaled per channel (``Converter(channel_wise=True)``).
        points: up to ``points`` ``(a, ρ)`` pairs of the first batch (a fixed random choice),
            for a scatter plot.
    """

    layer: str
    relu: str
    lam: float
    neurons: int
    correlation: float | None
    mae: float
    saturated: float
    silent: float
    mean_activation: float
    mean_rate: float
    clipped: float = 0.0
    per_channel: bool = False
    points: list[tuple[float, float]] = field(default_factory=list, repr=False)

    def to_dict(self, points: bool = True) -> dict:
        """Plain values (for ``--json``); ``points=False`` leaves the scatter points out."""
        out = {k: v for k, v in vars(self).items() if k != "points"}
        if points:
            out["points"] = [list(p) for p in self.points]
        return out


@dataclass
class FidelityReport:
    """What :func:`layer_fidelity` returns.

    Attributes:
        T: time steps simulated. samples: inputs used.
        layers: one :class:`LayerFidelity` per IF layer, in the SNN's graph order.
        first_growing: the first layer whose error grows (see :func:`first_growing_layer`), or None.
        growth, margin: the MAE rule's parameters.
        reason: why ``first_growing`` was flagged (None when it is None).
        warnings: lines for the user, e.g. when every layer's correlation is below
            :data:`CORRELATION_FLOOR` (the weights may not match the model).
    """

    T: int
    samples: int
    layers: list[LayerFidelity]
    first_growing: str | None
    growth: float
    margin: float
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """A few lines for a notebook: T, samples, the first growing layer and its rule, then one
        line per layer (correlation, MAE, saturated, a > 1 and silent in %); the warnings.

        Example:
            >>> row = LayerFidelity("if_1", "_1", 2.0, 8, 0.99, 0.01, 0.0, 0.0, 0.2, 0.2)
            >>> FidelityReport(16, 10, [row], None, GROWTH, 1 / 32)
            FidelityReport: T=16, 10 samples, 1 IF layer, first growing layer: none
              if_1: corr 0.9900, MAE 0.0100, saturated 0.00 %, a > 1 0.00 %, silent 0.00 %
        """
        first = self.first_growing or "none"
        if self.reason:
            first += f" ({self.reason})"
        plural = "" if len(self.layers) == 1 else "s"
        lines = [
            f"FidelityReport: T={self.T}, {self.samples} samples, {len(self.layers)} IF layer{plural}, "
            f"first growing layer: {first}"
        ]
        for r in self.layers:
            corr = "-" if r.correlation is None else f"{r.correlation:.4f}"
            lines.append(
                f"  {r.layer}: corr {corr}, MAE {r.mae:.4f}, saturated {100 * r.saturated:.2f} %, "
                f"a > 1 {100 * r.clipped:.2f} %, silent {100 * r.silent:.2f} %"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self, points: bool = True) -> dict:
        """Plain values (for ``--json``)."""
        return {
            "T": self.T,
            "samples": self.samples,
            "first_growing": self.first_growing,
            "growth": self.growth,
            "margin": self.margin,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "layers": [layer.to_dict(points) for layer in self.layers],
        }


class _Sums:
    """Mergeable float64 sums of one layer's pairs (Pearson, MAE, saturation, silence)."""

    def __init__(self) -> None:
        self.n = self.sa = self.sr = self.saa = self.srr = self.sar = self.err = 0.0
        self.saturated = self.silent = self.clipped = 0.0

    def add(self, a: torch.Tensor, r: torch.Tensor, T: int) -> None:
        a, r = a.double().flatten(), r.double().flatten()
        self.n += a.numel()
        self.sa += float(a.sum())
        self.sr += float(r.sum())
        self.saa += float((a * a).sum())
        self.srr += float((r * r).sum())
        self.sar += float((a * r).sum())
        self.err += float((r - a).abs().sum())
        self.saturated += float((r >= 1).sum())
        self.silent += float(((r == 0) & (a >= 1 / T)).sum())  # a rate after T steps can show a >= 1/T
        self.clipped += float((a > 1).sum())

    def correlation(self) -> float | None:
        n = self.n
        cov = self.sar / n - (self.sa / n) * (self.sr / n)
        va = self.saa / n - (self.sa / n) ** 2
        vr = self.srr / n - (self.sr / n) ** 2
        if va <= 1e-15 or vr <= 1e-15:
            return None
        return max(-1.0, min(1.0, cov / math.sqrt(va * vr)))


def first_growing_layer(
    maes: list[float],
    names: list[str],
    T: int,
    growth: float = GROWTH,
    correlations: list[float | None] | None = None,
    clipped: list[float] | None = None,
) -> str | None:
    """The first layer (in graph order) whose error grows; None if no layer does.

    See :func:`growing_layer` for the three rules (MAE growth, correlation drop, activations
    above λ); this returns only the layer's name.

    Example:
        >>> first_growing_layer([0.004, 0.006, 0.2, 0.3], ["a", "b", "c", "d"], T=100)
        'c'
        >>> first_growing_layer([0.01, 0.01], ["a", "b"], T=8, correlations=[0.99, 0.7])
        'b'
    """
    return growing_layer(maes, names, T, growth, correlations, clipped)[0]


def growing_layer(
    maes: list[float],
    names: list[str],
    T: int,
    growth: float = GROWTH,
    correlations: list[float | None] | None = None,
    clipped: list[float] | None = None,
) -> tuple[str | None, str | None]:
    """``(layer, reason)``: the first layer ``l`` (in graph order) for which one of

    1. :math:`\\mathrm{MAE}_l > g \\cdot \\mathrm{MAE}_{l-1} + \\frac{1}{2T}` with ``g = growth``
       and ``MAE_0 = 0`` (the input is exact): more than ``g`` times the previous layer's error
       plus half a spike's worth of rate (1/(2T), the largest error of a rate coded exactly after
       T steps from V[0] = V_th/2);
    2. ``clipped_l`` > :data:`CLIPPED_LIMIT`: more than 1 % of the ANN's activations exceed λ
       (a > 1), which no rate can reproduce: the layer's λ is too small. Independent of T;
    3. the correlation drops clearly: :math:`r_l < r_{l-1} - 0.1` (:data:`CORRELATION_DROP`,
       ``r_0 = 1``) or :math:`r_l < 0.5 \\le r_{l-1}` (:data:`CORRELATION_FLOOR`); a layer with
       no correlation (constant a or ρ) is skipped;

    holds, with the rule that flagged it; ``(None, None)`` if no layer does. Rule 1 alone misses
    a mis-scaled layer at small T (its margin 1/(2T) exceeds every MAE at T = 8) and a network
    whose every layer is wrong (no layer grows relative to the previous one).

    Raises:
        ValueError: lists of different lengths.

    Example:
        >>> growing_layer([0.016, 0.064, 0.021], ["a", "b", "c"], T=8, clipped=[0.0, 0.04, 0.0])
        ('b', '4.00 % of its activations exceed λ (a > 1): its λ is too small')
    """
    n = len(names)
    correlations = list(correlations) if correlations is not None else [None] * n
    clipped = list(clipped) if clipped is not None else [0.0] * n
    if not len(maes) == len(correlations) == len(clipped) == n:
        raise ValueError(
            f"growing_layer needs one value per layer: {n} names, {len(maes)} MAEs, "
            f"{len(correlations)} correlations, {len(clipped)} clipped fractions"
        )
    previous_mae, previous_r = 0.0, 1.0
    for name, mae, r, clip in zip(names, maes, correlations, clipped, strict=True):
        if mae > growth * previous_mae + 0.5 / T:
            return name, f"MAE {mae:.4f} > {growth:g} × previous MAE {previous_mae:.4f} + 1/(2T) = {0.5 / T:.4f}"
        if clip > CLIPPED_LIMIT:
            return name, f"{100 * clip:.2f} % of its activations exceed λ (a > 1): its λ is too small"
        if r is not None:
            if r < previous_r - CORRELATION_DROP:
                return name, f"correlation {r:.4f} < previous {previous_r:.4f} − {CORRELATION_DROP:g}"
            if r < CORRELATION_FLOOR <= previous_r:
                return name, f"correlation {r:.4f} < {CORRELATION_FLOOR:g}"
            previous_r = r
        previous_mae = mae
    return None, None


def fidelity_warnings(layers: list[LayerFidelity], flagged: str | None = None) -> list[str]:
    """Lines for the user about the whole report: every layer's correlation below
    :data:`CORRELATION_FLOOR` (or undefined) means the SNN's weights may not be the model's; with
    no layer ``flagged`` by :func:`growing_layer`, a correlation more than
    :data:`CORRELATION_DRIFT` below an earlier layer's means the error builds up gradually, each
    layer adding a little (no single step crosses a rule)."""
    if layers and all(r.correlation is None or r.correlation < CORRELATION_FLOOR for r in layers):
        return [
            f"correlation < {CORRELATION_FLOOR:g} in every layer: the weights may not match the model "
            "(is the .nir file converted from these weights?)"
        ]
    if flagged is None:
        best: LayerFidelity | None = None
        for r in layers:
            if r.correlation is None:
                continue
            if best is not None and r.correlation < cast(float, best.correlation) - CORRELATION_DRIFT:
                return [
                    f"no single layer stands out, but the correlation falls gradually from {best.correlation:.3f} "
                    f"({best.layer}) to {r.correlation:.3f} ({r.layer}): the error builds up over depth "
                    "(more time steps, channel-wise scales or calibration reduce every layer's share)"
                ]
            if best is None or r.correlation > cast(float, best.correlation):
                best = r
    return []


def _graph_order(snn: nn.Module) -> list[str]:
    """IF layer paths in the SNN's graph order (registration order if it has no graph)."""
    paths = [name for name, m in snn.named_modules() if isinstance(m, IFNeuron)]
    graph = getattr(snn, "graph", None)
    if graph is None:
        return paths
    order = [str(n.target) for n in graph.nodes if n.op == "call_module" and str(n.target) in paths]
    return list(dict.fromkeys(order)) + [p for p in paths if p not in order]


def _relu_of(snn: nn.Module, ann_gm: fx.GraphModule, layers: list[str]) -> dict[str, str]:
    """IF layer path → ANN ReLU node name: the SNN's ``if_layers`` metadata, else the names
    :func:`~converter.replace.replace_activations` gives (``if_<ReLU path>``).

    Raises:
        ValueError: an IF layer with no ReLU of that name in the ANN (lists the ANN's).
    """
    modules = dict(ann_gm.named_modules())
    relus = {n.name: n for n in ann_gm.graph.nodes if is_relu(n, modules)}
    by_if_name = {if_layer_name(n): n.name for n in relus.values()}
    recorded = (getattr(snn, "meta", None) or {}).get(META_KEY, {}).get("if_layers") or {}
    mapping: dict[str, str] = {}
    for layer in layers:
        relu = recorded.get(layer, by_if_name.get(layer))
        if relu not in relus:
            known = ", ".join(f"{if_layer_name(n)} ({n.name})" for n in relus.values()) or "none"
            raise ValueError(
                f"IF layer {layer!r} of the SNN has no ReLU in the ANN "
                f"(looked for {relu or layer!r}); the ANN's ReLUs give IF layers {known}: "
                "is this the model the SNN was converted from?"
            )
        mapping[layer] = str(relu)
    return mapping


def _lambdas(snn: nn.Module, layers: list[str]) -> dict[str, torch.Tensor]:
    """IF layer path → λ: a 0-d tensor, or ``[C]`` for a layer scaled per channel
    (``meta['ann2snn']['channel_lambdas']``, also read from a ``.nir`` file).

    Raises:
        ValueError: a layer without λ, or one scaled per channel whose per-channel λ is not recorded.
    """
    info = (getattr(snn, "meta", None) or {}).get(META_KEY, {})
    lambdas, per_channel = info.get("lambdas") or {}, info.get("channel_lambdas") or {}
    channel_wise = set(info.get("channel_wise_layers") or [])
    out = {}
    for layer in layers:
        if layer in per_channel:
            out[layer] = torch.tensor([float(v) for v in per_channel[layer]], dtype=torch.float64)
            continue
        if layer in channel_wise:
            raise ValueError(
                f"IF layer {layer!r} was scaled per channel but its per-channel λ is not recorded "
                "(meta['ann2snn']['channel_lambdas']): convert it again with this version"
            )
        if layer not in lambdas:
            raise ValueError(
                f"IF layer {layer!r} has no λ in the SNN's metadata (meta['ann2snn']['lambdas']): convert with "
                "converter.Converter, or re-export the .nir file with this version (it writes 'lambdas')"
            )
        out[layer] = torch.tensor(float(lambdas[layer]), dtype=torch.float64)
    return out


def _normalised(activation: torch.Tensor, lam: torch.Tensor, layer: str) -> torch.Tensor:
    """``activation`` ``[B, C, ...]`` divided by λ (0-d, or ``[C]`` along the channel axis).

    Raises:
        ValueError: a per-channel λ whose length is not the activation's channel count.
    """
    if lam.dim() == 0:
        return activation / float(lam)
    if activation.dim() < 2 or activation.shape[1] != lam.numel():
        raise ValueError(
            f"IF layer {layer!r} has {lam.numel()} per-channel λ but its activation has shape "
            f"{list(activation.shape[1:])}: is this the model the SNN was converted from?"
        )
    unit = lam.to(activation.device, activation.dtype).view(-1, *([1] * (activation.dim() - 2)))
    return activation / unit


@torch.no_grad()
def layer_fidelity(
    ann: nn.Module,
    snn: nn.Module,
    x: torch.Tensor,
    T: int,
    batch_size: int = 100,
    growth: float = GROWTH,
    points: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> FidelityReport:
    """Compare each IF layer's rate after ``T`` steps with the ANN's activation / λ.

    Simulates ``snn`` on ``x`` (constant input, :func:`simulator.simulate`) and runs the ANN
    (traced, BatchNorm folded, eval mode) on the same inputs; pairs each IF layer with the ReLU
    it replaced (``snn.meta['ann2snn']['if_layers']``, else by name: ``if_<ReLU path>``) and
    divides its activation by the layer's λ (``snn.meta['ann2snn']['lambdas']``; for a layer
    scaled per channel, each channel's by its own λ_c, ``meta['ann2snn']['channel_lambdas']``;
    both also read from a ``.nir`` file's metadata by :func:`exporters.import_nir`).
    Rueckauer et al. 2017.

    Args:
        ann: the ANN the SNN was converted from.
        snn: the converted SNN (in memory, or imported from a ``.nir`` file).
        x: inputs ``[N, ...]`` (e.g. ``[N, 1, 28, 28]``).
        T: time steps (>= 1).
        batch_size: samples per simulation batch.
        growth: the factor ``g`` of :func:`growing_layer`'s MAE rule.
        points: ``(a, ρ)`` pairs kept per layer for a scatter plot (from the first batch).
        progress: called with the number of samples of each batch once it is done (e.g. a
            progress bar's ``update``).

    Returns:
        :class:`FidelityReport`, one :class:`LayerFidelity` per IF layer in graph order.

    Raises:
        ValueError: ``T < 1``, ``batch_size < 1``, empty ``x``, ``x`` that does not fit the
            SNN's first layer (expected and got shapes) or its parameters' dtype, an SNN without IF layers, an IF
            layer with no matching ReLU in ``ann`` or no λ (each named; a channel-wise layer
            without its per-channel λ), or an activation whose shape differs from its IF
            layer's (or from its number of per-channel λ).
    """
    if T < 1 or batch_size < 1:
        raise ValueError(f"T and batch_size must be >= 1, got T={T}, batch_size={batch_size}")
    if len(x) == 0:
        raise ValueError("layer_fidelity needs at least one input sample")
    problem = input_shape_problem(snn, x.shape) or input_dtype_problem(snn, x.dtype)
    if problem is not None:
        raise ValueError(f"layer_fidelity: the inputs x do not fit the SNN: {problem}")
    layers = _graph_order(snn)
    if not layers:
        raise ValueError("the SNN has no IF layers to diagnose")
    device = next((p.device for p in snn.parameters()), torch.device("cpu"))
    ann_gm = fold_batchnorm(trace(ann)).to(device)
    relu = _relu_of(snn, ann_gm, layers)
    lambdas = _lambdas(snn, layers)
    sums = {layer: _Sums() for layer in layers}
    kept: dict[str, list[tuple[float, float]]] = {}
    neurons: dict[str, int] = {}
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        activations = capture_activations(ann_gm, xb, set(relu.values()))
        counts = simulate(snn, xb, T, warn_silent=False).spike_counts
        for layer in layers:
            a, rate = _normalised(activations[relu[layer]], lambdas[layer], layer), counts[layer] / T
            if a.shape != rate.shape:
                raise ValueError(
                    f"IF layer {layer!r} has shape {list(rate.shape[1:])} but ReLU {relu[layer]!r} of the ANN "
                    f"gives {list(a.shape[1:])}: is this the model the SNN was converted from?"
                )
            sums[layer].add(a, rate, T)
            neurons[layer] = a[0].numel()
            if layer not in kept:
                kept[layer] = _sample_points(a, rate, points)
        if progress is not None:
            progress(len(xb))
    rows = [_row(layer, relu[layer], lambdas[layer], neurons[layer], sums[layer], kept[layer]) for layer in layers]
    first, reason = growing_layer(
        [r.mae for r in rows], layers, T, growth, [r.correlation for r in rows], [r.clipped for r in rows]
    )
    return FidelityReport(T, len(x), rows, first, growth, 0.5 / T, reason, fidelity_warnings(rows, first))


def _sample_points(a: torch.Tensor, rate: torch.Tensor, n: int) -> list[tuple[float, float]]:
    """Up to ``n`` pairs chosen at random (fixed seed) from one batch."""
    a, rate = a.flatten().double().cpu(), rate.flatten().double().cpu()
    index = torch.randperm(a.numel(), generator=torch.Generator().manual_seed(0))[:n]
    return list(zip(a[index].tolist(), rate[index].tolist(), strict=True))


def _row(layer: str, relu: str, lam: torch.Tensor, neurons: int, s: _Sums, points) -> LayerFidelity:
    return LayerFidelity(
        layer,
        relu,
        float(lam.max()),
        neurons,
        s.correlation(),
        s.err / s.n,
        s.saturated / s.n,
        s.silent / s.n,
        s.sa / s.n,
        s.sr / s.n,
        s.clipped / s.n,
        lam.dim() > 0,
        points,
    )
