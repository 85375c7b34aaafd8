"""CIFAR-10 conversion benchmark (issue 14): for each trained network (ResNet-20, VGG from
``examples/cifar10.py``), the ANN's accuracy, then each conversion technique added one at a time,
then SpikingJelly 2.0's strongest rate-coding recipe on the same weights, at T = 4, 8, 16, 32, 64,
all on the same test images (all 10,000 by default).

Usage::

    python benchmarks/cifar10.py --vgg runs/cifar10/vgg/checkpoint.pt --resnet20 runs/cifar10/resnet20/checkpoint.pt
    python benchmarks/cifar10.py --vgg runs/cifar10/vgg/checkpoint.pt --limit 200 --T 4 8   # quick

Weights: a state_dict, or a checkpoint dict holding it under ``model``, ``state_dict`` or
``model_state_dict`` (what ``examples/train_cifar10.py`` writes). Calibration: ``--calib``
training images spread evenly over the training split (500-image batches), of which the
calibrated rows fit on the first ``--calibration-samples`` (the converter's default, 500, when
not given). Data: the uint8 cache of ``examples/cifar10.py`` (``--cache``; decoded from the JPEG
zip when missing).

Columns: accuracy (%) at each T; ``convert s``: the conversion's seconds (for the calibrated rows
the sum over the T's); ``sim cost``: seconds to simulate the test images for max(T) steps divided
by max(T) times the seconds of one ANN pass over the same images (same batch size, same threads):
the simulation cost as a multiple of T ANN passes. Rows without per-T calibration come from one
run of max(T) steps (the accuracy at t only depends on steps 1..t); calibrated rows convert and
run once per T, and their cost is the one of the T = max(T) run.
When ``spikingjelly`` (2.0) is importable (``bash interop/setup.sh spikingjelly``, then run with
``$ANN2SNN_INTEROP_VENVS/spikingjelly/bin/python``), its row follows each network's:
``RateCodingRecipe(loader, mode='99.9%', channel_wise=True, half_threshold=True)``, as in
``benchmarks/accuracy_vs_T.py``.

Weights from the QCFS fine-tune (``examples/train_cifar10.py --init-weights W --qcfs-levels L``,
:mod:`converter.qcfs`) load through the same options (``--vgg runs/cifar10/vgg_qcfs4/vgg.pt``):
the network is then named ``vgg + QCFS L=4``, its ANN row is the fine-tuned (quantised) ANN, each
QCFS layer's trained λ is its scale, and SpikingJelly's row is skipped (it converts ReLUs only).

Both example networks end in a Linear layer without a ReLU, so under the spike-count readout the
output already is the last layer's accumulated current: the "+ membrane readout" row equals the
row above it by construction (it differs on networks that end in a ReLU). Rows 6 and 7 are
row 4 (bias calibration) and row 5 (weight calibration) with burst neurons (``spike_rule="multi"``:
``floor(V / V_th)`` spikes in a step, no cap; Li & Zeng 2022; Sinabs' *MultiSpike* rule, which its
guide says matches Speck's on-chip inference best, docs/targets.md); rows 8 and 9 the same with
signed neurons (``spike_rule="signed"``: a -1 spike when V < 0 takes back an earlier spike; Wang
et al., IJCAI 2022), which need a chip that sends signed events (not Speck). Row 10 is row 2
(V[0] = V_th/2, membrane readout, no calibration) with signed neurons: for a QCFS fine-tune, whose
activations already are the counts that T = L steps can give, it shows what the signed rule alone
does.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_vs_T import spikingjelly_accuracy_per_t  # noqa: E402

from ann2snn.tables import format_table  # noqa: E402
from converter import Converter  # noqa: E402
from converter.qcfs import QCFS, with_qcfs_layers  # noqa: E402
from examples.cifar10 import DEFAULT_CACHE, DEFAULT_ZIP, MODELS, load_cifar10  # noqa: E402
from simulator import accuracy_per_t  # noqa: E402

BASE = {"v_init": 0.0, "readout": "spike_count"}
CALIBRATED = {"v_init": 0.5, "readout": "membrane", "channel_wise": True, "calibrate": True}
WEIGHT_CALIBRATED = {**CALIBRATED, "calibrate_weights": True}
STEPS = [
    ("seed (V[0]=0, spike count)", BASE),
    ("+ half-threshold start", {"v_init": 0.5, "readout": "spike_count"}),
    ("+ membrane readout", {"v_init": 0.5, "readout": "membrane"}),
    ("+ channel-wise", {"v_init": 0.5, "readout": "membrane", "channel_wise": True}),
    ("+ calibration", CALIBRATED),
    ("+ weight calibration", WEIGHT_CALIBRATED),
]
# not cumulative: rows 4 and 5 with burst neurons (rows 6, 7), then with signed neurons (rows 8, 9); row 2 signed (10)
STEPS += [
    (f"{name}, {kind} neurons (off by default)", {**options, "spike_rule": rule})
    for rule, kind in (("multi", "burst"), ("signed", "signed"))
    for name, options in STEPS[4:6]
]
STEPS.append(("+ membrane readout, signed neurons (off by default)", {**STEPS[2][1], "spike_rule": "signed"}))


def load_weights(name: str, path: Path) -> torch.nn.Module:
    """``MODELS[name]()`` with the weights at ``path`` (a state_dict or a checkpoint dict)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
            break
    model = with_qcfs_layers(MODELS[name](), blob)  # a QCFS fine-tune's weights: its QCFS layers
    model.load_state_dict(blob)
    return model.eval()


