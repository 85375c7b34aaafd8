"""The quantisation's bias correction three ways, side by side in one run: from the kept spike trains
of the layers before each layer (now), simulated up to each layer, and through the whole network
(as before).

Usage::

    python benchmarks/bias_correction.py                        # ResNet-20, 8-bit, T = 16, 500 samples
    python benchmarks/bias_correction.py --weight-bits 6 --T 8 --calibration-samples 200

Converts the shipped CIFAR-10 ResNet-20 (99.9 %, channel-wise scales) and quantises it as
``ann2snn convert --target int8`` does (``converter.quantize(..., bias="keep",
calibration=...)``), twice on the same calibration images: once as ``quantize`` does it (each
IF layer's bias correction simulates only the part of the network the layer depends on,
``converter.quantize._prefix``), once with ``_prefix`` replaced by the whole network (as before).
Prints the seconds of each, their ratio and whether the two quantised SNNs' parameters are
identical (they must be: the layers before a layer do not depend on the layers after it, and
integer sums are exact in any order). Data: the uint8 cache of ``examples/cifar10.py`` (decoded
from the JPEG zip in ``../shared`` when missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ann2snn.zoo import load_cifar10_resnet20  # noqa: E402
from converter import Converter, quantize  # noqa: E402
from examples.cifar10 import DEFAULT_CACHE, DEFAULT_ZIP, load_cifar10  # noqa: E402
from simulator import simulate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=16, help="time steps of the bias correction")
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--calibration-samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_x = load_cifar10(DEFAULT_ZIP, DEFAULT_CACHE)["train"][0]
    pick = torch.linspace(0, len(train_x) - 1, args.calibration_samples).round().long()
    calib = train_x[pick].float() / 255
    snn = Converter(mode="99.9%", dataloader=[calib], channel_wise=True)(load_cifar10_resnet20())

    def quantised():
        start = time.perf_counter()
        q = quantize(
            snn,
            weight_bits=args.weight_bits,
            state_bits=16,
            bias="keep",
            calibration=calib,
            calibration_T=args.T,
            calibration_samples=args.calibration_samples,
        )
        return time.perf_counter() - start, q.state_dict()

    class WholeNetwork:
        """The correction before: the whole network simulated for each layer's counts."""

        def __init__(self, gm, x, T):
            self.gm, self.x, self.T = gm, x, T

        def counts(self, node):
            return simulate(self.gm, self.x, self.T, warn_silent=False).spike_counts[str(node.target)]

    runs = {"kept spike trains (now)": quantised()}
    with mock.patch("converter.quantize._Trains", lambda gm, x, T: None):
        runs["each layer's part from the input"] = quantised()
    with mock.patch("converter.quantize._Trains", WholeNetwork):
        runs["the whole network for each layer"] = quantised()
    states = [state for _, state in runs.values()]
    same = all(s.keys() == states[0].keys() and all(torch.equal(s[k], states[0][k]) for k in s) for s in states)
    print(
        f"CIFAR-10 ResNet-20, {args.weight_bits}-bit quantisation, bias correction at T = {args.T} on "
        f"{args.calibration_samples} samples, {args.threads} threads"
    )
    now = runs["kept spike trains (now)"][0]
    for name, (seconds, _) in runs.items():
        print(f"  {name:34s} {seconds:8.1f} s   x {seconds / now:.2f}")
    print(f"  parameters identical: {same}")


if __name__ == "__main__":
    main()
