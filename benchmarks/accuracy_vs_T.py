"""Accuracy against time steps T for the shipped seed CNN (or the shipped MNIST ResNet,
``--net resnet``): each low-latency technique added one at a time, side by side in one run.

Usage::

    python benchmarks/accuracy_vs_T.py                 # all 10,000 MNIST test images
    python benchmarks/accuracy_vs_T.py --limit 1000    # quicker
    python benchmarks/accuracy_vs_T.py --net resnet --modes 99.9% --other-modes --T 2 4 8 16

Rows for 'max' and '99.9%': seed behaviour (V[0] = 0, spike-count readout), + half-threshold
start (V[0] = V_th/2), + membrane readout, + channel-wise scales, + calibration for each T
(scale search and bias correction on 500 calibration images, ``--calibrate-samples N`` for
another number), + weight calibration for each T
(Conv/Linear layers fitted on the SNN's own inputs, the readout layer distilled from the ANN).
Other seed modes: seed behaviour and the converter's defaults (half-threshold start, membrane
readout) with and without every other technique: for fraction modes, channel-wise scales clip
every channel at that fraction of its own max, which can cost accuracy. Rows without
calibration come from one run of max(T) steps (the accuracy at t only depends on steps 1..t);
calibrated rows convert and run once per T. ``--burst`` adds, for each mode, the weight
calibration row with burst neurons (``spike_rule="multi"``, off by default: not every chip takes several
spikes per step), ``--signed`` the same row with signed neurons (``spike_rule="signed"``, off by default:
Speck sends no signed events) and ``--v-init V`` sets V[0] of every row after the seed's (default 0.5).
When ``spikingjelly`` (2.0) is importable (``bash interop/setup.sh spikingjelly``, then run with
``$ANN2SNN_INTEROP_VENVS/spikingjelly/bin/python``), SpikingJelly's rows follow on the same
weights, calibration loader (500-image batches of the 4,000 training images) and test images:
its tutorial conversion in every mode above (``RateCodingRecipe(loader, mode)``: layer-wise
scales, V[0] = 0, its readout = argmax of the output summed over t) and its strongest
rate-coding recipe (``mode='99.9%', channel_wise=True, half_threshold=True``).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from ann2snn.tables import format_table
from ann2snn.zoo import load_embedded, load_mnist_cnn, load_mnist_resnet, read_mnist_folder
from converter import Converter
from simulator import accuracy_per_t

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
SEED = {"v_init": 0.0, "readout": "spike_count"}
STEPS = [
    ("seed", SEED),
    ("+ half-threshold start", {"v_init": 0.5, "readout": "spike_count"}),
    ("+ membrane readout", {"v_init": 0.5, "readout": "membrane"}),
    ("+ channel-wise", {"v_init": 0.5, "readout": "membrane", "channel_wise": True}),
    ("+ calibration", {"v_init": 0.5, "readout": "membrane", "channel_wise": True, "calibrate": True}),
    (
        "+ weight calibration",
        {"v_init": 0.5, "readout": "membrane", "channel_wise": True, "calibrate": True, "calibrate_weights": True},
    ),
]
DEFAULTS = ("defaults", STEPS[2][1])
ALL = ("all techniques", STEPS[-1][1])


def row(ann, calib, test, mode: str, options: dict, Ts: list[int], batch: int, samples: int = 500) -> list[float]:
    options = dict(options)
    if options.get("calibrate"):
        options["calibration_samples"] = samples
    if not options.pop("calibrate", False):
        snn = Converter(mode=mode, dataloader=calib.loader(500), **options)(ann)
        acc = accuracy_per_t(snn, test.loader(batch), max(Ts))
        return [acc[T - 1].item() for T in Ts]
    out = []
    for T in Ts:
        snn = Converter(mode=mode, dataloader=calib.loader(500), calibrate_T=T, **options)(ann)
        out.append(accuracy_per_t(snn, test.loader(batch), T)[-1].item())
    return out


def spikingjelly_mode(mode: str) -> str | float:
    """Our mode string as SpikingJelly's ``RateCodingRecipe`` takes it: ``'max'``, a percentile
    string, or a fraction of the max as a float (``'1/2'`` -> 0.5)."""
    if "/" in mode:
        num, den = mode.split("/")
        return float(num) / float(den)
    return mode


def spikingjelly_accuracy_per_t(snn, loader, T: int) -> list[float]:
    """SpikingJelly's tutorial readout: the class is the argmax of the model's output summed over
    steps 1..t (its output is the last IF layer's spikes times its scale). Multi-step mode, the
    constant input repeated T times; the net is reset before every batch."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(snn, "m")
    correct, n = torch.zeros(T), 0
    with torch.no_grad():
        for x, y in loader:
            functional.reset_net(snn)
            out = snn(x.unsqueeze(0).expand(T, *x.shape).contiguous())  # [T, B, 10]
            correct += (out.cumsum(0).argmax(2) == y).sum(1).float()
            n += len(y)
    return (correct * 100.0 / n).tolist()


def spikingjelly_rows(ann, calib, test, Ts, batch, modes: list[str]) -> list[list]:
    """SpikingJelly 2.0's rows on the same weights, calibration loader and test images: its
    tutorial conversion (``RateCodingRecipe(loader, mode)``: layer-wise scales, IF neurons with
    reset by subtraction starting at 0) in every mode, and its strongest rate-coding recipe
    (99.9 %, channel-wise scales, neurons starting at half the threshold). One run of max(T)
    steps per row. Its statistics are momentum averages (0.1) of per-batch maxima or
    percentiles, so they depend on the batch size (500 here, as ours) and order."""
    try:
        from spikingjelly.activation_based.ann2snn import Converter as SJConverter
        from spikingjelly.activation_based.ann2snn import RateCodingRecipe
    except ImportError:
        print("spikingjelly is not installed: its rows are skipped")
        return []
    plan = [(mode, "SpikingJelly", {"mode": spikingjelly_mode(mode)}) for mode in modes]
    plan.append(
        (
            "99.9%",
            "SpikingJelly channel-wise + half threshold",
            {"mode": "99.9%", "channel_wise": True, "half_threshold": True},
        )
    )
    rows = []
    for mode, name, options in plan:
        t0 = time.perf_counter()
        recipe = RateCodingRecipe(calib.loader(500), **options)
        snn = SJConverter(recipe=recipe).convert(copy.deepcopy(ann)).eval()
        acc = spikingjelly_accuracy_per_t(snn, test.loader(batch), max(Ts))
        accs = [acc[T - 1] for T in Ts]
        rows.append([mode, name, *accs, time.perf_counter() - t0])
        print(f"{mode} {name}: {[round(a, 2) for a in accs]} ({rows[-1][-1]:.0f} s)", flush=True)
    return rows


NETS = {"cnn": ("seed CNN", load_mnist_cnn), "resnet": ("MNIST ResNet", load_mnist_resnet)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 50])
    parser.add_argument("--modes", nargs="*", default=["max", "99.9%"], help="modes with every technique's row")
    parser.add_argument(
        "--other-modes",
        nargs="*",
        default=["1/2", "1/3", "1/4", "1/5"],
        help="modes with the seed, defaults and all-techniques rows only",
    )
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--net", choices=list(NETS), default="cnn", help="which shipped MNIST network")
    parser.add_argument("--calibrate-samples", type=int, default=500, help="samples the calibration rows fit on")
    parser.add_argument("--burst", action="store_true", help="add the weight-calibration row with burst neurons")
    parser.add_argument("--signed", action="store_true", help="add the weight-calibration row with signed neurons")
    parser.add_argument("--v-init", type=float, default=0.5, help="V[0] / V_th of the rows after the seed's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ann = NETS[args.net][1]()
    test = read_mnist_folder(SHARED, "test") if SHARED.exists() else load_embedded("test")
    test = test.subset(args.limit)
    calib = load_embedded("calib")
    with torch.no_grad():
        ann_acc = sum((ann(x).argmax(1) == y).sum().item() for x, y in test.loader(1000)) * 100.0 / len(test)
    start = time.perf_counter()
    steps = list(STEPS)
    if args.burst:
        steps.append(("+ burst neurons (off by default)", {**STEPS[-1][1], "spike_rule": "multi"}))
    if args.signed:
        steps.append(("+ signed neurons (off by default)", {**STEPS[-1][1], "spike_rule": "signed"}))

    def v0(opts: dict) -> dict:  # V[0] of every row after the seed's
        return opts if opts is SEED else {**opts, "v_init": args.v_init}

    plan = [(m, name, v0(opts)) for m in args.modes for name, opts in steps]
    plan += [(m, name, v0(opts)) for m in args.other_modes for name, opts in (STEPS[0], DEFAULTS, ALL)]
    # SpikingJelly's rows first (printed as they finish), listed after ours in the table
    sj_rows = spikingjelly_rows(ann, calib, test, args.T, args.batch, [*args.modes, *args.other_modes])
    rows = []
    for mode, name, options in plan:
        t0 = time.perf_counter()
        accs = row(ann, calib, test, mode, options, args.T, args.batch, args.calibrate_samples)
        rows.append([mode, name, *accs, time.perf_counter() - t0])
        print(f"{mode} {name}: {[round(a, 2) for a in accs]} ({rows[-1][-1]:.0f} s)", flush=True)
    rows += sj_rows
    print(
        f"\n{NETS[args.net][0]}, ANN accuracy {ann_acc:.2f} % on {len(test)} MNIST test images; "
        f"calibration data: {len(calib)} training images ({args.calibrate_samples} for the calibration rows), "
        f"V[0] = {args.v_init} V_th after the seed row; total {time.perf_counter() - start:.0f} s"
    )
    print(format_table(["mode", "technique", *(f"T={T}" for T in args.T), "seconds"], rows))


if __name__ == "__main__":
    main()
