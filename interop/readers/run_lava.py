"""Run our Loihi-target .nir (a chain of Affine/Linear -> IF layers) in Lava's bit-accurate
fixed-point processes; imports nothing from ann2snn.

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

Weights: ``PyDenseModelBitAcc`` clips to 8 bits and, for mixed-sign weights, drops the least
significant bit (``lava.utils.weightutils.truncate_weights``: ``num_truncate_bits = 8 -
num_weight_bits + 1``), so an integer weight ``w`` with ``|w| <= 63`` (7 bits) is given as
``2 w`` with ``weight_exp = -1``: ``(sum 2 w s) >> 1 = sum w s`` exactly.

Input spikes ``IN.npy`` ``[T, B, ...]`` go in through ``lava.proc.io.source.RingBuffer``; each
layer's spikes come out through ``lava.proc.io.sink.RingBuffer``. ``--group`` samples run side by
side as separate neuron groups of one network (block-diagonal weights), one ``run`` per group,
``Loihi2SimCfg(select_tag="fixed_pt")``, for ``T + L`` steps (each Dense delivers the spikes of
step t at step t + 1, so layer ``l`` of ``L`` lags the input by ``l`` steps; its window is
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

import numpy as np


def _fail(stage: str, exc: BaseException) -> None:
    print(f"{stage}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
    raise SystemExit(3)


def _layers(graph) -> list[tuple[np.ndarray, int, int, np.ndarray]]:
    """(integer weights [N_out, N_in], threshold, V[0], integer bias [N_out]) per Affine/Linear ->
    IF pair, in order."""
    import nir

    order, todo = [], ["input"]
    while todo:
        name = todo.pop(0)
        order.append(name)
        todo += [b for a, b in graph.edges if a == name]
    out, weight, bias = [], None, None
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = np.asarray(node.weight)
            bias = np.asarray(node.bias) if isinstance(node, nir.Affine) else np.zeros(weight.shape[0])
            if np.any(bias != np.round(bias)) or np.abs(bias).max(initial=0) > 4095:
                raise ValueError(f"{name}: biases must be integers in [-4095, 4095] (bias_mant, 13 bits)")
        elif isinstance(node, nir.IF):
            thr = np.unique(np.asarray(node.v_threshold))
            if thr.size != 1 or weight is None:
                raise ValueError(f"{name}: needs one threshold and a weighted layer before it")
            v0 = float((node.metadata or {}).get("v_init_fraction", 0.0)) * float(thr[0])
            out.append((weight, int(thr[0]), int(round(v0)), np.asarray(bias).astype(np.int32)))
            weight = None
        elif not isinstance(node, (nir.Input, nir.Output, nir.Flatten)):
            raise ValueError(f"{name}: {type(node).__name__} is not part of an Affine/Linear -> IF chain")
    return out


def _block(weight: np.ndarray, group: int) -> np.ndarray:
    """``group`` copies of ``weight`` on the diagonal: samples side by side, never mixing."""
    n_out, n_in = weight.shape
    full = np.zeros((group * n_out, group * n_in), dtype=np.int32)
    for g in range(group):
        full[g * n_out : (g + 1) * n_out, g * n_in : (g + 1) * n_in] = weight
    return full


def _run_group(layers, spikes: np.ndarray) -> list[np.ndarray]:
    """Spikes ``[T + L, G, N_l]`` of each layer for the input ``spikes`` ``[T, G, N_in]``."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    steps, group = spikes.shape[:2]
    total = steps + len(layers)
    data = np.zeros((group * spikes.shape[2], total))
    data[:, :steps] = spikes.reshape(steps, -1).T
    source = Source(data=data)
    port, sinks, neurons = source.s_out, [], []
    for weight, thr, v0, _ in layers:
        dense = Dense(weights=_block(2 * weight.astype(np.int32), group), weight_exp=-1, num_weight_bits=8)
        n = group * weight.shape[0]
        lif = LIF(shape=(n,), du=4095, dv=0, bias_mant=np.zeros(n), bias_exp=np.full(n, 6), vth=thr, v=v0 << 6)
        port.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        sink = Sink(shape=(group * weight.shape[0],), buffer=total)
        lif.s_out.connect(sink.a_in)
        port = lif.s_out
        sinks.append(sink)
        neurons.append(lif)
    config = Loihi2SimCfg(select_tag="fixed_pt")
    if not any(np.any(b) for *_, b in layers):
        source.run(condition=RunSteps(num_steps=total), run_cfg=config)
    else:  # layer l adds its bias from step l + 1, when its first input arrives
        for lif, (*_, bias) in zip(neurons, layers, strict=True):
            source.run(condition=RunSteps(num_steps=1), run_cfg=config)
            lif.bias_mant.set(np.tile(bias, group).astype(np.int16))
        source.run(condition=RunSteps(num_steps=total - len(layers)), run_cfg=config)
    out = [sink.data.get().T.reshape(total, group, -1) for sink in sinks]
    source.stop()
    return out


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
    for i, (weight, *_) in enumerate(layers):
        if np.abs(weight).max() > 63:
            _fail("weights", ValueError(f"layer {i}: |w| = {np.abs(weight).max():g} > 63 (7 bits, mixed sign)"))
    spikes = np.load(args.spikes)
    steps, batch = spikes.shape[:2]
    spikes = spikes.reshape(steps, batch, -1)
    per_layer: list[list[np.ndarray]] = [[] for _ in layers]
    try:
        for start in range(0, batch, args.group):
            outs = _run_group(layers, spikes[:, start : start + args.group])
            for i, out in enumerate(outs):
                per_layer[i].append(out[i + 1 : i + 1 + steps])  # layer i (0-based) lags by i + 1 steps
    except Exception as exc:  # noqa: BLE001
        _fail("running Lava (Loihi2SimCfg fixed_pt)", exc)
    info = {
        "lava-nc": importlib.metadata.version("lava-nc"),
        "nir": importlib.metadata.version("nir"),
        "python": sys.version.split()[0],
        "thresholds": [thr for _, thr, _, _ in layers],
        "v_init": [v0 for _, _, v0, _ in layers],
        "bias_max": [int(np.abs(b).max(initial=0)) for *_, b in layers],
        "bias_exp": 6,
    }
    arrays = {f"spikes__{i}": np.concatenate(chunks, axis=1).astype(np.uint8) for i, chunks in enumerate(per_layer)}
    np.savez(args.out, info=json.dumps(info), **arrays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
