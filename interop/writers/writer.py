"""The writer protocol's shared part: arguments, seeded layers, RESULT.npz (interop/README.md).

Imported by every ``interop/writers/write_<tool>.py`` (the script's folder is first on
``sys.path``), inside that tool's venv: nothing from ann2snn; the failure line and the input
come from ``interop/readers/protocol.py``; torch (every tool's venv has it) builds the seeded
synapse layers that each tool wraps around its own neurons.

    <venv>/bin/python interop/writers/write_<tool>.py --network mlp|lif|cnn \
        --out FILE.nir --input IN.npy --T 20 --result RESULT.npz [--dtype float64]

``RESULT.npz``: ``output`` ``[T, B, *out]`` (the last layer's spikes at every step, as the tool
steps the network), ``counts_<i>`` ``[B, ...]`` spike counts of the ``i``-th spiking layer in
network order, ``tool`` / ``version`` / ``note`` strings. Exit 3 with one line on stderr when the
tool's exporter (or run) fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "readers"))
from protocol import EXIT_FAIL, fail, load_input, versions  # noqa: E402

__all__ = ["EXIT_FAIL", "fail", "load_input", "versions", "parse_args", "layers", "record", "write_result"]

#: ``mlp``: Linear(8, 16) -> IF -> Linear(16, 4) -> IF; ``lif``: the same with LIF neurons;
#: ``cnn``: Conv2d(1, 4, 3) -> IF -> SumPool2d(2) -> Conv2d(4, 8, 3) -> IF -> Flatten ->
#: Linear(32, 4) -> IF on a [1, 10, 10] input.
NETWORKS = ("mlp", "lif", "cnn")


def parse_args(
    doc: str, networks: tuple[str, ...] = NETWORKS, argv: list[str] | None = None, extra: list[tuple[str, str]] = ()
) -> argparse.Namespace:
    """``--network --out --input --T --result [--dtype]`` and the ``extra`` ``(flag, help)``
    switches; warnings and logs below ERROR silenced."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--network", choices=networks, required=True)
    parser.add_argument("--out", required=True, help="the .nir file the tool's exporter writes")
    parser.add_argument("--input", required=True, help="IN.npy, the constant input [B, ...]")
    parser.add_argument("--T", type=int, required=True)
    parser.add_argument("--result", required=True, help="RESULT.npz, the tool's own run")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    for flag, text in extra:
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    return args


def layers(network: str):
    """The seeded synapse layers of ``network`` (torch modules, float32, seed 0), in order.

    Weights are PyTorch's default initialisation times 2 (biases as initialised), so that every
    layer spikes within a few steps of a [0, 1) input.
    """
    import torch
    from torch import nn

    torch.manual_seed(0)
    if network in ("mlp", "lif"):
        mods = [nn.Linear(8, 16), nn.Linear(16, 4)]
    else:
        mods = [nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3), nn.Linear(32, 4)]
    with torch.no_grad():
        for m in mods:
            m.weight.mul_(2.0)
    return mods


def record(layers, dtype=None, index: int | None = None) -> list[list]:
    """Hook every module of ``layers`` to append its spikes (``output[index]`` if given) as
    float64 numpy to its own list; returns those lists, in the order of ``layers``. With
    ``dtype`` each hook returns the output cast to it (Sinabs and snnTorch emit float32 spikes
    from a float64 layer, which the next float64 layer refuses; 0/1 and small integer counts
    cast exactly)."""

    def hook_into(sink: list):
        def hook(module, inputs, output):
            spikes = output if index is None else output[index]
            sink.append(spikes.detach().double().numpy())
            return None if dtype is None else output.to(dtype)

        return hook

    sinks: list[list] = [[] for _ in layers]
    for layer, sink in zip(layers, sinks, strict=True):
        layer.register_forward_hook(hook_into(sink))
    return sinks


def write_result(path: str, output: np.ndarray, counts: list[np.ndarray], tool: str, note: str = "") -> None:
    """``RESULT.npz``: ``output`` ``[T, B, ...]``, ``counts_<i>``, ``tool``, ``version``, ``note``."""
    result = {"output": output, "tool": tool, "version": versions(tool), "note": note}
    result.update({f"counts_{i}": np.asarray(c) for i, c in enumerate(counts)})
    np.savez(path, **result)