def net_label(name: str, model: torch.nn.Module) -> str:
    """``name``, or ``name + QCFS L=4`` for a network fine-tuned with QCFS activations."""
    levels = sorted({int(m.levels) for m in model.modules() if isinstance(m, QCFS)})
    return f"{name} + QCFS L={'/'.join(map(str, levels))}" if levels else name


def loader(x: torch.Tensor, y: torch.Tensor | None, batch: int):
    tensors = (x,) if y is None else (x, y)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=batch)


def ann_pass(ann, x, y, batch) -> tuple[float, float]:
    """(accuracy %, seconds of one pass over ``x``)."""
    correct = 0
    start = time.perf_counter()
    with torch.no_grad():
        for xb, yb in loader(x, y, batch):
            correct += (ann(xb).argmax(1) == yb).sum().item()
    return correct * 100.0 / len(x), time.perf_counter() - start


def our_row(ann, calib, x, y, options, Ts, batch, ann_s, calibration_samples=None, cpu_kernels="torch") -> list:
    options = dict(options)
    if calibration_samples is not None:
        options["calibration_samples"] = calibration_samples
    calibrate = options.pop("calibrate", False)
    plan = [(T, T) for T in Ts] if calibrate else [(None, max(Ts))]
    accs, convert_s, cost = {}, 0.0, 0.0
    for calibrate_T, steps in plan:
        t0 = time.perf_counter()
        snn = Converter(mode="99.9%", dataloader=loader(calib, None, 500), calibrate_T=calibrate_T, **options)(ann)
        convert_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = accuracy_per_t(snn, loader(x, y, batch), steps, cpu_kernels=cpu_kernels)
        cost = (time.perf_counter() - t0) / (steps * ann_s)
        for T in Ts if calibrate_T is None else [calibrate_T]:
            accs[T] = acc[T - 1].item()
    return [*(accs[T] for T in Ts), convert_s, cost]


