"""Run our Loihi-target .nir (a chain of Conv2d/Affine/Linear -> IF layers, Flatten between) in
Lava's fixed-point processes; imports nothing from ann2snn.

    python interop/readers/run_lava.py --nir FILE.nir --spikes IN.npy --out OUT.npz [--group 10]

Runs in the Lava interop venv (lava-nc 0.10.0, Python 3.10). For each Affine/Linear -> IF pair
of the file: ``lava.proc.dense.process.Dense`` (bit-accurate model ``PyDenseModelBitAcc``) and
``lava.proc.lif.process.LIF`` (``PyLifModelBitAcc``) with ``du = 4095`` (the current lasts one
step: decay ``(du + ds_offset) / 4096 = 1``), ``dv = 0`` (no leak: IF), ``bias_mant`` the file's
integer bias ``b`` with ``bias_exp = 6`` (``scale_bias``: ``effective_bias = bias_mant << bias_exp``
is added to ``v`` unshifted, while the input is shifted by ``act_shift = 6``: ``b << 6`` is ``b``
in input units; ``|b| <= 4095``, 13 bits),
``vth`` the file's integer threshold and ``v`` its ``V[0]`` shifted by 6 bits (the model's
``vth_shift`` / ``act_shift``); spikes when ``v > vth << 6``, ``v = 0`` after a spike.

Conv2d -> IF pairs: ``lava.proc.conv.process.Conv``, whose only fixed-point model in lava-nc
0.10.0 is ``PyConvModelFixed`` (tag ``fixed_pt``; there is no ``bit_accurate_loihi`` Conv model):
an integer convolution (``lava.proc.conv.utils.conv``, scipy ``convolve2d``, so the kernel is
given flipped, in Lava's ``(C_out, k_x, k_y, C_in)`` order on ``(W, H, C)`` tensors) whose sum is
wrapped to 24 bits (``signed_clamp``); it applies neither ``weight_exp`` nor the 8-bit
truncation of ``Dense``, so the integer weights go in as they are. ``--group`` samples share one
``Conv(groups=G)`` (channels ``g C + c``); a Linear after a Flatten becomes one ``Dense`` on
the flattened ``(W, H, G C)`` tensor, its columns permuted from our ``(C, H, W)`` order.

Weights: ``PyDenseModelBitAcc`` clips to 8 bits and, for mixed-sign weights, drops the least
significant bit (``lava.utils.weightutils.truncate_weights``: ``num_truncate_bits = 8 -
num_weight_bits + 1``), so an integer weight ``w`` with ``|w| <= 63`` (7 bits) is given as
``2 w`` with ``weight_exp = -1``: ``(sum 2 w s) >> 1 = sum w s`` exactly.

Input spikes ``IN.npy`` ``[T, B, ...]`` go in through ``lava.proc.io.source.RingBuffer``; each
layer's spikes come out through ``lava.proc.io.sink.RingBuffer``. ``--group`` samples run side by
side as separate neuron groups of one network (block-diagonal weights, grouped convolutions),
one ``run`` per group,
``Loihi2SimCfg(select_tag="fixed_pt")``, for ``T + L`` steps (each Dense delivers the spikes of
step t at step t + 1, and so does each Conv, so layer ``l`` of ``L`` lags the input by ``l`` steps; its window is
shifted back). Layer ``l``'s bias is set (``Var.set``, the run paused after each step) from the
step its first input arrives, ``l + 1``: before it the layer would add biases our simulation
does not. ``OUT.npz``: ``spikes__<i>`` ``[T, B, N]`` per IF layer ``i``, ``info`` (JSON).
Exit 3 with one line on failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from typing import NamedTuple

import numpy as np


def _fail(stage: str, exc: BaseException) -> None:
    print(f"{stage}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
    raise SystemExit(3)


class Layer(NamedTuple):
    """One weighted node -> IF pair: ``kind`` ``"dense"`` (Affine/Linear) or ``"conv"`` (Conv2d);
    integer ``weight`` (``[N_out, N_in]`` or ``[C_out, C_in, k_h, k_w]``), ``threshold``, ``v0``,
    integer ``bias`` ``[N_out]``; ``in_shape`` (``(N,)`` or ``(C, H, W)``, before a Flatten),
    ``out_shape``; a convolution's ``stride`` and ``padding`` (h, w)."""

    kind: str
    weight: np.ndarray
    threshold: int
    v0: int
    bias: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


def _pair(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(arr[0]), int(arr[-1]))


def _bias(name: str, node, n_out: int) -> np.ndarray:
    bias = np.asarray(node.bias) if getattr(node, "bias", None) is not None else np.zeros(n_out)
    if np.any(bias != np.round(bias)) or np.abs(bias).max(initial=0) > 4095:
        raise ValueError(f"{name}: biases must be integers in [-4095, 4095] (bias_mant, 13 bits)")
    return bias.astype(np.int32)


