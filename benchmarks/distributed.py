"""One process × 2 threads against 2 processes × 1 thread (torchrun, gloo): wall time side by side,
and whether the two runs' results are the same.

Usage::

    python benchmarks/distributed.py                       # all 10,000 embedded test images
    python benchmarks/distributed.py --limit 1000 --T 8    # a quick look

Runs ``ann2snn convert`` twice on the shipped seed CNN (4,000 embedded calibration images,
modes ``max`` and ``99.9%``, T = 8 and 32, ``--calibrate``): once as one process with
``OMP_NUM_THREADS=2``, once as ``torchrun --nproc_per_node=2`` with ``OMP_NUM_THREADS=1``, each
into its own folder. Then it compares, combination by combination, the accuracy at every t
(``accuracy_per_t``), the scales λ (``lambdas`` in the metadata) and every array of the two
``.nir`` files (weights, biases, thresholds, the embedded reference output), and prints the
wall times with the machine's load average before each run. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "ann2snn" / "zoo" / "data" / "mnist_cnn.pt"


def convert_args(out: Path, args: argparse.Namespace) -> list[str]:
    modes = [part for mode in args.modes for part in ("--mode", mode)]
    steps = [part for T in args.T for part in ("--T", str(T))]
    return [
        "-m",
        "ann2snn.cli",
        "convert",
        "--model",
        "ann2snn.zoo.mnist_cnn:MnistCNN",
        "--weights",
        str(WEIGHTS),
        "--name",
        "mnist_cnn",
        *modes,
        *steps,
        "--calibrate",
        "--calib-size",
        "4000",
        "--limit",
        str(args.limit),
        "--out",
        str(out),
        "--quiet",
        "--json",
    ]


def timed(command: list[str], threads: int) -> tuple[float, str, dict]:
    """Run ``command`` with ``threads`` OpenMP threads; its wall seconds, the 1-minute load average
    before it, and its JSON summary."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load = f"{os.getloadavg()[0]:.2f}"
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, load, json.loads(done.stdout[done.stdout.index("{") :])


def arrays(path: Path) -> dict[str, object]:
    """Every dataset of a .nir file by its path in the file."""
    found: dict[str, object] = {}

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return a == b


def lambdas(values: dict[str, object]) -> dict[str, float]:
    text = values["node/metadata/lambdas"]
    return json.loads(text.decode() if isinstance(text, bytes) else str(text))


def compare(one: dict, two: dict) -> list[list[str]]:
    """One line per combination: accuracy per t, scales and .nir arrays equal or not."""
    lines = []
    for a, b in zip(one["rows"], two["rows"], strict=True):
        fa, fb = arrays(Path(a["file"])), arrays(Path(b["file"]))
        differ = sorted(k for k in fa.keys() | fb.keys() if k not in fa or k not in fb or not same(fa[k], fb[k]))
        la, lb = lambdas(fa), lambdas(fb)
        worst = max(abs(la[k] - lb[k]) / la[k] for k in la) if la.keys() == lb.keys() else float("inf")
        lines.append(
            [
                f"{a['mode']} T={a['T']}",
                f"{a['snn_accuracy']:.2f} / {b['snn_accuracy']:.2f}",
                "equal" if a["accuracy_per_t"] == b["accuracy_per_t"] else "DIFFER",
                "bit-equal" if la == lb else f"max rel. diff {worst:.2g}",
                f"{len(fa)} equal" if not differ else f"{len(differ)} differ: {', '.join(differ[:3])}",
            ]
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--modes", nargs="+", default=["max", "99.9%"])
    parser.add_argument("--T", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--two-first", action="store_true", help="run the 2-process case first")
    args = parser.parse_args()
    torchrun = Path(sys.executable).with_name("torchrun")
    with tempfile.TemporaryDirectory() as tmp:
        one_cmd = [sys.executable, *convert_args(Path(tmp) / "one", args)]
        two_cmd = [str(torchrun), "--nproc_per_node=2", *convert_args(Path(tmp) / "two", args)]
        if args.two_first:
            two_s, two_load, two = timed(two_cmd, threads=1)
            one_s, one_load, one = timed(one_cmd, threads=2)
        else:
            one_s, one_load, one = timed(one_cmd, threads=2)
            two_s, two_load, two = timed(two_cmd, threads=1)
        lines = compare(one, two)
    settings = two["settings"]
    print(
        f"seed CNN, {settings['calibration_samples']} calibration images, {settings['evaluation_samples']} test "
        f"images, --calibrate, modes {' '.join(args.modes)}, T {' '.join(map(str, args.T))}; "
        f"2 processes: {settings['evaluation_samples_per_rank']} test and "
        f"{settings['calibration_samples_per_rank']} calibration images per rank"
    )
    print("| run | wall s | load avg (1 min) before |")
    print("|:--|--:|--:|")
    print(f"| 1 process x 2 threads | {one_s:.1f} | {one_load} |")
    print(f"| 2 processes x 1 thread (torchrun, gloo) | {two_s:.1f} | {two_load} |")
    print()
    print("| combination | SNN % (1 proc / 2 procs) | accuracy per t | scales λ | .nir arrays |")
    print("|:--|--:|:--|:--|:--|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
