"""How far an IF layer's simulated spike counts are from what the weight calibration's model
predicts, layer by layer, with and without the bias shift after each fit, side by side in one run.

Usage::

    python benchmarks/calibration_mismatch.py                          # ResNet-20, T = 4, 200 samples
    python benchmarks/calibration_mismatch.py --T 8 --calibration-samples 500 --limit 1000

Converts the shipped CIFAR-10 ResNet-20 with weight calibration for T
(``Converter("99.9%", channel_wise=True, calibrate_T=T, calibrate_weights=True)``) twice on the
same first ``--calibration-samples`` calibration images: with
``calibrate_weights(..., correct_biases=False)`` (the fit alone) and as the converter does it
(each fit followed by the bias shift). Then, on ``--samples`` other training images, for each
IF layer whose producer was fitted: the fit's prediction ``clamp(floor(T z / V_th + v_init), 0, T)``
for the mean current ``z`` (the producer applied to its input's mean over T steps, plus the
shortcut's mean after a residual join) against the simulated counts: the share of neurons where
they differ and the mean of (simulated - predicted) / T; the mean of rate - a and of |rate - a|
against the ANN's activation a in units of the layer's λ (:func:`converter.layer_fidelity`);
then both SNNs' accuracy at T on ``--limit`` test images. Data: the uint8 cache of ``examples/cifar10.py``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import cast

import torch
import torch.fx as fx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibration_trains import spread_images  # noqa: E402

import converter.converter  # noqa: E402
from ann2snn.tables import format_table  # noqa: E402
from ann2snn.zoo import load_cifar10_resnet20  # noqa: E402
from converter import Converter, layer_fidelity  # noqa: E402
from converter.calibrate import _calibrated_producer, _shortcut_operand, _Trains, calibrate_weights  # noqa: E402
from simulator import IFNeuron, accuracy_per_t  # noqa: E402


@torch.no_grad()
def mismatch(snn: fx.GraphModule, x: torch.Tensor, T: int) -> dict[str, tuple[float, float, float]]:
    """IF layer → (share of neurons whose count differs from the prediction, mean (counts -
    predicted) / T) on inputs ``x`` ``[N, 3, 32, 32]``."""
    modules = dict(snn.named_modules())
    trains, result = _Trains(snn, x, T), {}
    for node in snn.graph.nodes:
        found = (
            _calibrated_producer(node, modules)
            if node.target in snn.meta["ann2snn"]["weight_calibrated_layers"]
            else None
        )
        if found is None or not isinstance(modules[node.target], IFNeuron):
            continue
        producer, join = found
        z = modules[producer.target](trains.mean(cast(fx.Node, producer.args[0])))
        if join is not None:
            z = z + trains.mean(_shortcut_operand(join, producer))
        neuron = modules[node.target]
        predicted = torch.floor(T * z / neuron.v_threshold + neuron.v_init).clamp(0, T)
        counts = trains.counts(node)
        difference = counts - predicted
        result[node.target] = ((difference != 0).double().mean().item(), difference.mean().item() / T)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=4, help="time steps calibrated for")
    parser.add_argument("--calibration-samples", type=int, default=200)
    parser.add_argument("--samples", type=int, default=500, help="other training images the counts are measured on")
    parser.add_argument("--limit", type=int, default=1000, help="test images for the accuracy check")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, tests = spread_images(args.calibration_samples + args.samples, args.limit)
    calib, measured = images[: args.calibration_samples], images[args.calibration_samples :]
    ann = load_cifar10_resnet20()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calib), batch_size=500)
    reports, accuracy = {}, {}
    for name, correct in (("fit alone", False), ("fit + bias shift", True)):
        converter.converter.calibrate_weights = functools.partial(calibrate_weights, correct_biases=correct)
        snn = Converter(
            "99.9%",
            dataloader=loader,
            channel_wise=True,
            calibrate_T=args.T,
            calibrate_weights=True,
            calibration_samples=args.calibration_samples,
        )(ann)
        fidelity = {f.layer: f for f in layer_fidelity(ann, snn, measured, T=args.T).layers}
        reports[name] = {
            layer: (*values, fidelity[layer].mean_rate - fidelity[layer].mean_activation, fidelity[layer].mae)
            for layer, values in mismatch(snn, measured, args.T).items()
        }
        accuracy[name] = accuracy_per_t(snn, torch.utils.data.DataLoader(tests, batch_size=100), args.T)[-1].item()
    converter.converter.calibrate_weights = calibrate_weights
    print(
        f"CIFAR-10 ResNet-20, weight calibration for T = {args.T} on {args.calibration_samples} samples, "
        f"counts on {args.samples} other training images; accuracy at T on {args.limit} test images"
    )
    header = ["IF layer"] + [
        f"{n}: {c}" for n in reports for c in ("differ %", "(sim - pred) / T", "rate - a", "|rate - a|")
    ]
    cells = lambda r: (f"{r[0] * 100:.1f}", f"{r[1]:+.4f}", f"{r[2]:+.4f}", f"{r[3]:.4f}")  # noqa: E731
    rows = [[layer, *(c for r in reports.values() for c in cells(r[layer]))] for layer in next(iter(reports.values()))]
    rows.append(["accuracy %", *(c for n in reports for c in (f"{accuracy[n]:.2f}", "", "", ""))])
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