def _layers(graph) -> list[Layer]:
    """The file's Conv2d/Affine/Linear -> IF pairs, in order (Flatten nodes pass the shape on)."""
    import nir

    order, todo = [], ["input"]
    while todo:
        name = todo.pop(0)
        order.append(name)
        todo += [b for a, b in graph.edges if a == name]
    out: list[Layer] = []
    shape: tuple[int, ...] = ()
    pending: dict | None = None
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).ravel())
        elif isinstance(node, nir.Conv2d):
            if _pair(node.dilation) != (1, 1) or int(node.groups) != 1 or isinstance(node.padding, str):
                raise ValueError(f"{name}: only undilated, ungrouped convolutions with numeric padding")
            weight = np.asarray(node.weight)
            out_shape = tuple(int(s) for s in np.asarray(node.output_type["output"]).ravel())
            pending = {
                "kind": "conv",
                "weight": weight,
                "bias": _bias(name, node, weight.shape[0]),
                "in_shape": shape,
                "out_shape": out_shape,
                "stride": _pair(node.stride),
                "padding": _pair(node.padding),
            }
            shape = out_shape
        elif isinstance(node, (nir.Affine, nir.Linear)):
            weight = np.asarray(node.weight)
            # after a Conv2d the input is Lava's (W, H, G C) tensor; the network input enters flat
            after_conv = bool(out) and out[-1].kind == "conv" and int(np.prod(shape)) == weight.shape[1]
            in_shape = shape if after_conv else (weight.shape[1],)
            pending = {
                "kind": "dense",
                "weight": weight,
                "bias": _bias(name, node, weight.shape[0]),
                "in_shape": in_shape,
                "out_shape": (weight.shape[0],),
            }
            shape = (weight.shape[0],)
        elif isinstance(node, nir.IF):
            thr = np.unique(np.asarray(node.v_threshold))
            if thr.size != 1 or pending is None:
                raise ValueError(f"{name}: needs one threshold and a weighted layer before it")
            v0 = float((node.metadata or {}).get("v_init_fraction", 0.0)) * float(thr[0])
            out.append(Layer(threshold=int(thr[0]), v0=int(round(v0)), **pending))
            pending = None
        elif not isinstance(node, (nir.Output, nir.Flatten)):
            raise ValueError(f"{name}: {type(node).__name__} is not part of a Conv2d/Affine/Linear -> IF chain")
    return out


def _block(weight: np.ndarray, group: int) -> np.ndarray:
    """``group`` copies of ``weight`` on the diagonal: samples side by side, never mixing."""
    n_out, n_in = weight.shape
    full = np.zeros((group * n_out, group * n_in), dtype=np.int32)
    for g in range(group):
        full[g * n_out : (g + 1) * n_out, g * n_in : (g + 1) * n_in] = weight
    return full


def _from_lava_layout(weight: np.ndarray, in_shape: tuple[int, int, int], group: int) -> np.ndarray:
    """A Linear on our ``flatten([C, H, W])`` per sample as one Dense on the flattened Lava
    tensor ``(W, H, group · C)`` of ``group`` samples (``[x, y, g C + c]``, C order)."""
    n_out = weight.shape[0]
    c, h, w = in_shape
    cc, hh, ww = np.indices((c, h, w))
    full = np.zeros((group * n_out, w * h * group * c), dtype=np.int32)
    for g in range(group):
        cols = ((ww * h + hh) * group * c + g * c + cc).ravel()
        full[np.ix_(np.arange(g * n_out, (g + 1) * n_out), cols)] = weight.reshape(n_out, -1)
    return full


def _lava_conv_weight(weight: np.ndarray, group: int) -> np.ndarray:
    """Our ``[C_out, C_in, k_h, k_w]`` correlation kernel as Lava's ``(group · C_out, k_x, k_y, C_in)``
    convolution kernel (``lava.proc.conv.utils.conv`` flips it: scipy ``convolve2d``), one copy per
    group of ``Conv(groups=group)``."""
    lava = weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]
    return np.concatenate([lava] * group, axis=0).astype(np.int32)


def _synapse(layer: Layer, port, group: int):
    """The connection process for ``layer`` fed by ``port``: ``Conv`` (``PyConvModelFixed``) or
    ``Dense`` (``PyDenseModelBitAcc``, weights ``2 w`` with ``weight_exp = -1``)."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense

    if layer.kind == "conv":
        c, h, w = layer.in_shape
        conv = Conv(
            weight=_lava_conv_weight(layer.weight.astype(np.int32), group),
            input_shape=(w, h, group * c),
            stride=layer.stride[::-1],
            padding=layer.padding[::-1],
            groups=group,
            num_weight_bits=8,
        )
        port.connect(conv.s_in)
        return conv
    if len(layer.in_shape) == 3:
        weights = _from_lava_layout(2 * layer.weight.astype(np.int32), layer.in_shape, group)
        port = port.flatten()
    else:
        weights = _block(2 * layer.weight.astype(np.int32), group)
    dense = Dense(weights=weights, weight_exp=-1, num_weight_bits=8)
    port.connect(dense.s_in)
    return dense


def _lava_shape(layer: Layer, group: int) -> tuple[int, ...]:
    """The shape of ``layer``'s neurons for ``group`` samples: ``(W, H, group · C)`` or ``(group · N,)``."""
    if layer.kind == "conv":
        c, h, w = layer.out_shape
        return (w, h, group * c)
    return (group * layer.out_shape[0],)


