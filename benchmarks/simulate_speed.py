"""Simulation speed of the converted seed CNN against T dense ANN passes (issue 5).

Prints, from one run: the ANN's forward time over the images; our SNN's time for T steps
(multi-step, constant input, spike-count readout, V[0] = 0); the ratio to T x ANN forward;
the same with early exit; SpikingJelly's time when it is installed; and the peak memory of
one batch at T = 100 and T = 1,000, each in a fresh subprocess. Timings are medians of
``--repeats`` runs.

    python benchmarks/simulate_speed.py                      # 1,000 images, batch 100, T = 50, 2 threads
    python benchmarks/simulate_speed.py --device cuda --batch 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from converter import Converter
from converter.zoo import load_embedded, load_mnist_cnn
from exporters import export_nir, import_nir
from simulator import DEFAULT_STABLE_STEPS, classify, simulate


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: str):
    """``(median wall time of fn() over repeats calls in seconds, fn's result)``, after one
    warm-up call."""
    result = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def ann_pass(ann, batches):
    def run():
        with torch.no_grad():
            return sum(int((ann(x).argmax(1) == y).sum()) for x, y in batches)

    return run


def snn_pass(snn, batches, T: int, **kwargs):
    def run():
        return sum(int(simulate(snn, x, T, **kwargs).correct_per_t(y)[-1]) for x, y in batches)

    return run


def spikingjelly_line() -> str:
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        return "spikingjelly: not installed, comparison skipped"
    return "spikingjelly: installed, but this benchmark has no runner for it yet (comparison skipped)"


def peak_memory_child(nir_path: str, T: int, batch: int, device: str, time_chunk: int) -> dict:
    """In this (fresh) process: simulate one batch for T steps; peak memory in MiB."""
    snn = import_nir(nir_path).to(device)
    x = load_embedded("test").images[:batch].to(device)
    clear = Path("/proc/self/clear_refs")
    before = _rss_mib("VmRSS")
    try:
        clear.write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        pass
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    simulate(snn, x, T, time_chunk=time_chunk)
    out = {"rss_before": before, "rss_peak": _rss_mib("VmHWM")}
    if device.startswith("cuda"):
        out["cuda_peak"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_memory(nir_path: Path, T: int, batch: int, device: str, time_chunk: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", str(nir_path), "--T", str(T), "--batch", str(batch),
           "--device", device, "--time-chunk", str(time_chunk)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--time-chunk", type=int, default=5)
    parser.add_argument("--mode", default="99.9%", help="normalisation mode of the conversion")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-T", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(peak_memory_child(args.memory_child, args.T, args.batch, args.device, args.time_chunk)))
        return
    ann = load_mnist_cnn()
    snn = Converter(mode=args.mode, dataloader=load_embedded("calib").loader(500))(ann).to(args.device)
    ann = ann.to(args.device)
    test = load_embedded("test").subset(args.images)
    batches = [(x.to(args.device), y.to(args.device)) for x, y in test.loader(args.batch)]
    n, T = len(test), args.T

    ann_s, ann_correct = median_time(ann_pass(ann, batches), args.repeats, args.device)
    snn_s, snn_correct = median_time(snn_pass(snn, batches, T, time_chunk=args.time_chunk), args.repeats, args.device)
    ann_acc, snn_acc = 100 * ann_correct / n, 100 * snn_correct / n
    exit_s, early = median_time(lambda: classify(snn, batches, T, time_chunk=args.time_chunk), args.repeats,
                                args.device)

    print(f"seed CNN, mode {args.mode}, {n} MNIST test images, batch {args.batch}, T = {T}, "
          f"time_chunk {args.time_chunk}, {args.threads} threads, device {args.device}, "
          f"medians of {args.repeats} runs")
    print(f"{'what':<44}{'seconds':>10}{'x (T x ANN)':>13}{'accuracy %':>12}")
    print(f"{'ANN forward, 1 pass':<44}{ann_s:>10.3f}{'':>13}{ann_acc:>12.2f}")
    print(f"{f'T x ANN forward (T = {T})':<44}{T * ann_s:>10.3f}{1.0:>13.3f}{'':>12}")
    print(f"{f'our SNN, multi-step, {T} steps':<44}{snn_s:>10.3f}{snn_s / (T * ann_s):>13.3f}{snn_acc:>12.2f}")
    label = f"our SNN, early exit k={DEFAULT_STABLE_STEPS} ({early.mean_steps:.1f} steps)"
    print(f"{label:<44}{exit_s:>10.3f}{exit_s / (T * ann_s):>13.3f}{early.accuracy:>12.2f}")
    print(spikingjelly_line())
    if args.memory_T:
        with tempfile.TemporaryDirectory() as tmp:
            path = export_nir(snn.cpu(), Path(tmp) / "snn.nir", T=T)
            for mem_T in args.memory_T:
                mem = peak_memory(path, mem_T, args.batch, args.device, args.time_chunk)
                extra = mem["rss_peak"] - mem["rss_before"]
                line = (f"peak memory, batch {args.batch}, T = {mem_T:>5}, recording off: "
                        f"RSS {mem['rss_peak']:.0f} MiB ({extra:.0f} MiB above the "
                        f"{mem['rss_before']:.0f} MiB before simulate)")
                if "cuda_peak" in mem:
                    line += f", CUDA {mem['cuda_peak']:.0f} MiB"
                print(line)


if __name__ == "__main__":
    main()
