"""Accuracy against time steps T for the shipped seed CNN: each low-latency technique added
one at a time, side by side in one run.

Usage::

    python benchmarks/accuracy_vs_T.py                 # all 10,000 MNIST test images
    python benchmarks/accuracy_vs_T.py --limit 1000    # quicker

Rows for 'max' and '99.9%': seed behaviour (V[0] = 0, spike-count readout), + half-threshold
start (V[0] = V_th/2), + membrane readout, + channel-wise scales, + calibration for each T
(scale search and bias correction on 500 calibration images). Other seed modes: seed behaviour
and the converter's defaults (half-threshold start, membrane readout) with and without every
other technique: for fraction modes, channel-wise scales clip every channel at that fraction of
its own max, which can cost accuracy. Rows without calibration come from one run of max(T) steps (the
accuracy at t only depends on steps 1..t); calibrated rows convert and run once per T.
SpikingJelly's rows are added when ``spikingjelly`` is installed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from converter import Converter
from converter.cli.report import format_table
from converter.zoo import load_embedded, load_mnist_cnn, read_mnist_folder
from simulator import accuracy_per_t

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
SEED = {"v_init": 0.0, "readout": "spike_count"}
STEPS = [
    ("seed", SEED),
    ("+ half-threshold start", {"v_init": 0.5, "readout": "spike_count"}),
    ("+ membrane readout", {"v_init": 0.5, "readout": "membrane"}),
    ("+ channel-wise", {"v_init": 0.5, "readout": "membrane", "channel_wise": True}),
    ("+ calibration", {"v_init": 0.5, "readout": "membrane", "channel_wise": True, "calibrate": True}),
]
DEFAULTS = ("defaults", STEPS[2][1])
ALL = ("all techniques", STEPS[-1][1])


def row(ann, calib, test, mode: str, options: dict, Ts: list[int], batch: int) -> list[float]:
    options = dict(options)
    if not options.pop("calibrate", False):
        snn = Converter(mode=mode, dataloader=calib.loader(500), **options)(ann)
        acc = accuracy_per_t(snn, test.loader(batch), max(Ts))
        return [acc[T - 1].item() for T in Ts]
    out = []
    for T in Ts:
        snn = Converter(mode=mode, dataloader=calib.loader(500), calibrate_T=T, **options)(ann)
        out.append(accuracy_per_t(snn, test.loader(batch), T)[-1].item())
    return out


def spikingjelly_rows(ann, calib, test, Ts, batch) -> list[list]:
    try:
        from spikingjelly.activation_based.ann2snn import Converter as SJConverter  # noqa: F401
    except ImportError:
        print("spikingjelly is not installed: its rows are skipped")
        return []
    print("spikingjelly rows: not implemented in this version of the benchmark")
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 50])
    parser.add_argument("--modes", nargs="*", default=["max", "99.9%"], help="modes with every technique's row")
    parser.add_argument("--other-modes", nargs="*", default=["1/2", "1/3", "1/4", "1/5"],
                        help="modes with the seed, defaults and all-techniques rows only")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ann = load_mnist_cnn()
    test = read_mnist_folder(SHARED, "test") if SHARED.exists() else load_embedded("test")
    test = test.subset(args.limit)
    calib = load_embedded("calib")
    with torch.no_grad():
        ann_acc = sum((ann(x).argmax(1) == y).sum().item() for x, y in test.loader(1000)) * 100.0 / len(test)
    start = time.perf_counter()
    plan = [(m, name, opts) for m in args.modes for name, opts in STEPS]
    plan += [(m, name, opts) for m in args.other_modes for name, opts in (STEPS[0], DEFAULTS, ALL)]
    rows = []
    for mode, name, options in plan:
        t0 = time.perf_counter()
        accs = row(ann, calib, test, mode, options, args.T, args.batch)
        rows.append([mode, name, *accs, time.perf_counter() - t0])
        print(f"{mode} {name}: {[round(a, 2) for a in accs]} ({rows[-1][-1]:.0f} s)", flush=True)
    rows += spikingjelly_rows(ann, calib, test, args.T, args.batch)
    print(f"\nseed CNN, ANN accuracy {ann_acc:.2f} % on {len(test)} MNIST test images; "
          f"calibration data: {len(calib)} training images; total {time.perf_counter() - start:.0f} s")
    print(format_table(["mode", "technique", *(f"T={T}" for T in args.T), "seconds"], rows))


if __name__ == "__main__":
    main()
