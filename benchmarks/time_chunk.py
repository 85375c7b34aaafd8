"""How the multi-step simulator's ``time_chunk`` sets its speed, per network, side by side.

For each network (the shipped MNIST CNN and MNIST ResNet; the CIFAR-10 ResNet-20 and VGG when
the CIFAR-10 images are reachable, see ``examples/cifar10.py``), converted with channel-wise
scales (mode 99.9 %), ``--images`` test images are simulated in batches of ``--batch`` for T
steps with each chunk size in interleaved rounds (the order rotates per round), and the ANN's
forward pass over the same batches is timed in the same rounds. Printed per network and chunk
(and for ``"auto"`` itself, its first one-step chunk included): the median seconds, the cost as a
multiple of T ANN passes, the time relative to ``time_chunk=5`` (the default before
``"auto"``), the chunk ``time_chunk="auto"`` picks for that network and batch, and the largest
difference of the first batch's outputs from ``time_chunk=1``'s (float32 sums in another order
can move the last bits, docs/simulation.md) with the share of its predictions at T that agree with it.

    python benchmarks/time_chunk.py                         # 1,000 images, batch 100, T = 16, 2 threads
    python benchmarks/time_chunk.py --threads 1 --chunks 1 2 3 5 8 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ann2snn.tables import format_table  # noqa: E402
from ann2snn.zoo import (  # noqa: E402
    load_cifar10_resnet20,
    load_cifar10_vgg,
    load_embedded,
    load_mnist_cnn,
    load_mnist_resnet,
)
from converter import Converter  # noqa: E402
from simulator import auto_time_chunk, simulate  # noqa: E402


def mnist_data(images: int) -> tuple[torch.Tensor, torch.Tensor]:
    test, calib = load_embedded("test"), load_embedded("calib")
    return test.images[:images], calib.images[:500]


def cifar_data(images: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        from examples.cifar10 import load_cifar10

        data = load_cifar10()
    except (OSError, ValueError) as error:  # the zip is not on this machine
        print(f"CIFAR-10 nets skipped: {error}")
        return None
    test = data["test"][0]
    pick = torch.linspace(0, len(test) - 1, images).round().long()  # spread over the classes
    return test[pick].float() / 255, data["train"][0][:500].float() / 255


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def interleaved_medians(runners: dict, rounds: int) -> dict:
    """Each runner's median seconds over ``rounds`` rounds, the order rotated per round, so that a
    load on the machine hits every runner alike."""
    times: dict = {key: [] for key in runners}
    keys = list(runners)
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(timed(runners[key]))
    return {key: statistics.median(v) for key, v in times.items()}


#: The networks the speed benchmarks time: (name, loader, data source).
NETS = [
    ("MNIST CNN", load_mnist_cnn, "mnist"),
    ("MNIST ResNet", load_mnist_resnet, "mnist"),
    ("CIFAR-10 ResNet-20", load_cifar10_resnet20, "cifar"),
    ("CIFAR-10 VGG", load_cifar10_vgg, "cifar"),
]


def measure_all(measure, header: list[str], args) -> list[list]:
    """``measure(name, ann, test images, calibration images, args)`` for every net of :data:`NETS`
    whose data is here (the CIFAR-10 nets only with the CIFAR-10 zip), each net's rows printed as
    they come; all rows."""
    data = {"mnist": mnist_data(args.images), "cifar": cifar_data(args.images)}
    rows: list[list] = []
    for name, load, source in NETS:
        if data[source] is not None:
            x, calib = data[source]
            rows += (new := measure(name, load().eval(), x, calib, args))
            print(format_table(header, new), flush=True)
    return rows


HEADER = ["network", "time_chunk", "seconds", "cost (x T ANN)", "vs chunk 5", "auto picks", "max |d out|", "agree %"]


def measure(name: str, ann: torch.nn.Module, x: torch.Tensor, calib: torch.Tensor, args) -> list[list]:
    """One network's rows: each chunk's median seconds over interleaved rounds, with the ANN's."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calib), batch_size=500)
    snn = Converter(mode="99.9%", dataloader=loader, channel_wise=True)(ann)
    chunks = sorted(set(args.chunks) | {5})
    batches = x.split(args.batch)
    auto = auto_time_chunk(snn, batches[0], args.T)

    def ann_pass() -> None:
        for xb in batches:
            ann(xb)

    def snn_pass(chunk: int | str) -> None:
        for xb in batches:
            simulate(snn, xb, args.T, time_chunk=chunk)

    settings: list[int | str] = [*chunks, "auto"]  # "auto" itself: its first one-step chunk included
    runners = {"ANN": ann_pass} | {c: (lambda c=c: snn_pass(c)) for c in settings}
    with torch.no_grad():
        reference = simulate(snn, batches[0], args.T, time_chunk=1).outputs
        drift = {}
        for c in settings:
            out = simulate(snn, batches[0], args.T, time_chunk=c).outputs
            agree = (out[-1].argmax(-1) == reference[-1].argmax(-1)).float().mean().item() * 100
            drift[c] = ((out - reference).abs().max().item(), agree)
        median = interleaved_medians(runners, args.rounds)
    return [
        [name, c, median[c], median[c] / (args.T * median["ANN"]), median[c] / median[5], auto, *drift[c]]
        for c in settings
    ]


def speed_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options the speed benchmarks share (``--images``, ``--batch``, ``--T``, ``--threads``,
    ``--rounds``), on a parser whose help is ``doc``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="test images per run")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def main() -> None:
    parser = speed_arguments(__doc__)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 3, 5, 8])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure_all(measure, HEADER, args)
    print(
        f"\n{args.images} images, batch {args.batch}, T = {args.T}, {args.threads} thread(s), medians of "
        f"{args.rounds} interleaved rounds (after a warm-up run of every chunk on the first batch); the last two "
        "columns compare the first batch's outputs with time_chunk=1's"
    )
    print(format_table(HEADER, rows))


if __name__ == "__main__":
    main()
