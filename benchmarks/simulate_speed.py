"""Simulation speed of the converted seed CNN against T dense ANN passes.

Prints, from one run: the ANN's forward time over the images; our SNN's time for T steps
(multi-step, constant input, the converter's defaults: V[0] = V_th/2, membrane readout); the
ratio to T x ANN forward; the same with early exit; when ``spikingjelly`` is installed, our
SNN under the seed's settings (V[0] = 0, spike-count readout) side by side with SpikingJelly
2.0's conversion of the same weights (its ``RateCodingRecipe`` in the same mode, same
calibration loader, images, batches and threads; multi-step, and with
``--spikingjelly-single-step`` its tutorial's step loop too): seconds, images/s, accuracy,
spikes per image and our speed-up (the runners timed in interleaved rounds; the speed-up is
the median of the rounds' ratios); and the peak memory of one batch at T = 100 and
T = 1,000, each in a fresh subprocess. Timings are medians of ``--repeats`` runs, each after
one warm-up run.

    python benchmarks/simulate_speed.py                      # 1,000 images, batch 100, T = 50, 2 threads
    python benchmarks/simulate_speed.py --device cuda --batch 1000
    $ANN2SNN_INTEROP_VENVS/spikingjelly/bin/python benchmarks/simulate_speed.py --spikingjelly-single-step
"""

from __future__ import annotations

import argparse
import copy
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


def spikingjelly_snn(ann, calib_loader, mode: str):
    """SpikingJelly 2.0's conversion of ``ann`` (its tutorial recipe: layer-wise scales, IF
    neurons with reset by subtraction, V[0] = 0), or None when it is not installed."""
    try:
        from spikingjelly.activation_based.ann2snn import Converter as SJConverter
        from spikingjelly.activation_based.ann2snn import RateCodingRecipe
    except ImportError:
        return None
    if "/" in mode:  # SpikingJelly takes a fraction of the max as a float
        num, den = mode.split("/")
        mode = float(num) / float(den)
    return SJConverter(recipe=RateCodingRecipe(calib_loader, mode=mode)).convert(copy.deepcopy(ann)).eval()


def spikingjelly_pass(snn, batches, T: int, step_mode: str):
    """Run SpikingJelly's SNN the way its API offers: ``"m"`` (multi-step: every layer once on
    the input repeated T times, ``[T, B, ...]``) or ``"s"`` (its tutorial loop: one call per
    step). Readout: argmax of the output summed over T (spike counts times the last layer's
    scale), as in its tutorial; the net is reset before every batch."""
    from spikingjelly.activation_based import functional

    def run():
        functional.set_step_mode(snn, step_mode)
        correct = 0
        with torch.no_grad():
            for x, y in batches:
                functional.reset_net(snn)
                if step_mode == "m":
                    out = snn(x.unsqueeze(0).expand(T, *x.shape).contiguous()).sum(0)
                else:
                    out = snn(x)
                    for _ in range(T - 1):
                        out = out + snn(x)
                correct += int((out.argmax(1) == y).sum())
        return correct

    return run


def spikingjelly_spikes(snn, batches, T: int) -> float:
    """SpikingJelly's spikes per image over T steps (all IF layers), counted by forward hooks
    in an untimed multi-step run."""
    from spikingjelly.activation_based import neuron

    total = [0.0]
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: total.__setitem__(0, total[0] + float(out.sum())))
        for m in snn.modules()
        if isinstance(m, neuron.IFNode)
    ]
    try:
        spikingjelly_pass(snn, batches, T, "m")()
    finally:
        for h in hooks:
            h.remove()
    return total[0] / sum(len(y) for _, y in batches)


