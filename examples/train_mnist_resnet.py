"""Train the small residual network (:class:`ann2snn.zoo.mnist_resnet.MnistResNet`) on MNIST.

Writes the trained state_dict to ``ann2snn/zoo/data/mnist_resnet.pt`` (shipped inside the
package; loaded with :func:`ann2snn.zoo.load_mnist_resnet`). Usage::

    python examples/train_mnist_resnet.py --data ../shared/data/mnist --epochs 2

Adam (lr 3e-3, cosine decay to 0), batch 128, seed 0, cross-entropy on the scores before the
final ReLU (:meth:`MnistResNet.logits`), the full 60,000-image training set, 2 CPU threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from train_mnist_cnn import evaluate  # the script's own folder is on sys.path

from ann2snn.zoo.mnist import read_mnist_folder
from ann2snn.zoo.mnist_resnet import WEIGHTS_FILE, MnistResNet

OUT = Path(__file__).resolve().parents[1] / "converter" / "zoo" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mnist", help="folder of MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    train = read_mnist_folder(args.data, "train")
    test = read_mnist_folder(args.data, "test")
    model = MnistResNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * ((len(train) + 127) // 128)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            loss = nn.functional.cross_entropy(model.logits(train.images[idx]), train.labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        acc = evaluate(model, test.images, test.labels)
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test {acc:.2f} %, {time.perf_counter() - start:.0f} s")

    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / (WEIGHTS_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(OUT / WEIGHTS_FILE)
    print(f"wrote {OUT / WEIGHTS_FILE}")


if __name__ == "__main__":
    main()
