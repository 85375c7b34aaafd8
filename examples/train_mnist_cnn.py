"""Train the seed CNN on the full MNIST training set and write the shipped default data.

Writes, into ``ann2snn/zoo/data/`` (the embedded default inside the package):
- ``mnist_cnn.pt``: the trained state_dict (loaded with ``weights_only=True``);
- ``t10k-*-idx*-ubyte.gz``: the 10,000 MNIST test images and labels (byte-identical copies);
- ``calib-*-idx*-ubyte.gz``: a seeded random subset of the training set for calibration.

Usage::

    python examples/train_mnist_cnn.py --data ../shared/data/mnist --epochs 12

Adam (lr 1e-3, halved every 4 epochs), batch 64, seed 0, cross-entropy on the CNN's
(non-negative, final-ReLU) outputs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ann2snn.zoo.mnist import MNIST_FILES, read_idx, read_mnist_folder, to_arrays, write_idx
from ann2snn.zoo.mnist_cnn import WEIGHTS_FILE, MnistCNN

OUT = Path(__file__).resolve().parents[1] / "converter" / "zoo" / "data"


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(
            (model(images[i : i + 1000]).argmax(1) == labels[i : i + 1000]).sum().item()
            for i in range(0, len(labels), 1000)
        )
    return 100.0 * correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mnist", help="folder of MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--calib-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    train = read_mnist_folder(args.data, "train")
    test = read_mnist_folder(args.data, "test")
    model = MnistCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=4, gamma=0.5)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = nn.functional.cross_entropy(model(train.images[idx]), train.labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
        acc = evaluate(model, test.images, test.labels)
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test {acc:.2f} %, {time.perf_counter() - start:.0f} s")

    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), OUT / (WEIGHTS_FILE + ".tmp"))
    (OUT / (WEIGHTS_FILE + ".tmp")).replace(OUT / WEIGHTS_FILE)
    for key in ("test_images", "test_labels"):
        shutil.copyfile(Path(args.data) / (MNIST_FILES[key] + ".gz"), OUT / (MNIST_FILES[key] + ".gz"))
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(train), size=args.calib_size, replace=False))
    images = read_idx(Path(args.data) / MNIST_FILES["train_images"])[pick]
    labels = read_idx(Path(args.data) / MNIST_FILES["train_labels"])[pick]
    write_idx(OUT / "calib-images-idx3-ubyte.gz", images)
    write_idx(OUT / "calib-labels-idx1-ubyte.gz", labels)
    assert len(to_arrays(images, labels)) == args.calib_size
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