def _source_data(spikes: np.ndarray, first: Layer, total: int) -> np.ndarray:
    """The input trains ``[T, G, ...]`` as RingBuffer data ``(*shape, total)`` in Lava's layout."""
    steps, group = spikes.shape[:2]
    if first.kind == "conv":
        c, h, w = first.in_shape
        lava = spikes.reshape(steps, group, c, h, w).transpose(4, 3, 1, 2, 0).reshape(w, h, group * c, steps)
    else:
        lava = spikes.reshape(steps, -1).T
    data = np.zeros((*lava.shape[:-1], total))
    data[..., :steps] = lava
    return data


def _to_ours(data: np.ndarray, layer: Layer, group: int) -> np.ndarray:
    """A sink's ``(*shape, total)`` as ``[total, G, N]`` in our flatten order (C, H, W)."""
    total = data.shape[-1]
    if layer.kind == "conv":
        c, h, w = layer.out_shape
        return data.reshape(w, h, group, c, total).transpose(4, 2, 3, 1, 0).reshape(total, group, -1)
    return data.T.reshape(total, group, -1)


def _run_group(layers: list[Layer], spikes: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Spikes ``[T + L, G, N_l]`` of each layer for the input ``spikes`` ``[T, G, ...]``, and the
    process models Lava ran."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    steps, group = spikes.shape[:2]
    total = steps + len(layers)
    source = Source(data=_source_data(spikes, layers[0], total))
    port, sinks, neurons, synapses = source.s_out, [], [], []
    for layer in layers:
        synapse = _synapse(layer, port, group)
        shape = _lava_shape(layer, group)
        lif = LIF(
            shape=shape,
            du=4095,
            dv=0,
            bias_mant=np.zeros(shape),
            bias_exp=np.full(shape, 6),
            vth=layer.threshold,
            v=layer.v0 << 6,
        )
        synapse.a_out.connect(lif.a_in)
        sink = Sink(shape=shape, buffer=total)
        lif.s_out.connect(sink.a_in)
        port = lif.s_out
        sinks.append(sink)
        neurons.append(lif)
        synapses.append(synapse)
    config = Loihi2SimCfg(select_tag="fixed_pt")
    if not any(np.any(layer.bias) for layer in layers):
        source.run(condition=RunSteps(num_steps=total), run_cfg=config)
    else:  # layer l adds its bias from step l + 1, when its first input arrives
        for lif, layer in zip(neurons, layers, strict=True):
            source.run(condition=RunSteps(num_steps=1), run_cfg=config)
            bias = np.broadcast_to(np.tile(layer.bias, group), lif.bias_mant.shape)
            lif.bias_mant.set(bias.astype(np.int16))
        source.run(condition=RunSteps(num_steps=total - len(layers)), run_cfg=config)
    out = [_to_ours(sink.data.get(), layer, group) for sink, layer in zip(sinks, layers, strict=True)]
    models = sorted({f"{type(p).__name__}: {p.model_class.__name__}" for p in (*synapses, *neurons)})
    source.stop()
    return out, models


def main(argv: list[str] | None = None) -> int:
    """See the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nir", required=True)
    parser.add_argument("--spikes", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", type=int, default=10)
    args = parser.parse_args(argv)
    import nir

    try:
        layers = _layers(nir.read(args.nir))
    except Exception as exc:  # noqa: BLE001
        _fail("reading the Affine/Linear -> IF chain", exc)
    for i, layer in enumerate(layers):
        if np.abs(layer.weight).max() > 63:
            top = np.abs(layer.weight).max()
            _fail("weights", ValueError(f"layer {i}: |w| = {top:g} > 63 (7 bits, mixed sign)"))
    spikes = np.load(args.spikes)
    steps, batch = spikes.shape[:2]
    per_layer: list[list[np.ndarray]] = [[] for _ in layers]
    models: list[str] = []
    try:
        for start in range(0, batch, args.group):
            outs, models = _run_group(layers, spikes[:, start : start + args.group])
            for i, out in enumerate(outs):
                per_layer[i].append(out[i + 1 : i + 1 + steps])  # layer i (0-based) lags by i + 1 steps
    except Exception as exc:  # noqa: BLE001
        _fail("running Lava (Loihi2SimCfg fixed_pt)", exc)
    info = {
        "lava-nc": importlib.metadata.version("lava-nc"),
        "nir": importlib.metadata.version("nir"),
        "python": sys.version.split()[0],
        "layers": [layer.kind for layer in layers],
        "process_models": models,
        "thresholds": [layer.threshold for layer in layers],
        "v_init": [layer.v0 for layer in layers],
        "bias_max": [int(np.abs(layer.bias).max(initial=0)) for layer in layers],
        "bias_exp": 6,
    }
    arrays = {f"spikes__{i}": np.concatenate(chunks, axis=1).astype(np.uint8) for i, chunks in enumerate(per_layer)}
    np.savez(args.out, info=json.dumps(info), **arrays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
