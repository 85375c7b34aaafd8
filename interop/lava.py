"""Loihi 2 proof with Lava's fixed-point models: our Loihi-target export of an MLP or of the seed
CNN, run by lava-nc's ``Dense`` / ``Conv`` / ``LIF`` processes, against our integer simulation,
spike for spike.

Run from the repository root in the main ``.venv`` (the Lava side runs in the Lava interop venv,
``interop/readers/run_lava.py``; ``bash interop/setup.sh lava``)::

    ANN2SNN_INTEROP_VENVS=/work/venvs-interop python interop/lava.py --samples 100 --T 16
    python interop/lava.py --net cnn --bias keep          # the seed CNN, pools folded
    python interop/lava.py --nir runs/loihi/cnn_p99.9_T16.nir   # a file convert --target loihi2 wrote

Our side: the interop MLP (784-64-32-10, ``interop.harness._mlp_ann``: one seeded pass over the
embedded calibration images; a ReLU appended so that the output layer spikes) converted in
mode 99.9% for rate input with a spike-count readout,
reset to zero and the strict rule ``v > V_th`` (Lava's LIF), ``V[0] = V_th/2``, quantised to
7-bit weights (Lava's mixed-sign 8-bit synapse drops the lowest bit: see ``run_lava.py``), an
18-bit state (Lava's 24-bit ``v`` holds the input shifted by 6 bits) and no biases (``--bias
keep``: 13-bit biases, Lava's ``bias_mant`` with ``bias_exp = 6``); exported,
checked (:func:`exporters.targets.check_file`, ``loihi2``) and simulated from the file
(:func:`exporters.import_nir`, its own rules) on the rate trains of :func:`simulator.rate_spikes`.
``--net cnn``: the seed CNN (shipped weights) with the same settings, its three sum pools folded
into the layers after them (:func:`converter.fold_sum_pools`, as ``convert --target loihi2``
does): lava-nc has no pool process; its ``Conv`` runs the convolutions (``PyConvModelFixed``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from interop.harness import _mlp_ann, run_vendor_reader, vendor_inputs, vendor_main  # noqa: E402

READER = REPO / "interop" / "readers" / "run_lava.py"


def loihi_export(path: Path, T: int = 16, calib: int = 500, bias: str = "none", net: str = "mlp") -> Path:
    """The MLP's (``net="cnn"``: the seed CNN's, pools folded) Loihi-target ``.nir`` at ``path``
    (see the module docstring); ``bias="keep"``: 13-bit biases (``convert --target loihi2
    --target-bias keep``)."""
    from ann2snn.zoo.mnist import load_embedded
    from ann2snn.zoo.mnist_cnn import load_mnist_cnn
    from converter import Converter, fold_sum_pools, quantize
    from exporters import export_nir

    data = load_embedded("calib")
    if net == "cnn":
        ann: torch.nn.Module = load_mnist_cnn()  # ends in a ReLU: its output layer spikes
    else:
        ann = torch.nn.Sequential(_mlp_ann(data.images, data.labels), torch.nn.ReLU())  # a spiking output layer
    images = data.images[:calib]
    settings = {"readout": "spike_count", "encoding": "rate", "reset": "zero", "spike_rule": ">"}
    convert = Converter("99.9%", dataloader=[images], **settings)
    bits = 13 if bias == "keep" else None
    snn = fold_sum_pools(quantize(convert(ann), 7, 18, bias=bias, bias_bits=bits, calibration=images, calibration_T=T))
    return export_nir(snn, path, T=T, input_shape=(1, 28, 28))


def run(
    samples: int, T: int, out: Path | None = None, bias: str = "none", net: str = "mlp", nir_file: Path | None = None
) -> dict:
    """Build (``net`` with ``bias``, :func:`loihi_export`) or take ``nir_file``, check, run both
    sides; the comparison as a dictionary."""
    from exporters import import_nir
    from exporters.targets import check_file
    from simulator import simulate

    folder, images, labels = vendor_inputs(out, samples, T)
    path = nir_file or loihi_export(folder / f"{net}_loihi2.nir", T=T, bias=bias, net=net)
    report = check_file(path, "loihi2")
    result = simulate(import_nir(path), images, T, record=True, warn_silent=False)
    theirs = run_vendor_reader("lava", READER, path, folder, "lava.npz", timeout=3000)
    spikes = {}
    for i, row in enumerate(report.resources):
        ours = result.spikes[row["neuron"]].reshape(T, samples, -1).numpy().astype(np.int64)
        lava = theirs[f"spikes__{i}"].astype(np.int64)
        spikes[row["neuron"]] = {"differing": int(np.abs(ours - lava).sum()), "ours": int(ours.sum())}
    last = report.resources[-1]["neuron"]
    ours_pred = result.spike_counts[last].reshape(samples, -1).argmax(1)
    lava_pred = torch.from_numpy(theirs[f"spikes__{len(report.resources) - 1}"].astype(np.int64).sum(0)).argmax(1)
    return {
        "file": str(path),
        "check": {"fits": report.fits, "violations": [v.line() for v in report.violations], "notes": report.notes},
        "lava": json.loads(str(theirs["info"])),
        "spikes": spikes,
        "accuracy_ours": float((ours_pred == labels).float().mean()),
        "accuracy_lava": float((lava_pred == labels).float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Print :func:`run`'s comparison as JSON (``--bias keep``: biases kept, Lava's ``bias_mant``;
    ``--net cnn``: the seed CNN; ``--nir FILE``: that file instead)."""
    import argparse
    import functools

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--bias", choices=("none", "keep"), default="none")
    parser.add_argument("--net", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--nir", type=Path, default=None, help="a Loihi-target .nir to compare (default: build one)")
    known, rest = parser.parse_known_args(argv)
    run_it = functools.partial(run, bias=known.bias, net=known.net, nir_file=known.nir)
    return vendor_main(run_it, __doc__ or "", rest)


if __name__ == "__main__":
    raise SystemExit(main())