def spikingjelly_row(ann, calib, x, y, Ts, batch, ann_s) -> list | None:
    try:
        from spikingjelly.activation_based.ann2snn import Converter as SJConverter
        from spikingjelly.activation_based.ann2snn import RateCodingRecipe
    except ImportError:
        return None
    t0 = time.perf_counter()
    recipe = RateCodingRecipe(loader(calib, None, 500), mode="99.9%", channel_wise=True, half_threshold=True)
    snn = SJConverter(recipe=recipe).convert(copy.deepcopy(ann)).eval()
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = spikingjelly_accuracy_per_t(snn, loader(x, y, batch), max(Ts))
    cost = (time.perf_counter() - t0) / (max(Ts) * ann_s)
    return [*(acc[T - 1] for T in Ts), convert_s, cost]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in MODELS:
        parser.add_argument(f"--{name}", type=Path, help=f"trained {name} weights (state_dict or checkpoint dict)")
    parser.add_argument("--limit", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--calib", type=int, default=2000, help="calibration images from the training split")
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=None,
        help="samples the calibrated rows fit on (Converter(calibration_samples=...); default: its 500)",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        type=int,
        default=None,
        help=f"which technique rows to run, by index 0..{len(STEPS) - 1} (default: all), e.g. --rows 5",
    )
    parser.add_argument("--no-spikingjelly", action="store_true", help="skip SpikingJelly's row")
    parser.add_argument(
        "--cpu-kernels",
        choices=["torch", "compiled"],
        default="torch",
        help="simulate our rows with simulate(cpu_kernels=...) (compiled: C kernels, docs/simulation.md)",
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    nets = [(name, getattr(args, name)) for name in MODELS if getattr(args, name) is not None]
    if not nets:
        parser.error(f"give the weights of at least one network: {', '.join('--' + n for n in MODELS)}")
    torch.set_num_threads(args.threads)
    try:
        data = load_cifar10(args.zip, args.cache)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    train_x, _ = data["train"]
    test_x, test_y = data["test"]
    if args.limit:
        # an evenly spread subset (the split is sorted by class)
        pick = torch.linspace(0, len(test_x) - 1, args.limit).round().long()
        test_x, test_y = test_x[pick], test_y[pick]
    pick = torch.linspace(0, len(train_x) - 1, args.calib).round().long()
    calib = train_x[pick].float() / 255
    x = test_x.float() / 255
    start = time.perf_counter()
    header = ["network", "technique", *(f"T={T}" for T in args.T), "convert s", "sim cost (x T ANN)"]
    rows = []
    for name, path in nets:
        ann = load_weights(name, path)
        name = net_label(name, ann)
        ann_acc, ann_s = ann_pass(ann, x, test_y, args.batch)
        ann_acc, ann_s = ann_pass(ann, x, test_y, args.batch)  # second pass: warm
        rows.append([name, f"ANN ({ann_s:.2f} s per pass)", *([ann_acc] * len(args.T)), 0.0, 1.0])
        for technique, options in [STEPS[i] for i in (range(len(STEPS)) if args.rows is None else args.rows)]:
            row = our_row(
                ann, calib, x, test_y, options, args.T, args.batch, ann_s, args.calibration_samples, args.cpu_kernels
            )
            rows.append([name, technique, *row])
            print(format_table(header, rows[-1:]), flush=True)
        if args.no_spikingjelly:
            continue
        if any(isinstance(m, QCFS) for m in ann.modules()):  # SpikingJelly replaces ReLUs only
            rows.append([name, "SpikingJelly: no QCFS layers", *([float("nan")] * (len(args.T) + 2))])
            continue
        sj = spikingjelly_row(ann, calib, x, test_y, args.T, args.batch, ann_s)
        rows.append(
            [name, "SpikingJelly 99.9% channel-wise + half threshold", *sj]
            if sj
            else [name, "SpikingJelly: not installed", *([float("nan")] * (len(args.T) + 2))]
        )
    print(
        f"\nCIFAR-10, {len(x)} test images, {len(calib)} calibration images, mode 99.9%, batch {args.batch}, "
        f"{args.threads} threads, cpu_kernels={args.cpu_kernels!r}; total {time.perf_counter() - start:.0f} s"
    )
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
