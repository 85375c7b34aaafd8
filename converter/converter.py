"""The ANN → SNN converter: trace, fold BatchNorm, record, normalise, replace ReLUs, then the
optional low-latency steps (channel-wise scales, membrane readout, bias calibration)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
import torch.fx as fx
from torch import nn

from converter.calibrate import calibrate_biases, calibrate_output, calibrate_weights
from converter.channelwise import channel_normalize
from converter.fold_bn import fold_batchnorm
from converter.modes import Mode, parse_mode
from converter.normalize import channel_scales_from_stats, normalize, scales_from_stats
from converter.qcfs import qcfs_levels
from converter.quantize import MAX_STATE_BITS, MAX_WEIGHT_BITS, check_bits, quantize
from converter.readout import READOUTS, membrane_readout
from converter.record import calibration_batches, capture_activations, first_samples, record_activations
from converter.replace import replace_activations
from converter.statistics import mse_optimal_scale
from converter.trace import describe, relu_cap, trace
from simulator import META_KEY, IFNeuron, Integrator, distributed
from simulator.graph import input_dtype_problem, input_shape_problem
from simulator.neuron import RESETS, SPIKE_RULES, check_choice, check_signed_reset

log = logging.getLogger(__name__)

#: Samples the calibration steps fit on by default (the first ones of the calibration data).
CALIBRATION_SAMPLES = 500

#: Input encodings a conversion can be calibrated for (see :func:`simulator.simulate`).
CONVERSION_ENCODINGS = ("constant", "rate")


class Converter:
    """Convert a trained ReLU network into an SNN of integrate-and-fire neurons.

    ``snn = Converter(mode='max', dataloader=loader)(ann)``

    Steps (each a pass returning a new ``torch.fx.GraphModule``): trace with torch.fx, fold
    BatchNorm into the preceding Conv/Linear, record each ReLU's activations on the
    calibration data (eval mode, no grad), choose each layer's scale λ by ``mode``, scale the
    weights so every IF threshold is 1 (:mod:`converter.normalize`), optionally per channel
    (:mod:`converter.channelwise`), replace every ReLU by an :class:`simulator.IFNeuron` with
    reset by subtraction starting at ``v_init``·V_th, read the output layer's membrane
    potential (:mod:`converter.readout`), and optionally correct the biases for a time budget
    (:mod:`converter.calibrate`). AvgPool, Flatten and reshapes stay as they are (linear);
    Dropout and Identity are removed; a trailing Softmax is dropped with a warning. Residual
    adds and concats are reconciled to one scale (explicit :class:`simulator.Scale` nodes on
    the edges that need them). ReLU6 and clamp(0, c) become IF layers with λ ≤ c.
    Rueckauer et al. 2017 (Front. Neurosci. 11:682); Diehl et al. 2015 (IJCNN) for ``'max'``.

    Under ``torch.distributed`` (a process group of more than one process, e.g. ``torchrun``)
    every rank passes the same calibration data; each records the statistics of its share of the
    batches and the statistics are merged exactly (:func:`converter.statistics.all_reduce_stats`),
    so the scales equal one process's bit for bit. The steps that fit parameters (bias and weight
    calibration, the quantisation's bias correction) run on every rank on the same global first
    ``calibration_samples`` samples with the same seeded draws, and rank 0's parameters are then
    broadcast (:func:`simulator.distributed.broadcast_parameters`): the result is what one process
    computes on the same samples, and all ranks hold one SNN. (All-reducing the gradients of a
    sharded fit would sum in another order, so it would not be bit-equal to one process; the fit
    is small, a few hundred samples, so repeating it costs no wall time.) A rank whose part fails
    makes every rank raise (:class:`simulator.distributed.RankFailed` names it).

    Args:
        mode: ``'max'``, a percentile string such as ``'99.9%'``, or a float in (0, 1] (or
            ``'1/2'``): that fraction of the max.
        dataloader: calibration data: a ``DataLoader`` (or any iterable) yielding ``[B, ...]``
            tensors or ``(inputs, labels)`` batches, a tensor ``[N, ...]`` of inputs, an ``(x, y)``
            pair of tensors, a ``TensorDataset`` or another ``Dataset``
            (:func:`converter.record.calibration_batches`).
        reset: ``"subtract"`` (default) or ``"zero"``.
        spike_rule: ``">="`` (default), ``">"`` (NIR's), ``"multi"`` (burst neurons: several
            spikes per step, Li & Zeng 2022) or ``"signed"`` (signed neurons: a negative spike
            takes back a positive one when the potential falls below 0, so the net count is the
            quantised mean input whatever its order in time; Wang et al., IJCAI 2022;
            :func:`simulator.neuron.if_scan_signed`). ``"multi"`` needs a chip that sends several
            spikes per step, ``"signed"`` one that sends signed events (not Speck) and reset by
            subtraction.
        v_init: initial membrane potential as a fraction of V_th. Default 0.5: half the
            threshold removes the systematic floor error of rate coding (Bu et al., ICLR 2022;
            Hao et al., AAAI 2023); 0 is plain rate coding (Rueckauer et al. 2017).
        readout: ``"membrane"`` (default: the output layer integrates without spiking, no
            ties) or ``"spike_count"`` (argmax of the output layer's spike counts).
        channel_wise: one scale per output channel (Kim et al., AAAI 2020) instead of per layer.
        calibrate_T: if given, calibrate for this many time steps (Li et al., ICML 2021): each
            layer's λ (per channel with ``channel_wise``) becomes the one at most the mode's λ
            that minimises the T-step rate-coding error of its calibration activations, then
            every IF layer's biases are corrected for its mean rate error on the first
            ``calibration_samples`` calibration images.
        calibrate_weights: with ``calibrate_T``, also fit the weights and biases of every
            Conv/Linear that feeds an IF layer to the ANN's activations, layer by layer, on the
            SNN's own T-step input rates (:func:`converter.calibrate.calibrate_weights`), and
            the layer feeding a membrane readout to the ANN's softmax
            (:func:`converter.calibrate.calibrate_output`); about 12 s per T for the seed CNN
            on 2 idle cores.
        calibration_samples: images used by the bias (and weight) calibration (default 500).
        calibration_iterations: Adam steps per layer of the weight calibration (default 300;
            fewer is faster and a little less accurate).
        progress: called with each calibration batch's size (e.g. ``tqdm.update``).
        weight_bits: if given (2 to 16), finish with :func:`converter.quantize`: N-bit integer
            weights, integer biases, thresholds and V[0], with its bias correction on the first
            500 calibration samples (simulated for ``calibrate_T`` steps, else 16).
        state_bits: with ``weight_bits``, the membrane width M (2 to 32) every integer threshold
            must fit; the quantised IF layers saturate their potential to
            ``[-2^(M-1), 2^(M-1) - 1]`` after each step's integration, as a chip with an M-bit
            state does (:class:`simulator.IFNeuron`).
        encoding: the input the SNN will get: ``"constant"`` (default, the analog input as a
            current at every step) or ``"rate"`` (regular spikes of IF encoders, threshold 1,
            ``V[0] = 1/2``: :func:`simulator.rate_spikes`; inputs in [0, 1]). The calibrations
            (``calibrate_T``, ``calibrate_weights``, the quantisation's bias correction) simulate
            the SNN with it, so the first layer is fitted to the spike input; it is recorded as
            ``meta['ann2snn']['input_encoding']``, which :func:`simulator.simulate` uses by default.

    The returned SNN is a ``GraphModule`` taking ``[steps * B, ...]`` inputs (run it with
    :func:`simulator.simulate`). ``snn.meta['ann2snn']`` names layers by their module path in
    the SNN, the names spike counts and NIR nodes use: an IF layer's path (``if_<ReLU path>``),
    and, under a membrane readout, the :class:`simulator.Integrator`'s path ``readout``, which
    stands for the output layer (and for the ANN's last ReLU, whose IF layer it replaces). Keys:

    - ``mode`` (str), ``readout`` (``"membrane"`` or ``"spike_count"``), ``reset``,
      ``spike_rule``, ``v_init``: the settings used.
    - ``lambdas``: layer path → λ, the activation scale (ANN units) of each ReLU.
    - ``output_scale``: rate × output_scale = ANN output.
    - ``input_shape``: ``[C, ...]`` of one calibration sample; ``calibration_samples``: how many
      samples the statistics were recorded on.
    - ``if_layers``: IF layer path → the ANN's ReLU node name (fx), for every IF layer of the SNN.
    - ``channel_wise_layers``: IF layer paths scaled per channel.
    - ``channel_lambdas``: layer path → ``[C]`` list of λ per channel (ANN units; λ of the
      layer × the channel's ratio, at most ``lambdas[path]``) for each channel-wise layer.
    - ``bias_calibrated_layers``, ``weight_calibrated_layers``: paths of the IF layers (and
      ``readout``) whose producing Conv/Linear had its bias, or weights and bias, calibrated.
    - ``calibrate_T`` (int or None), ``conversion_seconds`` (float).
    - ``input_encoding``: ``"constant"`` or ``"rate"``, the ``encoding`` converted for.

    Raises:
        TypeError: no ``dataloader`` (a required keyword argument), or calibration data of a
            type not listed above (naming it), at construction.
        ValueError: an unparseable mode, a bad reset/spike rule/readout/encoding (or
            ``spike_rule="signed"`` with ``reset="zero"``), ``calibrate_T < 1``, or
            ``dataloader=None`` (at construction, before any work); a layer that never fired on
            the calibration data.
        converter.trace.UnsupportedLayerError: a layer that cannot be converted, naming its path
            and type (the ANN is left untouched and no partial SNN is returned).
        converter.trace.NotTraceableError: torch.fx cannot trace the forward.
    """

    def __init__(
        self,
        mode: str | float = "max",
        *,
        dataloader: Iterable,
        reset: str = "subtract",
        spike_rule: str = ">=",
        v_init: float = 0.5,
        readout: str = "membrane",
        channel_wise: bool = False,
        calibrate_T: int | None = None,
        calibrate_weights: bool = False,
        calibration_samples: int = CALIBRATION_SAMPLES,
        calibration_iterations: int = 300,
        progress: Callable[[int], None] | None = None,
        weight_bits: int | None = None,
        state_bits: int | None = None,
        encoding: str = "constant",
    ) -> None:
        self.mode: Mode = parse_mode(mode)
        if dataloader is None:
            raise ValueError(f"mode {self.mode.text!r} is data-driven: pass a calibration dataloader")
        if calibrate_T is not None and calibrate_T < 1:
            raise ValueError(f"calibrate_T must be >= 1 time step, got {calibrate_T}")
        if calibrate_weights and calibrate_T is None:
            raise ValueError("calibrate_weights needs calibrate_T (the time steps to calibrate for)")
        if calibration_iterations < 1:
            raise ValueError(f"calibration_iterations must be >= 1, got {calibration_iterations}")
        if calibration_samples < 1:
            raise ValueError(f"calibration_samples must be >= 1, got {calibration_samples}")
        self.dataloader = calibration_batches(dataloader)
        self.neuron: dict[str, Any] = {
            "reset": check_choice("reset", reset, RESETS),
            "spike_rule": check_choice("spike_rule", spike_rule, SPIKE_RULES),
            "v_init": float(v_init),
        }
        check_signed_reset(spike_rule, reset)
        self.readout = check_choice("readout", readout, READOUTS)
        self.channel_wise = bool(channel_wise)
        self.calibrate_T = calibrate_T
        self.calibrate_weights = bool(calibrate_weights)
        self.calibration_iterations = calibration_iterations
        self.calibration_samples = calibration_samples
        self.progress = progress
        if weight_bits is not None:
            check_bits("weight_bits", weight_bits, 2, MAX_WEIGHT_BITS)
        if state_bits is not None and weight_bits is None:
            raise ValueError("state_bits needs weight_bits (it bounds the integer thresholds)")
        if state_bits is not None:
            check_bits("state_bits", state_bits, 2, MAX_STATE_BITS)
        self.weight_bits, self.state_bits = weight_bits, state_bits
        self.encoding = check_choice("encoding", encoding, CONVERSION_ENCODINGS)

    def __call__(self, ann: nn.Module) -> fx.GraphModule:
        start = time.perf_counter()
        ann_gm = distributed.checked("trace", lambda: fold_batchnorm(trace(ann, _fitting_sample(ann, self.dataloader))))
        needs_histogram = self.mode.needs_histogram or self.calibrate_T is not None
        stats, input_shape, samples = record_activations(
            ann_gm, self.dataloader, needs_histogram, self.progress, self.channel_wise
        )
        snn = distributed.checked("convert", lambda: self._build(ann, ann_gm, stats, input_shape, samples, start))
        distributed.broadcast_parameters(snn)  # one SNN on every rank, even where a fit is not reproducible
        return snn

    def _build(self, ann: nn.Module, ann_gm: fx.GraphModule, stats, input_shape, samples: int, start: float):
        """Everything after the statistics: scales, normalisation, IF layers, readout, the
        calibrations and the quantisation (no collectives: under ``torch.distributed`` every rank
        runs this on the same merged statistics and the same first calibration samples)."""
        modules = dict(ann_gm.named_modules())
        labels = {n.name: describe(n, modules) for n in ann_gm.graph.nodes if n.name in stats}
        lambdas = cap_scales(scales_from_stats(stats, self.mode, labels), ann_gm)
        ratios = channel_scales_from_stats(stats, self.mode) if self.channel_wise else {}
        if self.calibrate_T is not None:
            lambdas, ratios = self._search_scales(stats, lambdas, ratios)
        trained = qcfs_scales(ann_gm)  # QCFS layers keep their trained λ, whatever the mode
        lambdas.update({name: lam for name, lam in trained.items() if name in lambdas})
        ratios = {name: r for name, r in ratios.items() if name not in trained}
        gm, thresholds, out_scale = normalize(ann_gm, lambdas)
        units = {name: torch.tensor(lam) for name, lam in lambdas.items()}
        channel_wise_layers: list[str] = []
        if self.channel_wise:
            ratios = {k: v for k, v in ratios.items() if thresholds[k] == 1.0}
            gm, channel_wise_layers = channel_normalize(gm, ratios, input_shape)
            units.update({k: lambdas[k] * ratios[k].float() for k in channel_wise_layers})
        snn = replace_activations(gm, thresholds, **self.neuron)
        relus = snn.meta[META_KEY]["if_layers"]  # IF path -> ReLU node, before a readout replaces one
        replaced = _output_module(snn, IFNeuron) if self.readout == "membrane" else None
        if self.readout == "membrane":
            snn = membrane_readout(snn)
        if_layers = snn.meta[META_KEY]["if_layers"]
        path = layer_paths(snn, relus, replaced)
        snn.meta.setdefault(META_KEY, {})["input_encoding"] = self.encoding  # the calibrations simulate with it
        calibrated, weight_calibrated = (
            self._calibrate(snn, ann_gm, if_layers, units, out_scale) if self.calibrate_T else ([], [])
        )
        snn.meta[META_KEY] = {
            "mode": self.mode.text,
            "lambdas": {path[relu]: lam for relu, lam in lambdas.items() if relu in path},
            "output_scale": out_scale,
            "input_shape": list(input_shape),
            "calibration_samples": samples,
            "readout": self.readout,
            "channel_wise_layers": [path[relu] for relu in channel_wise_layers if relu in path],
            "channel_lambdas": {
                path[relu]: [float(v) for v in units[relu].flatten().tolist()]
                for relu in channel_wise_layers
                if relu in path
            },
            "bias_calibrated_layers": calibrated,
            "weight_calibrated_layers": weight_calibrated,
            "calibrate_T": self.calibrate_T,
            "if_layers": if_layers,
            "conversion_seconds": time.perf_counter() - start,
            "input_encoding": self.encoding,
            **self.neuron,
        }
        if self.weight_bits is not None:
            steps = self.calibrate_T or 16
            snn = quantize(snn, self.weight_bits, self.state_bits, calibration=self.dataloader, calibration_T=steps)
        log.info("converted %s with mode %s in %.2f s", type(ann).__name__, self.mode.text, time.perf_counter() - start)
        return snn

    def _search_scales(self, stats, lambdas: dict[str, float], ratios: dict[str, torch.Tensor]):
        """λ (and per-channel ratios) minimising each layer's T-step coding error, at most the
        mode's λ (:func:`~converter.statistics.mse_optimal_scale`, for the SNN's reset and spike rule)."""
        T = self.calibrate_T
        if T is None:  # only called with calibrate_T set
            raise ValueError("scale search needs calibrate_T")
        new_lambdas, new_ratios = {}, {}
        for name, s in stats.items():
            upper = lambdas[name] * ratios[name] if name in ratios else lambdas[name]
            best = mse_optimal_scale(
                s, upper, T, self.neuron["v_init"], reset=self.neuron["reset"], spike_rule=self.neuron["spike_rule"]
            )
            new_lambdas[name] = float(best.max())
            if name in ratios:
                new_ratios[name] = best / best.max()
        return new_lambdas, new_ratios

    def _calibrate(
        self,
        snn: fx.GraphModule,
        ann_gm: fx.GraphModule,
        if_layers: dict[str, str],
        units: dict[str, torch.Tensor],
        out_scale: float,
    ) -> tuple[list[str], list[str]]:
        """Bias (and weight) calibration; returns the layer paths whose producers were changed."""
        T = self.calibrate_T
        if T is None:  # only called with calibrate_T set
            raise ValueError("calibration needs calibrate_T")
        x = first_samples(self.dataloader, self.calibration_samples)
        device = next((p.device for p in snn.parameters()), torch.device("cpu"))
        x = x.to(device)
        activations = capture_activations(ann_gm, x, set(if_layers.values()))
        targets = {}
        for name, relu in if_layers.items():
            a = activations[relu]
            unit = units[relu].to(a.device).view(-1, *([1] * (a.dim() - 2))) if units[relu].dim() else units[relu]
            targets[name] = (a / unit).clamp(0, 1)
        biases = calibrate_biases(snn, targets, x, T)
        weights = []
        if self.calibrate_weights:
            steps = self.calibration_iterations
            weights = calibrate_weights(snn, targets, x, T, iterations=steps)
            with torch.no_grad():
                logits = ann_gm(x)
            if calibrate_output(snn, logits, x, T, out_scale, iterations=steps) is not None:
                weights.append(cast(str, _output_module(snn, Integrator)))  # the readout calibrate_output fitted
        return biases, weights


def _output_module(snn: fx.GraphModule, kind: type) -> str | None:
    """The path of the module giving the SNN's output if it is a ``kind`` (an IF layer, or the
    membrane readout's Integrator), else None."""
    out = next(n for n in snn.graph.nodes if n.op == "output").args[0]
    if isinstance(out, fx.Node) and out.op == "call_module" and isinstance(snn.get_submodule(str(out.target)), kind):
        return str(out.target)
    return None


def layer_paths(snn: fx.GraphModule, if_layers: dict[str, str], replaced: str | None = None) -> dict[str, str]:
    """ANN ReLU node name → the SNN layer that stands for it, the name ``snn.meta['ann2snn']``
    uses: its IF layer's module path, or the membrane readout's path for the ReLU whose IF layer
    the readout replaced.

    Args:
        snn: the SNN, after :func:`~converter.readout.membrane_readout` if it has one.
        if_layers: IF layer path → ReLU node name, as :func:`~converter.replace.replace_activations`
            recorded it (before the readout).
        replaced: the path of the IF layer the membrane readout replaced (None: no readout).

    IF layers of ``if_layers`` that are no longer in ``snn`` otherwise (dead code) have no path:
    they are left out, with a log message.
    """
    modules = dict(snn.named_modules())
    readout = _output_module(snn, Integrator)
    paths = {}
    for path, relu in if_layers.items():
        if isinstance(modules.get(path), IFNeuron):
            paths[relu] = path
        elif path == replaced and readout is not None:
            paths[relu] = readout
        else:
            log.info("ReLU %s: its IF layer %s is not in the SNN (unused); not named in the metadata", relu, path)
    return paths


def qcfs_scales(gm: fx.GraphModule) -> dict[str, float]:
    """{ReLU node name: trained λ} for the QCFS layers of a traced network (see
    :mod:`converter.qcfs`): their scale is fixed by the fine-tune, not by the mode."""
    modules = dict(gm.named_modules())
    return {
        n.name: float(cast(nn.Hardtanh, modules[str(n.target)]).max_val)
        for n in gm.graph.nodes
        if n.op == "call_module" and qcfs_levels(modules[str(n.target)]) is not None
    }


def cap_scales(lambdas: dict[str, float], gm: fx.GraphModule) -> dict[str, float]:
    """λ ≤ c for a ReLU capped at c (ReLU6, clamp(0, c)): the IF neuron saturates at one spike
    per step, i.e. at λ, which then reproduces the cap (recorded activations never exceed c, so
    this only guards against a mode that would pick λ above it)."""
    modules = dict(gm.named_modules())
    caps = {n.name: relu_cap(n, modules) for n in gm.graph.nodes if n.name in lambdas}
    return {name: min(lam, cast(float, caps[name])) for name, lam in lambdas.items()}  # ReLUs: caps are set


def _fitting_sample(ann: nn.Module, dataloader: Iterable) -> torch.Tensor:
    """The first calibration input ``[1, ...]``; ValueError naming the expected and the got
    shape when it cannot fit ``ann``'s first layer, or both dtypes when it is not the dtype of
    the model's parameters (rather than a raw conv2d error later)."""
    sample = first_samples(dataloader, 1)
    problem = input_shape_problem(ann, sample.shape)
    if problem is not None:
        raise ValueError(f"calibration data does not fit the model: {problem}")
    problem = input_dtype_problem(ann, sample.dtype)
    if problem is not None:
        raise ValueError(f"calibration data: {problem}")
    return sample


def convert(ann: nn.Module, mode: str | float, dataloader: Iterable, **kwargs) -> fx.GraphModule:
    """Functional form of :class:`Converter`: ``convert(ann, 'max', loader)``."""
    return Converter(mode=mode, dataloader=dataloader, **kwargs)(ann)
