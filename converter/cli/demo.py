"""The main job on the embedded default: convert the seed CNN in several modes, simulate,
export to NIR, reload and cross-check, tabulate and plot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from converter import Converter, parse_mode
from converter.zoo import MnistArrays, load_embedded, load_mnist_cnn
from exporters import compare_spike_counts, export_nir, import_nir
from simulator import accuracy_per_t

SEED_MODES = ("max", "99.9%", "1/2", "1/3", "1/4", "1/5")


@dataclass
class ModeResult:
    mode: str
    conversion_s: float
    simulation_s: float
    accuracy: list[float] = field(repr=False)  # percent at t = 1..T
    nir_path: Path | None = None
    reload_equal: bool | None = None
    reload_max_diff: float | None = None
    error: str | None = None


def ann_accuracy(ann: torch.nn.Module, data: MnistArrays, batch_size: int = 500) -> float:
    """Test accuracy (%) of the ANN on ``data``."""
    correct = 0
    with torch.no_grad():
        for x, y in data.loader(batch_size):
            correct += (ann(x).argmax(1) == y).sum().item()
    return 100.0 * correct / len(data)


def run_mode(
    mode: str,
    ann,
    calib: MnistArrays,
    test: MnistArrays,
    T: int,
    out: Path,
    check_samples: int,
    batch_size: int,
    quiet: bool,
) -> ModeResult:
    """Convert, simulate, export, reload and cross-check one mode."""
    start = time.perf_counter()
    with tqdm(total=len(calib), desc=f"calibrate {mode}", disable=quiet, leave=False) as bar:
        snn = Converter(mode=mode, dataloader=calib.loader(500), progress=bar.update)(ann)
    conversion_s = time.perf_counter() - start
    start = time.perf_counter()
    with tqdm(total=len(test), desc=f"simulate {mode}", disable=quiet, leave=False) as bar:
        acc = accuracy_per_t(snn, test.loader(batch_size), T, progress=bar.update)
    simulation_s = time.perf_counter() - start
    path = export_nir(snn, out / f"mnist_cnn_{parse_mode(mode).file_name}.nir", T=T)
    report = compare_spike_counts(snn, import_nir(path), test.images[:check_samples], T)
    return ModeResult(mode, conversion_s, simulation_s, acc.tolist(), path, report.equal, report.max_count_diff)


def run_demo(
    modes: list[str],
    T: int,
    limit: int,
    out: Path,
    check_samples: int = 100,
    batch_size: int = 100,
    quiet: bool = False,
    device: str = "cpu",
):
    """Run every mode; a failing mode is reported in its row and the others still run."""
    ann = load_mnist_cnn().to(device)
    test = load_embedded("test").subset(limit)
    calib = load_embedded("calib")
    ann_acc = ann_accuracy(ann, test)
    results = []
    for mode in modes:
        try:
            results.append(run_mode(mode, ann, calib, test, T, out, check_samples, batch_size, quiet))
        except Exception as exc:  # report and go on with the other modes
            results.append(ModeResult(mode, 0.0, 0.0, [], error=f"{type(exc).__name__}: {exc}"))
    return ann_acc, len(test), len(calib), results
