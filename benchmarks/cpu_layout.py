"""What the channels-last layout of the multi-step simulator buys on the CPU, side by side in one run.

For each network (the shipped MNIST CNN and MNIST ResNet; the CIFAR-10 ResNet-20 and VGG when the
CIFAR-10 images are reachable, see ``examples/cifar10.py``), converted with channel-wise scales
(mode 99.9 %), ``--images`` test images are simulated in batches of ``--batch`` for T steps
(``time_chunk="auto"``) with the spikes fed to the convolutions channels-last (the default,
:data:`simulator.spike_ops.CHANNELS_LAST_ON_CPU`) and in PyTorch's default NCHW layout, in
interleaved rounds beside two ANN passes over the same batches: the ANN as loaded (NCHW, how a
user runs it) and the same ANN converted to channels-last (``model.to(memory_format=...)``, its
best layout here). Printed per network and runner: the median seconds and the cost as a multiple
of T passes of each ANN, and the largest difference of the first batch's outputs from the NCHW
simulation's (float32 sums in another order can move the last bits, docs/simulation.md) with the
share of predictions at T that agree. The "matmul share" column is the share of each runner's CPU
time spent in convolutions and Linear layers (one run under ``torch.profiler``, self times): the
SNN runs every convolution on each step's spikes, so its convolutions alone cost about that share
times its seconds, whatever the IF layers cost.

    python benchmarks/cpu_layout.py                    # 1,000 images, batch 100, T = 16, 2 threads
    python benchmarks/cpu_layout.py --threads 1 --rounds 5
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ann2snn.tables import format_table  # noqa: E402
from benchmarks.time_chunk import interleaved_medians, measure_all, speed_arguments  # noqa: E402
from converter import Converter  # noqa: E402
from simulator import simulate, spike_ops  # noqa: E402

HEADER = [
    "network",
    "runner",
    "seconds",
    "x T ANN (NCHW)",
    "x T ANN (channels-last)",
    "matmul share %",
    "max |d out|",
    "agree %",
]
#: the ops that do a layer's multiply-accumulates (convolutions, Linear layers)
MATMUL_OPS = ("aten::mkldnn_convolution", "aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::addmm", "aten::mm")


def matmul_share(run) -> float:
    """The share (%) of ``run()``'s CPU time (self times, one profiled run) spent in :data:`MATMUL_OPS`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return 100.0 * sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / max(total, 1e-9)


def measure(name: str, ann: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor, args) -> list[list]:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calib), batch_size=500)
    snn = Converter(mode="99.9%", dataloader=loader, channel_wise=True)(ann)
    batches = x.split(args.batch)
    ann_last = copy.deepcopy(ann).to(memory_format=torch.channels_last)
    last_batches = [b.contiguous(memory_format=torch.channels_last) if b.dim() == 4 else b for b in batches]

    def snn_pass(channels_last: bool, xs: tuple[torch.Tensor, ...] = batches) -> torch.Tensor:
        """Simulate ``xs`` with the layout switch set; the last batch's outputs."""
        spike_ops.CHANNELS_LAST_ON_CPU = channels_last
        try:
            return [simulate(snn, xb, args.T).outputs for xb in xs][-1]
        finally:
            spike_ops.CHANNELS_LAST_ON_CPU = True

    runners = {
        "ANN (NCHW)": lambda: [ann(xb) for xb in batches],
        "ANN (channels-last)": lambda: [ann_last(xb) for xb in last_batches],
        "SNN, channels-last (default)": lambda: snn_pass(True),
        "SNN, NCHW": lambda: snn_pass(False),
    }
    with torch.no_grad():
        outs = {key: snn_pass(key != "SNN, NCHW", batches[:1]) for key in ("SNN, NCHW", "SNN, channels-last (default)")}
        keys = list(runners)
        for key in keys:  # warm-up
            runners[key]()
        median = interleaved_medians(runners, args.rounds)
        shares = {key: matmul_share(runners[key]) for key in keys}
    ref = outs["SNN, NCHW"]
    rows = []
    for key in keys:
        drift: list = ["", ""]
        if key in outs:
            agree = (outs[key][-1].argmax(-1) == ref[-1].argmax(-1)).float().mean().item() * 100
            drift = [(outs[key] - ref).abs().max().item(), agree]
        cost = [median[key] / (args.T * median[a]) for a in ("ANN (NCHW)", "ANN (channels-last)")]
        rows.append([name, key, median[key], *(c if key.startswith("SNN") else "" for c in cost), shares[key], *drift])
    return rows


def main() -> None:
    args = speed_arguments(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    rows = measure_all(measure, HEADER, args)
    print(
        f"\n{args.images} images, batch {args.batch}, T = {args.T}, time_chunk='auto', {args.threads} thread(s), "
        f"medians of {args.rounds} interleaved rounds (after a warm-up of each runner); the last two columns compare "
        "the first batch's outputs with the NCHW simulation's"
    )
    print(format_table(HEADER, rows))


if __name__ == "__main__":
    main()
