"""What dropping each chunk value after its last use buys the multi-step simulator, side by side in one run.

For each network (the shipped MNIST CNN and MNIST ResNet; the CIFAR-10 ResNet-20 and VGG when the
CIFAR-10 images are reachable, see ``examples/cifar10.py``), converted with channel-wise scales
(mode 99.9 %), ``--images`` test images are simulated in batches of ``--batch`` for T steps at
each ``--chunks`` time chunk, with :data:`simulator.executor.FREE_AFTER_LAST_USE` on (the default:
a value is dropped once its last user in the graph has run) and off (every value of a chunk held
until the chunk ends, as before), in interleaved rounds beside an ANN pass over the same batches.
Printed per network and chunk: the median seconds of both, their ratio, the cost as a multiple
of T ANN passes, and the most memory the chunk's values held at once (the bytes of the distinct
tensors the executor holds for the chunk, measured on the first batch; the IF states and the
weights are not counted). Outputs and spike counts are checked to be bitwise identical with and
without dropping.

    python benchmarks/free_after_use.py                   # 1,000 images, batch 100, T = 16, 2 threads
    python benchmarks/free_after_use.py --threads 1 --chunks auto 5 --rounds 5
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ann2snn.tables import format_table  # noqa: E402
from benchmarks.time_chunk import interleaved_medians, measure_all, speed_arguments  # noqa: E402
from converter import Converter  # noqa: E402
from simulator import auto_time_chunk, executor, simulate  # noqa: E402
from simulator.spike_ops import Spikes  # noqa: E402

HEADER = [
    "network",
    "time_chunk",
    "keep all s",
    "drop after last use s",
    "drop / keep",
    "x T ANN (drop)",
    "peak chunk MB (keep)",
    "peak chunk MB (drop)",
]


@contextlib.contextmanager
def dropping(drop: bool) -> Iterator[None]:
    """:data:`simulator.executor.FREE_AFTER_LAST_USE` set to ``drop`` inside, the default after."""
    executor.FREE_AFTER_LAST_USE = drop
    try:
        yield
    finally:
        executor.FREE_AFTER_LAST_USE = True


def held_bytes(values) -> int:
    """Bytes of the tensors among ``values`` (tensors and spike tuples), each storage counted once,
    by its largest view among them (a batch that is a view of the whole test set counts as the batch)."""
    seen: dict[int, int] = {}
    for v in values:
        t = v.data if isinstance(v, Spikes) else v
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            ptr = t.untyped_storage().data_ptr()
            seen[ptr] = max(seen.get(ptr, 0), t.numel() * t.element_size())
    return sum(seen.values())


def peak_chunk_bytes(snn: torch.nn.Module, x: torch.Tensor, T: int, chunk: int | str) -> int:
    """The most bytes the executor's chunk values (``env`` and ``expanded``) held at once while
    simulating ``x``: measured by wrapping :meth:`GraphRunner._eval`, which sees both."""
    peak = [0]
    original = executor.GraphRunner._eval

    def counting(self, node, env, expanded, steps):
        value = original(self, node, env, expanded, steps)
        peak[0] = max(peak[0], held_bytes([*env.values(), *expanded.values(), value]))
        return value

    executor.GraphRunner._eval = counting
    try:
        simulate(snn, x, T, time_chunk=chunk, warn_silent=False)
    finally:
        executor.GraphRunner._eval = original
    return peak[0]


def measure(name: str, ann: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor, args) -> list[list]:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calib), batch_size=500)
    snn = Converter(mode="99.9%", dataloader=loader, channel_wise=True)(ann)
    batches = x.split(args.batch)

    def snn_pass(chunk: int | str, drop: bool, xs: tuple[torch.Tensor, ...] = batches):
        with dropping(drop):
            return [simulate(snn, xb, args.T, time_chunk=chunk, warn_silent=False) for xb in xs][-1]

    chunks = [c if c == "auto" else int(c) for c in args.chunks]
    runners = {"ANN": lambda: [ann(xb) for xb in batches]}
    for chunk in chunks:
        for drop in (False, True):
            runners[f"{chunk}/{drop}"] = lambda c=chunk, d=drop: snn_pass(c, d)
    rows = []
    with torch.no_grad():
        for chunk in chunks:  # bitwise the same with and without dropping
            a, b = snn_pass(chunk, False, batches[:1]), snn_pass(chunk, True, batches[:1])
            same = torch.equal(a.outputs, b.outputs) and all(
                torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts
            )
            if not same:
                raise AssertionError(f"{name}, time_chunk={chunk}: results differ with and without dropping")
        for run in runners.values():  # warm-up
            run()
        median = interleaved_medians(runners, args.rounds)
        for chunk in chunks:
            peaks = []
            for drop in (False, True):
                with dropping(drop):
                    peaks.append(peak_chunk_bytes(snn, batches[0], args.T, chunk) / 2**20)
            keep, drop_s = median[f"{chunk}/False"], median[f"{chunk}/True"]
            label = f"auto ({auto_time_chunk(snn, batches[0], args.T)})" if chunk == "auto" else chunk
            rows.append([name, label, keep, drop_s, drop_s / keep, drop_s / (args.T * median["ANN"]), *peaks])
    return rows


def main() -> None:
    parser = speed_arguments(__doc__)
    parser.add_argument("--chunks", nargs="+", default=["auto", "2", "5"], help="time chunks ('auto' or ints)")
    args = parser.parse_args()
    for c in args.chunks:
        if c != "auto" and not (c.isdigit() and int(c) >= 1):
            parser.error(f"--chunks: {c!r} is neither 'auto' nor an int >= 1")
    torch.set_num_threads(args.threads)
    rows = measure_all(measure, HEADER, args)
    print(
        f"\n{args.images} images, batch {args.batch}, T = {args.T}, {args.threads} thread(s), medians of "
        f"{args.rounds} interleaved rounds (after a warm-up of each runner); peak chunk MB on the first batch"
    )
    print(format_table(HEADER, rows))


if __name__ == "__main__":
    main()
