"""The ANN → SNN converter: trace, fold BatchNorm, record, normalise, replace ReLUs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import torch.fx as fx
from torch import nn

from converter.fold_bn import fold_batchnorm
from converter.modes import Mode, parse_mode
from converter.normalize import normalize, scales_from_stats
from converter.record import record_activations
from converter.replace import replace_activations
from converter.trace import describe, relu_cap, trace
from simulator import META_KEY
from simulator.neuron import RESETS, SPIKE_RULES, check_choice

log = logging.getLogger(__name__)


class Converter:
    """Convert a trained ReLU network into an SNN of integrate-and-fire neurons.

    ``snn = Converter(mode='max', dataloader=loader)(ann)``

    Steps (each a pass returning a new ``torch.fx.GraphModule``): trace with torch.fx, fold
    BatchNorm into the preceding Conv/Linear, record each ReLU's activations on the
    calibration data (eval mode, no grad), choose each layer's scale λ by ``mode``, scale the
    weights so every IF threshold is 1 (:mod:`converter.normalize`), replace every ReLU by an
    :class:`simulator.IFNeuron` with reset by subtraction. AvgPool, Flatten and reshapes stay
    as they are (linear); Dropout and Identity are removed; a trailing Softmax is dropped with
    a warning. Residual adds and concats are reconciled to one scale (explicit
    :class:`simulator.Scale` nodes on the edges that need them). ReLU6 and clamp(0, c) become IF
    layers with λ ≤ c. Rueckauer et al. 2017 (Front. Neurosci. 11:682); Diehl et al. 2015
    (IJCNN) for ``'max'``.

    Args:
        mode: ``'max'``, a percentile string such as ``'99.9%'``, or a float in (0, 1] (or
            ``'1/2'``): that fraction of the max.
        dataloader: calibration data, yielding ``[B, ...]`` tensors or ``(inputs, labels)``.
        reset: ``"subtract"`` (default) or ``"zero"``.
        spike_rule: ``">="`` (default) or ``">"``.
        v_init: initial membrane potential, a fraction of V_th (default 0).
        progress: called with each calibration batch's size (e.g. ``tqdm.update``).

    The returned SNN is a ``GraphModule`` taking ``[steps * B, ...]`` inputs (run it with
    :func:`simulator.simulate`); ``snn.meta['ann2snn']`` holds the mode, λ per layer, the
    output scale (rate × output_scale = ANN output), the input shape and the timings.

    Raises:
        ValueError: an unparseable mode, a bad reset/spike rule, or no dataloader (at
            construction, before any work); a layer that never fired on the calibration data.
        converter.trace.UnsupportedLayerError: a layer that cannot be converted, naming its path
            and type (the ANN is left untouched and no partial SNN is returned).
        converter.trace.NotTraceableError: torch.fx cannot trace the forward.
    """

    def __init__(
        self,
        mode: str | float = "max",
        dataloader: Iterable | None = None,
        reset: str = "subtract",
        spike_rule: str = ">=",
        v_init: float = 0.0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.mode: Mode = parse_mode(mode)
        if dataloader is None:
            raise ValueError(f"mode {self.mode.text!r} is data-driven: pass a calibration dataloader")
        self.dataloader = dataloader
        self.neuron = {
            "reset": check_choice("reset", reset, RESETS),
            "spike_rule": check_choice("spike_rule", spike_rule, SPIKE_RULES),
            "v_init": float(v_init),
        }
        self.progress = progress

    def __call__(self, ann: nn.Module) -> fx.GraphModule:
        start = time.perf_counter()
        gm = fold_batchnorm(trace(ann))
        stats, input_shape, samples = record_activations(gm, self.dataloader, self.mode.needs_histogram, self.progress)
        modules = dict(gm.named_modules())
        labels = {n.name: describe(n, modules) for n in gm.graph.nodes if n.name in stats}
        lambdas = cap_scales(scales_from_stats(stats, self.mode, labels), gm)
        gm, thresholds, out_scale = normalize(gm, lambdas)
        snn = replace_activations(gm, thresholds, **self.neuron)
        snn.meta[META_KEY] = {
            "mode": self.mode.text,
            "lambdas": lambdas,
            "output_scale": out_scale,
            "input_shape": list(input_shape),
            "calibration_samples": samples,
            "conversion_seconds": time.perf_counter() - start,
            **self.neuron,
        }
        log.info("converted %s with mode %s in %.2f s", type(ann).__name__, self.mode.text, time.perf_counter() - start)
        return snn


def cap_scales(lambdas: dict[str, float], gm: fx.GraphModule) -> dict[str, float]:
    """λ ≤ c for a ReLU capped at c (ReLU6, clamp(0, c)): the IF neuron saturates at one spike
    per step, i.e. at λ, which then reproduces the cap (recorded activations never exceed c, so
    this only guards against a mode that would pick λ above it)."""
    modules = dict(gm.named_modules())
    caps = {n.name: relu_cap(n, modules) for n in gm.graph.nodes if n.name in lambdas}
    return {name: min(lam, caps[name]) for name, lam in lambdas.items()}


def convert(ann: nn.Module, mode: str | float, dataloader: Iterable, **kwargs) -> fx.GraphModule:
    """Functional form of :class:`Converter`: ``convert(ann, 'max', loader)``."""
    return Converter(mode=mode, dataloader=dataloader, **kwargs)(ann)


__all__ = ["Converter", "convert"]
