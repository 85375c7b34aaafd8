"""Convert the small residual network, simulate it, export it to NIR and reload it exactly.

Loads :func:`ann2snn.zoo.load_mnist_resnet` (weights shipped in the package, trained by
``examples/train_mnist_resnet.py``) and the embedded MNIST data, converts it with the given
mode on the 4,000 calibration images, simulates ``max(--T)`` steps of constant input over the
test images (the accuracy at a smaller t is read off the same run: the simulation is causal),
writes ``<out>/mnist_resnet.nir``, reloads it and checks that every IF layer's spike counts are
identical on ``--check-samples`` images. Prints a Markdown table. Usage::

    python examples/mnist_resnet.py --limit 0 --T 16 32 64 --out runs/resnet

Every IF layer starts at half its threshold by default (``--v-init 0.5``): with eight IF layers
in series, starting at 0 delays each layer's first spikes and costs most of the accuracy at
small T (on 500 test images at T = 64: 98.8 % with 0.5, 88.8 % with 0 in mode 99 %).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ann2snn.zoo import load_embedded
from ann2snn.zoo.mnist_resnet import load_mnist_resnet
from converter import Converter
from exporters import compare_spike_counts, export_nir, import_nir
from simulator import Scale, accuracy_per_t, if_layers


def ann_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        correct = sum(
            (model(images[i : i + 1000]).argmax(1) == labels[i : i + 1000]).sum().item()
            for i in range(0, len(labels), 1000)
        )
    return 100.0 * correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=1000, help="test images (0: all 10,000)")
    parser.add_argument("--T", type=int, nargs="+", default=[16, 32, 64], help="time steps to report")
    parser.add_argument("--mode", default="99.9%", help="normalisation mode")
    parser.add_argument(
        "--v-init",
        type=float,
        default=0.5,
        help="initial membrane potential as a fraction of the threshold (0.5 halves the latency)",
    )
    parser.add_argument("--check-samples", type=int, default=100, help="images for the NIR spike-count check")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", default="runs/resnet")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ann = load_mnist_resnet()
    test = load_embedded("test").subset(args.limit or None)
    calib = load_embedded("calib")
    acc_ann = ann_accuracy(ann, test.images, test.labels)

    start = time.perf_counter()
    snn = Converter(mode=args.mode, dataloader=calib.loader(500), v_init=args.v_init)(ann)
    convert_s = time.perf_counter() - start
    scales = {n: round(float(m.scale), 4) for n, m in snn.named_modules() if isinstance(m, Scale)}
    print(f"converted in {convert_s:.1f} s: {len(if_layers(snn))} IF layers, residual Scale nodes {scales}")

    T = max(args.T)
    start = time.perf_counter()
    acc = accuracy_per_t(snn, test.loader(args.batch), T)
    sim_s = time.perf_counter() - start

    path = export_nir(snn, Path(args.out) / "mnist_resnet.nir", T=T)
    report = compare_spike_counts(snn, import_nir(path), test.images[: args.check_samples], T)

    print(
        f"\n{len(test)} test images, mode {args.mode}, v_init {args.v_init:g}, simulation of T={T} took {sim_s:.0f} s\n"
    )
    print("| model | " + " | ".join(f"T = {t}" for t in args.T) + " |")
    print("|---|" + "---|" * len(args.T))
    print("| ANN | " + " | ".join(f"{acc_ann:.2f} %" for _ in args.T) + " |")
    print("| SNN | " + " | ".join(f"{acc[t - 1].item():.2f} %" for t in args.T) + " |")
    print(
        f"\nwrote {path}; reloaded: identical spike counts on {args.check_samples} images, "
        f"{report.layers} IF layers: {report.equal} (max count difference {report.max_count_diff:g})"
    )


if __name__ == "__main__":
    main()
