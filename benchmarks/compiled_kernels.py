"""The compiled CPU kernels (``simulate(cpu_kernels="compiled")``) against PyTorch's, side by side in one run.

Part 1, per network (the shipped MNIST CNN and MNIST ResNet; the CIFAR-10 ResNet-20 and VGG when
the CIFAR-10 images are reachable, see ``examples/cifar10.py``), converted with channel-wise
scales (mode 99.9 %): ``--images`` test images simulated in batches of ``--batch`` for T steps
with ``cpu_kernels="torch"`` and ``"compiled"``, in interleaved rounds beside an ANN pass over the
same batches. Printed: the median seconds, the cost as a multiple of T ANN passes, the speed-up,
and how far the compiled run's results are from the torch run's on all the images (largest
difference of the outputs, predictions that agree, spike counts summed over the images).

Part 2, the convolution alone: random spikes of ResNet-20's and the VGG's shapes and rates,
``F.conv2d`` on the spikes as floats (channels-last, oneDNN; the float copy included, as the
torch path does it) against :func:`simulator.compiled.lookup_conv2d` (bits packed and table
lookup), best of 7, with the largest difference of the outputs.

    python benchmarks/compiled_kernels.py                 # 1,000 images, batch 100, T = 16, 2 threads
    python benchmarks/compiled_kernels.py --threads 1 --rounds 5
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ann2snn.tables import format_table  # noqa: E402
from benchmarks.event_conv import best_ms  # noqa: E402
from benchmarks.time_chunk import interleaved_medians, measure_all, speed_arguments  # noqa: E402
from converter import Converter  # noqa: E402
from simulator import compiled, simulate  # noqa: E402

HEADER = [
    "network",
    "torch s",
    "compiled s",
    "x T ANN (torch)",
    "x T ANN (compiled)",
    "speed-up",
    "max |d out|",
    "predictions agree %",
    "spikes (compiled / torch)",
]

#: (C_in, C_out, H = W, kernel, stride, spike rate): ResNet-20's convolutions of spikes (rates at
#: T = 16: 13 % mean, 4-23 % per layer), then two of the VGG's (the last is over the table limit).
SHAPES = [
    (16, 16, 32, 3, 1, 0.13),
    (16, 16, 32, 3, 1, 0.20),
    (16, 32, 32, 3, 2, 0.13),
    (16, 32, 32, 1, 2, 0.13),
    (32, 32, 16, 3, 1, 0.13),
    (32, 64, 16, 3, 2, 0.13),
    (64, 64, 8, 3, 1, 0.07),
    (64, 128, 8, 3, 1, 0.10),
    (128, 128, 8, 3, 1, 0.10),
]
SHAPE_HEADER = ["C_in", "C_out", "H = W", "kernel", "stride", "rate", "dense ms", "lookup ms", "speed-up", "max |d|"]


def measure(name: str, ann: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor, args) -> list[list]:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calib), batch_size=500)
    snn = Converter(mode="99.9%", dataloader=loader, channel_wise=True)(ann)
    batches = x.split(args.batch)

    def snn_pass(kernels: str):
        return [simulate(snn, xb, args.T, cpu_kernels=kernels, warn_silent=False) for xb in batches]

    runners = {"ANN": lambda: [ann(xb) for xb in batches]}
    runners |= {k: (lambda k=k: snn_pass(k)) for k in ("torch", "compiled")}
    with torch.no_grad():
        a, b = snn_pass("torch"), snn_pass("compiled")
        out_a = torch.cat([r.outputs for r in a], 1)
        out_b = torch.cat([r.outputs for r in b], 1)
        agree = (out_a[-1].argmax(-1) == out_b[-1].argmax(-1)).float().mean().item() * 100
        spikes_a = sum(float(c.sum()) for r in a for c in r.spike_counts.values())
        spikes_b = sum(float(c.sum()) for r in b for c in r.spike_counts.values())
        median = interleaved_medians(runners, args.rounds)
    ann_T = args.T * median["ANN"]
    torch_s, compiled_s = median["torch"], median["compiled"]
    difference = f"{(out_a - out_b).abs().max().item():.1e}"
    return [
        [name, torch_s, compiled_s, torch_s / ann_T, compiled_s / ann_T, torch_s / compiled_s, difference, agree,
         spikes_b / spikes_a]
    ]  # fmt: skip


def shape_rows(batch: int) -> list[list]:
    """Part 2: one row per :data:`SHAPES` entry."""
    torch.manual_seed(0)
    rows = []
    for c_in, c_out, h, k, stride, rate in SHAPES:
        conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)
        spikes = (torch.rand(batch, c_in, h, h) < rate).contiguous(memory_format=torch.channels_last)
        weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)

        def dense(spikes=spikes, weight=weight, conv=conv, stride=stride, k=k):
            floats = spikes.to(torch.float32, memory_format=torch.channels_last)
            return F.conv2d(floats, weight, conv.bias, stride=stride, padding=k // 2)

        with torch.no_grad():
            if not compiled.covers(conv, spikes, torch.float32):
                rows.append([c_in, c_out, h, k, stride, rate, best_ms(dense), "declined (table)", "", ""])
                continue
            lookup = best_ms(lambda spikes=spikes, conv=conv: compiled.lookup_conv2d(spikes, conv))
            dense_ms = best_ms(dense)
            difference = (dense() - compiled.lookup_conv2d(spikes, conv)).abs().max().item()
        rows.append([c_in, c_out, h, k, stride, rate, dense_ms, lookup, dense_ms / lookup, f"{difference:.1e}"])
    return rows


def main() -> None:
    parser = speed_arguments(__doc__)
    parser.add_argument("--shape-batch", type=int, default=200, help="images x steps per convolution in part 2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        compiled.library()
    except compiled.KernelsUnavailable as error:
        raise SystemExit(f"compiled_kernels.py: {error}") from None
    rows = measure_all(measure, HEADER, args)
    print(
        f"\n{args.images} images, batch {args.batch}, T = {args.T}, {args.threads} thread(s), medians of "
        f"{args.rounds} interleaved rounds (after one run of each)"
    )
    print(format_table(HEADER, rows))
    print(
        f"\nconvolutions alone: {args.shape_batch} images x steps, random spikes, best of 7, {args.threads} thread(s)"
    )
    print(format_table(SHAPE_HEADER, shape_rows(args.shape_batch)))


if __name__ == "__main__":
    main()
