"""Conversion cost of a percentile mode against 'max', side by side in one run.

Usage::

    python benchmarks/calibration_cost.py                # the 60,000 MNIST training images
    python benchmarks/calibration_cost.py --limit 10000

Converts the shipped seed CNN with mode 'max' and mode '99.9%', calibrating on the same images,
``--repeats`` times each (alternating), and prints the median seconds and their ratio. The
percentile's extra cost is one integer shift and one ``bincount`` per activation
(:mod:`converter.statistics`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from ann2snn.zoo import load_embedded, load_mnist_cnn, read_mnist_folder
from converter import Converter

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="calibration images (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = read_mnist_folder(SHARED, "train") if SHARED.exists() else load_embedded("calib")
    data = data.subset(args.limit)
    ann = load_mnist_cnn()
    times: dict[str, list[float]] = {"max": [], "99.9%": []}
    for _ in range(args.repeats):
        for mode in times:
            start = time.perf_counter()
            Converter(mode=mode, dataloader=data.loader(args.batch))(ann)
            times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(t) for mode, t in times.items()}
    print(
        f"seed CNN, calibration on {len(data)} images, batch {args.batch}, {args.threads} threads, "
        f"median of {args.repeats}"
    )
    for mode, seconds in medians.items():
        print(f"  mode {mode:>6}: {seconds:7.2f} s")
    print(f"  ratio 99.9% / max: {medians['99.9%'] / medians['max']:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
