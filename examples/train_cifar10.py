"""Train a CIFAR-10 ANN from :mod:`cifar10` (``resnet20`` or ``vgg``) on the CPU, with checkpoints.

Usage::

    python examples/train_cifar10.py --model resnet20 --epochs 40 --out runs/cifar10/resnet20
    python examples/train_cifar10.py --model vgg --epochs 30 --out runs/cifar10/vgg

Seed 0 (model init and one seeded generator for the epoch order and the augmentation), batch
128, SGD (momentum 0.9, Nesterov), weight decay 5e-4 on the weights only (not on BatchNorm
parameters or biases), one-cycle learning rate (``OneCycleLR``, peak ``--max-lr``, total steps =
epochs x steps per epoch, stepped per batch), augmentation: random crop of the 4-pixel
zero-padded image plus a horizontal flip, done on the batch in torch. Pixels in [0, 1], no
normalisation (see :mod:`cifar10`). Options: ``--label-smoothing`` (cross-entropy label
smoothing, default 0), ``--precision bfloat16`` (the forward pass under ``torch.autocast``:
mixed precision, float32 weights, optimiser and saved state_dict; about twice as fast with
``--channels-last`` on a CPU with AVX-512 BF16), ``--channels-last`` (the model and batches
channels-last, faster with oneDNN). Each changes the numbers, not only the speed: the shipped
weights' commands below say which they used.

After every epoch it evaluates all 10,000 test images, appends ``epoch,train_loss,train_acc,
test_acc,seconds`` to ``<out>/log.csv`` and saves ``<out>/checkpoint.pt`` atomically (model,
optimiser, scheduler, epoch, RNG states); a later run with the same arguments resumes from it
exactly (``--no-resume`` starts afresh). At the end it writes the state_dict to
``<out>/<model>.pt`` and prints the test accuracy.

Fine-tune step (optional, before conversion): ``--init-weights W --qcfs-levels L`` starts from
trained weights and replaces every ReLU by a QCFS activation of L levels (``converter.qcfs``,
Bu et al., ICLR 2022), λ trained with the weights; use a small ``--max-lr`` (0.02) and a few
epochs. The state_dict it writes holds each λ and L (``<relu>.threshold``, ``<relu>.levels``) and
loads into the plain network class through ``ann2snn convert --model ... --weights``::

    python examples/train_cifar10.py --model vgg --init-weights ann2snn/zoo/data/cifar10_vgg.pt \
        --qcfs-levels 4 --epochs 6 --max-lr 0.02 --out runs/cifar10/vgg_qcfs4

``--limit N`` trains and tests on N evenly spaced images of each split (a smoke test);
``--log-every`` prints the step time inside an epoch.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10 import DEFAULT_CACHE, DEFAULT_ZIP, MODELS, augment, load_cifar10  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from converter.qcfs import initial_thresholds, qcfs_model  # noqa: E402

BATCH = 128
LOG_HEADER = ["epoch", "train_loss", "train_acc", "test_acc", "seconds"]


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Test accuracy in percent (eval mode, no gradients)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            correct += (model(to_float(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum().item()
    return 100.0 * correct / len(labels)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the convolution and linear weights only (not on BatchNorm or biases)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def trim_log(path: Path, epochs_done: int) -> None:
    """Keep the header and the rows of the first ``epochs_done`` epochs (a run stopped between the
    checkpoint and the log line must not leave a duplicate or a gap)."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and r[0] != "epoch" and int(r[0]) <= epochs_done]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([LOG_HEADER, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, help="output folder (default runs/cifar10/<model>)")
    parser.add_argument("--max-lr", type=float, default=0.1, help="peak of the one-cycle learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zip", default=str(DEFAULT_ZIP), help="cifar10-jpeg.zip")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="decoded uint8 cache ('' for none)")
    parser.add_argument("--limit", type=int, default=0, help="use only N evenly spaced images of each split (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=50, help="print the step time every N steps (0: never)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (0: none)")
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: the forward pass under torch.autocast (mixed precision; weights, optimiser and the "
        "saved state_dict stay float32); about 2x faster on CPUs with AVX-512 BF16",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="keep the model and the batches channels-last (faster on CPU)"
    )
    parser.add_argument("--init-weights", type=Path, help="start from these weights (a state_dict), not a random init")
    parser.add_argument(
        "--qcfs-levels",
        type=int,
        default=0,
        help="fine-tune with QCFS activations of L levels in place of the ReLUs (Bu et al. 2022; "
        "needs --init-weights; λ starts at each ReLU's 99.9th percentile on 2,000 training images)",
    )
    args = parser.parse_args()
    if args.qcfs_levels and args.init_weights is None:
        parser.error("--qcfs-levels fine-tunes a trained network: give its weights with --init-weights")
    out = args.out or Path("runs/cifar10") / args.model
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_cifar10(args.zip, args.cache or None)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    if args.limit:
        train_idx = torch.arange(0, len(y_train), max(1, len(y_train) // args.limit))[: args.limit]
        test_idx = torch.arange(0, len(y_test), max(1, len(y_test) // args.limit))[: args.limit]
        x_train, y_train, x_test, y_test = x_train[train_idx], y_train[train_idx], x_test[test_idx], y_test[test_idx]

    model = MODELS[args.model]()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.init_weights is not None:
        model.load_state_dict(torch.load(args.init_weights, map_location="cpu", weights_only=True))
        print(f"initial weights {args.init_weights}: test {evaluate(model, x_test, y_test):.2f} %", flush=True)
    if args.qcfs_levels:
        pick = torch.linspace(0, len(y_train) - 1, min(2000, len(y_train))).round().long()
        model = qcfs_model(model, args.qcfs_levels, initial_thresholds(model, to_float(x_train[pick])))
        before = evaluate(model, x_test, y_test)
        print(f"QCFS, L = {args.qcfs_levels}, before fine-tuning: test {before:.2f} %", flush=True)
    steps_per_epoch = (len(y_train) + BATCH - 1) // BATCH
    optimiser = torch.optim.SGD(param_groups(model, args.weight_decay), lr=args.max_lr, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.max_lr, total_steps=args.epochs * steps_per_epoch
    )
    generator = torch.Generator().manual_seed(args.seed)
    config = {"model": args.model, "epochs": args.epochs, "max_lr": args.max_lr, "seed": args.seed,
              "weight_decay": args.weight_decay, "limit": args.limit,
              "init_weights": str(args.init_weights), "qcfs_levels": args.qcfs_levels}  # fmt: skip
    # options added later enter the config only where set, so older checkpoints still resume
    for key, default in (("label_smoothing", 0.0), ("precision", "float32"), ("channels_last", False)):
        if getattr(args, key) != default:
            config[key] = getattr(args, key)
    start_epoch = 0
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        if ckpt["config"] != config:
            raise SystemExit(f"{ckpt_path} was written with {ckpt['config']}, not {config}: pass --no-resume")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        schedule.load_state_dict(ckpt["scheduler"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        start_epoch = ckpt["epoch"]
        print(f"resumed from {ckpt_path} after epoch {start_epoch}", flush=True)
    trim_log(log_path, start_epoch)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params:,} parameters, {len(y_train)} train / {len(y_test)} test images, "
          f"{steps_per_epoch} steps per epoch, epochs {start_epoch + 1}-{args.epochs}", flush=True)  # fmt: skip

    for epoch in range(start_epoch + 1, args.epochs + 1):
        model.train()
        start = tick = time.perf_counter()
        order = torch.randperm(len(y_train), generator=generator)
        loss_sum, correct = 0.0, 0
        for step, i in enumerate(range(0, len(order), BATCH), 1):
            idx = order[i : i + BATCH]
            images = to_float(augment(x_train[idx], generator))
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = y_train[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bfloat16"):
                scores = model(images)
            loss = nn.functional.cross_entropy(scores.float(), labels, label_smoothing=args.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            correct += (scores.argmax(1) == labels).sum().item()
            if args.log_every and step % args.log_every == 0:
                now = time.perf_counter()
                print(f"  epoch {epoch} step {step}/{steps_per_epoch}: loss {loss.item():.3f}, "
                      f"{(now - tick) / args.log_every:.3f} s/step, lr {schedule.get_last_lr()[0]:.4f}",
                      flush=True)  # fmt: skip
                tick = now
        train_loss, train_acc = loss_sum / len(y_train), 100.0 * correct / len(y_train)
        test_acc = evaluate(model, x_test, y_test)
        seconds = time.perf_counter() - start
        ckpt = {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "scheduler": schedule.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                "config": config, "test_acc": test_acc}  # fmt: skip
        save_atomic(ckpt, ckpt_path)
        with open(log_path, "a", newline="") as f:
            csv.writer(f).writerow(
                [epoch, f"{train_loss:.4f}", f"{train_acc:.2f}", f"{test_acc:.2f}", f"{seconds:.1f}"]
            )
        print(f"epoch {epoch}/{args.epochs}: train loss {train_loss:.4f}, train {train_acc:.2f} %, "
              f"test {test_acc:.2f} %, {seconds:.0f} s", flush=True)  # fmt: skip

    final = out / f"{args.model}.pt"
    save_atomic(model.state_dict(), final)
    print(f"wrote {final}; test accuracy {evaluate(model, x_test, y_test):.2f} % on {len(y_test)} images", flush=True)


if __name__ == "__main__":
    main()
