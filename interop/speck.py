"""Speck 2f proof with Sinabs' own code: our Speck-target export of the seed CNN, mapped and run by
Sinabs' ``DynapcnnNetwork(..., discretize=True)``, against our ``check`` and integer simulation.

Run from the repository root in the main ``.venv`` (the Sinabs side runs in the Sinabs interop
venv, ``interop/readers/run_sinabs_speck.py``, with the samna stand-in ``interop/samna_stub``)::

    ANN2SNN_INTEROP_VENVS=/work/venvs-interop python interop/speck.py --samples 100 --T 16
    python interop/speck.py --bias leak                         # biases kept as Speck's leak
    python interop/speck.py --nir runs/speck_leak/cnn_p99.9_T16.nir   # a file convert wrote

Our side: the seed CNN (shipped weights) converted in mode 99.9% for rate input with a
spike-count readout, quantised to 8-bit weights, 16-bit state, no biases
(:func:`converter.quantize`, ``bias="none"``; ``--bias leak``: 8-bit biases, ``bias="leak"``,
``bias_bits=8``, as ``convert --target speck2f --target-bias leak``), exported (``exact``
profile, which writes SumPool2d for the integer pools) — or the file given with ``--nir`` —
checked (:func:`exporters.targets.check_file`) and simulated from the file
(:func:`exporters.import_nir`, the file's own rules) on the rate spike trains of the first
``--samples`` MNIST test images (:func:`simulator.rate_spikes`). The same trains go to Sinabs.
Printed: the mapping and memory of both, the spikes that differ per IF layer.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from interop.harness import run_vendor_reader, vendor_inputs, vendor_main  # noqa: E402

READER = REPO / "interop" / "readers" / "run_sinabs_speck.py"


def speck_export(path: Path, T: int = 16, calib: int = 500, bias: str = "none") -> Path:
    """The seed CNN's Speck-target ``.nir`` at ``path``: 99.9%, rate input, spike-count readout,
    8-bit weights, 16-bit state, no biases (what ``convert --target speck2f`` sets); ``bias="leak"``:
    8-bit biases (``--target-bias leak``)."""
    from ann2snn.zoo.mnist import load_embedded
    from ann2snn.zoo.mnist_cnn import load_mnist_cnn
    from converter import Converter, quantize
    from exporters import export_nir

    images = load_embedded("calib").images[:calib]
    data = [images]
    snn = Converter("99.9%", dataloader=data, readout="spike_count", encoding="rate")(load_mnist_cnn())
    bits = 8 if bias == "leak" else None
    snn = quantize(snn, 8, 16, bias=bias, bias_bits=bits, calibration=images, calibration_T=T)
    return export_nir(snn, path, T=T, input_shape=(1, 28, 28))


def our_counts(path: Path, images: torch.Tensor, T: int) -> dict[str, np.ndarray]:
    """Spike counts ``[B, ...]`` per IF node of our simulation of the file (its own rules, its rate
    input: the trains of :func:`simulator.rate_spikes`) on ``images`` ``[B, 1, 28, 28]``."""
    from exporters import import_nir
    from simulator import simulate

    result = simulate(import_nir(path), images, T, warn_silent=False)
    return {k: v.numpy() for k, v in result.spike_counts.items()}


def main(argv: list[str] | None = None) -> int:
    """Build (or take ``--nir``), check, run both sides, print the comparison as JSON."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--nir", type=Path, default=None, help="a Speck-target .nir to compare (default: build one)")
    parser.add_argument("--bias", choices=("none", "leak"), default="none", help="biases of the file built")
    known, rest = parser.parse_known_args(argv)
    return vendor_main(functools.partial(run, nir_file=known.nir, bias=known.bias), __doc__ or "", rest)


def run(samples: int, T: int, out: Path | None = None, nir_file: Path | None = None, bias: str = "none") -> dict:
    """The comparison as a dictionary (see :func:`main`): ``nir_file``, or the seed CNN's export
    with ``bias`` (:func:`speck_export`)."""
    from exporters.targets import check_file

    folder, images, labels = vendor_inputs(out, samples, T)  # spikes.npy: the trains our simulation feeds
    path = nir_file if nir_file is not None else speck_export(folder / "cnn_speck2f.nir", T=T, bias=bias)
    report = check_file(path, "speck2f")
    ours = our_counts(path, images, T)
    theirs = run_vendor_reader("sinabs", READER, path, folder, "sinabs.npz", timeout=1800)
    sinabs_info = json.loads(str(theirs["info"]))
    layers = [row["neuron"] for row in report.resources]
    differing = {}
    for i, neuron in enumerate(layers):
        a, b = ours[neuron], theirs[f"counts__{i}"]
        differing[neuron] = {"differing": int(np.abs(a - b.reshape(a.shape)).sum()), "ours": int(a.sum())}
    predicted = theirs[f"counts__{len(layers) - 1}"].reshape(samples, -1).argmax(1)
    ours_pred = ours[layers[-1]].reshape(samples, -1).argmax(1)
    return {
        "file": str(path),
        "check": {
            "fits": report.fits,
            "violations": [v.line() for v in report.violations],
            "notes": report.notes,
            "cores": {r["layer"]: r["core"] for r in report.resources},
            "memory": {r["layer"]: [r[f"{k}_memory"] for k in ("kernel", "neuron", "bias")] for r in report.resources},
        },
        "sinabs": sinabs_info,
        "spikes": differing,
        "accuracy_ours": float((torch.from_numpy(ours_pred) == labels).float().mean()),
        "accuracy_sinabs": float((torch.from_numpy(predicted) == labels).float().mean()),
    }


if __name__ == "__main__":
    raise SystemExit(main())