def spikingjelly_comparison(ann, calib_loader, batches, args) -> list[str]:
    """Lines comparing our simulator with SpikingJelly's on the same weights, mode, calibration
    loader, images, batches and threads, both under the seed's settings (V[0] = 0, spike-count
    readout). ``ann`` is on the CPU; both SNNs are converted there and moved to the device."""
    sj = spikingjelly_snn(ann, calib_loader, args.mode)
    if sj is None:
        return ["spikingjelly: not installed, comparison skipped"]
    import importlib.metadata

    version = importlib.metadata.version("spikingjelly")
    n, T = sum(len(y) for _, y in batches), args.T
    ours = Converter(mode=args.mode, dataloader=calib_loader, v_init=0.0, readout="spike_count")(ann).to(args.device)
    sj = sj.to(args.device)
    ours_spikes = (
        sum(
            float(c.sum())
            for x, _ in batches
            for c in simulate(ours, x, T, time_chunk=args.time_chunk).spike_counts.values()
        )
        / n
    )
    sj_spikes = spikingjelly_spikes(sj, batches, T)
    runs = {"ours": snn_pass(ours, batches, T, time_chunk=args.time_chunk), "m": spikingjelly_pass(sj, batches, T, "m")}
    if args.spikingjelly_single_step:
        runs["s"] = spikingjelly_pass(sj, batches, T, "s")
    # interleaved: each round times every runner back to back, so that a change in the
    # machine's load hits all of them alike; the speed-up is the median of the rounds' ratios
    correct = {key: fn() for key, fn in runs.items()}  # warm-up
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, fn in runs.items():
            _sync(args.device)
            start = time.perf_counter()
            correct[key] = fn()
            _sync(args.device)
            times[key].append(time.perf_counter() - start)
    med = {key: statistics.median(t) for key, t in times.items()}
    lines = [
        f"side by side with SpikingJelly {version} (RateCodingRecipe(mode={args.mode!r})), "
        f"both V[0] = 0 and spike-count readout, T = {T}, medians of {args.repeats} interleaved runs:",
        f"{'what':<44}{'seconds':>10}{'images/s':>10}{'accuracy %':>12}{'spikes/image':>14}{'our speed-up':>14}",
        f"{'our SNN, multi-step, seed settings':<44}{med['ours']:>10.3f}{n / med['ours']:>10.0f}"
        f"{100 * correct['ours'] / n:>12.2f}{ours_spikes:>14.0f}{'':>14}",
    ]
    labels = {"m": "multi-step", "s": "single-step (tutorial loop)"}
    for key in [k for k in runs if k != "ours"]:
        speedup = statistics.median(sj_t / our_t for sj_t, our_t in zip(times[key], times["ours"], strict=True))
        lines.append(
            f"{'SpikingJelly, ' + labels[key]:<44}{med[key]:>10.3f}{n / med[key]:>10.0f}"
            f"{100 * correct[key] / n:>12.2f}{sj_spikes:>14.0f}{speedup:>13.2f}x"
        )
    return lines


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
    cmd = [
        sys.executable,
        __file__,
        "--memory-child",
        str(nir_path),
        "--T",
        str(T),
        "--batch",
        str(batch),
        "--device",
        device,
        "--time-chunk",
        str(time_chunk),
    ]
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
    parser.add_argument(
        "--spikingjelly-single-step",
        action="store_true",
        help="also time SpikingJelly's single-step loop (its tutorial's; about 3x slower)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(peak_memory_child(args.memory_child, args.T, args.batch, args.device, args.time_chunk)))
        return
    ann = load_mnist_cnn()
    calib = load_embedded("calib").loader(500)
    snn = Converter(mode=args.mode, dataloader=calib)(ann).to(args.device)
    ann = ann.to(args.device)
    test = load_embedded("test").subset(args.images)
    batches = [(x.to(args.device), y.to(args.device)) for x, y in test.loader(args.batch)]
    n, T = len(test), args.T

    ann_s, ann_correct = median_time(ann_pass(ann, batches), args.repeats, args.device)
    snn_s, snn_correct = median_time(snn_pass(snn, batches, T, time_chunk=args.time_chunk), args.repeats, args.device)
    ann_acc, snn_acc = 100 * ann_correct / n, 100 * snn_correct / n
    exit_s, early = median_time(
        lambda: classify(snn, batches, T, time_chunk=args.time_chunk), args.repeats, args.device
    )

    print(
        f"seed CNN, mode {args.mode}, {n} MNIST test images, batch {args.batch}, T = {T}, "
        f"time_chunk {args.time_chunk}, {args.threads} threads, device {args.device}, "
        f"medians of {args.repeats} runs"
    )
    print(f"{'what':<44}{'seconds':>10}{'x (T x ANN)':>13}{'accuracy %':>12}")
    print(f"{'ANN forward, 1 pass':<44}{ann_s:>10.3f}{'':>13}{ann_acc:>12.2f}")
    print(f"{f'T x ANN forward (T = {T})':<44}{T * ann_s:>10.3f}{1.0:>13.3f}{'':>12}")
    print(f"{f'our SNN, multi-step, {T} steps':<44}{snn_s:>10.3f}{snn_s / (T * ann_s):>13.3f}{snn_acc:>12.2f}")
    label = f"our SNN, early exit k={DEFAULT_STABLE_STEPS} ({early.mean_steps:.1f} steps)"
    print(f"{label:<44}{exit_s:>10.3f}{exit_s / (T * ann_s):>13.3f}{early.accuracy:>12.2f}")
    for line in spikingjelly_comparison(load_mnist_cnn(), calib, batches, args):  # converted on the CPU
        print(line)
    if args.memory_T:
        with tempfile.TemporaryDirectory() as tmp:
            path = export_nir(snn.cpu(), Path(tmp) / "snn.nir", T=T)
            for mem_T in args.memory_T:
                mem = peak_memory(path, mem_T, args.batch, args.device, args.time_chunk)
                extra = mem["rss_peak"] - mem["rss_before"]
                line = (
                    f"peak memory, batch {args.batch}, T = {mem_T:>5}, recording off: "
                    f"RSS {mem['rss_peak']:.0f} MiB ({extra:.0f} MiB above the "
                    f"{mem['rss_before']:.0f} MiB before simulate)"
                )
                if "cuda_peak" in mem:
                    line += f", CUDA {mem['cuda_peak']:.0f} MiB"
                print(line)


if __name__ == "__main__":
    main()
