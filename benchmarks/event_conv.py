"""Would an event-driven convolution beat oneDNN's dense one on spikes? Side by side in one run.

The multi-step simulator runs each convolution densely on the steps' 0/1 spikes (float32,
channels-last, oneDNN). An event-driven kernel adds, for every input spike, its ``KH x KW x
C_out`` weights to the outputs it reaches, skipping the zeros. This script compiles such a kernel
(C, OpenMP, channels-last, ``gcc -O3 -march=native``; a measurement, not product code) and times
it against ``F.conv2d`` on random spikes at the CIFAR-10 ResNet-20's shapes (3 x 3, stride 1,
padding 1) and spike rates (13 % is its mean over the IF layers at T = 16; 4-23 % per layer),
printing the milliseconds (best of 7), the speed-up and the largest difference of the outputs
(float32 sums in another order). Needs ``gcc``; exits with a message without it.

    python benchmarks/event_conv.py                 # batch 200, 2 threads
    python benchmarks/event_conv.py --threads 1 --batch 100
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ann2snn.tables import format_table  # noqa: E402

KERNEL = r"""
#include <stdint.h>
#include <stddef.h>
void evconv(const uint8_t* s, int N, int H, int W, int Cin, const float* w, int KH, int KW,
            int pad, int stride, float* out, int Ho, int Wo, int Cout) {
  #pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int y = 0; y < H; y++) for (int x = 0; x < W; x++) {
      const uint8_t* sp = s + (((size_t)n * H + y) * W + x) * Cin;
      for (int ci = 0; ci < Cin; ci++) {
        if (!sp[ci]) continue;
        for (int ky = 0; ky < KH; ky++) {
          int t = y + pad - ky; if (t < 0 || t % stride) continue; int oy = t / stride; if (oy >= Ho) continue;
          for (int kx = 0; kx < KW; kx++) {
            int u = x + pad - kx; if (u < 0 || u % stride) continue; int ox = u / stride; if (ox >= Wo) continue;
            float* o = out + (((size_t)n * Ho + oy) * Wo + ox) * Cout;
            const float* wp = w + (((size_t)ky * KW + kx) * Cin + ci) * Cout;
            for (int co = 0; co < Cout; co++) o[co] += wp[co];
          }
        }
      }
    }
}
"""

#: (channels in = out, height = width, spike rate): the ResNet-20's three stages
SHAPES = [(16, 32, 0.13), (32, 16, 0.13), (64, 8, 0.07), (16, 32, 0.20)]
HEADER = ["C_in = C_out", "H = W", "rate", "oneDNN dense ms", "event-driven ms", "speed-up", "max |d out|"]


def compile_kernel(folder: Path) -> ctypes.CDLL:
    source, library = folder / "evconv.c", folder / "libevconv.so"
    source.write_text(KERNEL)
    flags = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-ffp-contract=off"]
    subprocess.run(["gcc", *flags, str(source), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library))


def best_ms(f, n: int = 7) -> float:
    f()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def measure(lib: ctypes.CDLL, b: int, c: int, h: int, rate: float) -> list:
    """One row: dense and event-driven 3 x 3 convolution of ``[b, c, h, h]`` random spikes."""
    ptr = ctypes.c_void_p
    spikes = (torch.rand(b, c, h, h) < rate).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, 3, padding=1)
    weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
    bias = conv.bias.detach()
    floats = spikes.float().contiguous(memory_format=torch.channels_last)
    events = spikes.permute(0, 2, 3, 1)  # [B, H, W, C], contiguous
    w = conv.weight.detach().permute(2, 3, 1, 0).contiguous()  # [KH, KW, C_in, C_out]
    out = torch.empty(b, h, h, c)

    def event_driven() -> None:
        out.copy_(bias.expand(b, h, h, c))
        lib.evconv(ptr(events.data_ptr()), b, h, h, c, ptr(w.data_ptr()), 3, 3, 1, 1, ptr(out.data_ptr()), h, h, c)

    def dense() -> torch.Tensor:
        return torch.nn.functional.conv2d(floats, weight, bias, padding=1)

    with torch.no_grad():
        dense_ms, event_ms = best_ms(dense), best_ms(event_driven)
        difference = (dense().permute(0, 2, 3, 1) - out).abs().max().item()
    return [c, h, rate, dense_ms, event_ms, dense_ms / event_ms, difference]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("gcc") is None:
        raise SystemExit("event_conv.py needs gcc to compile its kernel")
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the kernel's OpenMP at its first call
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        lib = compile_kernel(Path(tmp))
        rows = [measure(lib, args.batch, c, h, rate) for c, h, rate in SHAPES]
    print(f"batch {args.batch}, {args.threads} thread(s), best of 7, random spikes, 3 x 3 convolution, padding 1")
    print(format_table(HEADER, rows))


if __name__ == "__main__":
    main()
