"""What ``torch.compile`` gives a converted SNN on the CPU (issue 16 item 6), side by side in one run:
the seed CNN (default conversion), 20 images, T = 8, our multi-step simulation eagerly and with
the model compiled (inductor, the default backend), and the per-step loop (``execution="single"``)
eagerly and compiled. For the compiled runs the first call (compilation + run) and the best of 3
later calls are timed; the outputs are compared with the eager ones.

Usage: ``PYTHONPATH=. python benchmarks/compile.py [--threads 2]``
"""

import argparse
import time

import torch

from ann2snn.zoo import load_embedded, load_mnist_cnn
from converter import Converter
from simulator import simulate

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--images", type=int, default=20)
parser.add_argument("--T", type=int, default=8)
args = parser.parse_args()
torch.set_num_threads(args.threads)
snn = Converter(mode="99.9%", dataloader=load_embedded("calib").loader(500))(load_mnist_cnn())
x = load_embedded("test").images[: args.images]


def timed(model, execution):
    t = time.perf_counter()
    out = simulate(model, x, args.T, execution=execution).outputs
    return time.perf_counter() - t, out


def best(model, execution, rounds=3):
    return min(timed(model, execution)[0] for _ in range(rounds))


setting = f"{args.images} images, T={args.T}, {args.threads} threads"
print(f"| run ({setting}) | first call s | best later s | x eager multi | output equal |")
print("|---|---:|---:|---:|---|")
eager_s, reference = timed(snn, "multi")
eager_s = min(eager_s, best(snn, "multi"))
print(f"| eager, multi-step (default) | | {eager_s:.3f} | 1.00 | |")
for execution in ("single", "multi"):
    if execution == "single":
        s = best(snn, "single")
        print(f"| eager, per step | | {s:.3f} | {s / eager_s:.2f} | |")
    torch._dynamo.reset()
    compiled = torch.compile(snn)
    first, out = timed(compiled, execution)
    later = best(compiled, execution)
    equal = "yes" if torch.equal(out, reference) else f"max diff {float((out - reference).abs().max()):.2g}"
    name = "per step" if execution == "single" else "multi-step"
    print(f"| torch.compile, {name} | {first:.1f} | {later:.3f} | {later / eager_s:.2f} | {equal} |", flush=True)
