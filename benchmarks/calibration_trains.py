"""Calibration with kept spike trains against calibration from the start, side by side in one run.

Usage::

    python benchmarks/calibration_trains.py                       # ResNet-20, T = 8, 500 samples
    python benchmarks/calibration_trains.py --T 16 --calibration-samples 2000

Converts the shipped CIFAR-10 ResNet-20 with bias and weight calibration
(``Converter(calibrate_T=T, calibrate_weights=True)``) twice on the same calibration images:
once as the converter does it (each calibration pass keeps the spike trains of the IF layers it
has finished, :class:`converter.calibrate._Trains`), once with
``converter.calibrate.TRAIN_CACHE_BYTES = 0`` (every layer's inputs simulated from the input
again, as before the trains were kept). Prints the seconds of each, their ratio, the largest
difference between the two SNNs' parameters, and both SNNs' accuracy at T on ``--limit`` test
images. Data: the uint8 cache of ``examples/cifar10.py`` (decoded from the JPEG zip in
``../shared`` when missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import converter.calibrate  # noqa: E402
from ann2snn.zoo import load_cifar10_resnet20  # noqa: E402
from converter import Converter  # noqa: E402
from examples.cifar10 import DEFAULT_CACHE, DEFAULT_ZIP, load_cifar10  # noqa: E402
from simulator import accuracy_per_t  # noqa: E402


def spread_images(train: int, test: int) -> tuple[torch.Tensor, torch.utils.data.TensorDataset]:
    """``train`` CIFAR-10 training images ``[train, 3, 32, 32]`` in [0, 1] and ``test`` test
    images with their labels, each spread evenly over its split (the splits are sorted by class)."""
    data = load_cifar10(DEFAULT_ZIP, DEFAULT_CACHE)
    train_x, (test_x, test_y) = data["train"][0], data["test"]
    pick = torch.linspace(0, len(train_x) - 1, train).round().long()
    images = train_x[pick].float() / 255
    pick = torch.linspace(0, len(test_x) - 1, test).round().long()
    return images, torch.utils.data.TensorDataset(test_x[pick].float() / 255, test_y[pick])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=8, help="time steps calibrated for")
    parser.add_argument("--calibration-samples", type=int, default=500)
    parser.add_argument("--limit", type=int, default=1000, help="test images for the accuracy check")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, tests = spread_images(args.calibration_samples, args.limit)
    calib = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train), batch_size=500)
    ann = load_cifar10_resnet20()
    kept_default = converter.calibrate.TRAIN_CACHE_BYTES
    results = {}
    for name, cache_bytes in (("kept trains", kept_default), ("from the start", 0)):
        converter.calibrate.TRAIN_CACHE_BYTES = cache_bytes
        start = time.perf_counter()
        snn = Converter(
            mode="99.9%",
            dataloader=calib,
            channel_wise=True,
            v_init=0.5,
            readout="membrane",
            calibrate_T=args.T,
            calibrate_weights=True,
            calibration_samples=args.calibration_samples,
        )(ann)
        seconds = time.perf_counter() - start
        accuracy = accuracy_per_t(snn, torch.utils.data.DataLoader(tests, batch_size=100), args.T)[-1].item()
        results[name] = (seconds, accuracy, snn.state_dict())
    converter.calibrate.TRAIN_CACHE_BYTES = kept_default
    (fast, acc_fast, kept), (slow, acc_slow, fresh) = results.values()
    diff = max((kept[k].double() - fresh[k].double()).abs().max().item() for k in kept if kept[k].is_floating_point())
    print(
        f"CIFAR-10 ResNet-20, weight calibration for T = {args.T} on {args.calibration_samples} samples, "
        f"{args.threads} threads; accuracy at T on {args.limit} test images"
    )
    print(f"  kept trains:    {fast:8.1f} s   accuracy {acc_fast:.2f} %")
    print(f"  from the start: {slow:8.1f} s   accuracy {acc_slow:.2f} %")
    print(f"  ratio from the start / kept trains: {slow / fast:.2f}; largest parameter difference {diff:.3g}")


if __name__ == "__main__":
    main()
