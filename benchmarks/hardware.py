"""Hardware-ready SNNs of the shipped seed CNN: integer weights against float, the membrane
range against a 16-bit state, and operations and arithmetic-only energy against T.

Usage::

    python benchmarks/hardware.py                 # all 10,000 MNIST test images
    python benchmarks/hardware.py --limit 1000    # quicker
    python benchmarks/hardware.py --parts 1       # one section (each < 10 min on an idle machine)

Each section's table is printed and appended, with the command, to ``--out`` (default
``benchmarks/results/hardware.md``); the calibrated conversions are cached in ``--cache`` so the
sections can run as separate processes and share them (quantize is a pass on a converted SNN).

1. Calibrated conversion (``Converter(mode='99.9%', calibrate_T=T, calibrate_weights=True)``)
   at T = 8 and 16; accuracy of the float SNN and of 4-, 6- and 8-bit weights
   (:func:`converter.quantize`) with plain rounding (``α = q / max|W|``, round to nearest),
   with the factor search (exact integer thresholds, least-squares factor), and with the search
   plus the bias correction on 500 calibration images; 8 bits without biases (``bias="none"``).
2. The 8-bit SNN (search + bias correction) at T = 16: the largest membrane potential magnitude
   per layer (integers, on the first ``--saturation-limit`` images) and the bits it needs; then,
   on all test images, the spikes that change when the simulator saturates the potential
   (``IFNeuron.state_bits``: clamped after each step's integration) to 16 bits and to the
   narrowest width the thresholds allow, and the accuracy with each.
3. Rate-coded spike input (``encoding="rate"``: IF encoders, threshold 1, V[0] = 1/2) at T = 16
   (``--rate-T 8,16`` for both): the calibrated conversion with analog input; the same SNN fed spikes; the
   conversion calibrated for spikes (``Converter(..., encoding="rate")``) fed spikes, in float
   and with 8-bit weights (search + bias correction).
4. The energy report (:mod:`ann2snn.report`) of the default conversion (mode 99.9%) at
   T = 4, 8, 16, 50: accuracy, spikes and SynOps per inference, the ANN's MACs, and the
   ANN/SNN energy ratio, arithmetic only (0.9 pJ per accumulate, 4.6 pJ per MAC, 45 nm,
   Horowitz ISSCC 2014; memory access not counted).
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path

import torch

from ann2snn.report import energy_report
from ann2snn.tables import format_table
from ann2snn.zoo import load_embedded, load_mnist_cnn
from converter import Converter, quantize
from simulator import IFNeuron, accuracy_per_t, simulate

BITS = (4, 6, 8)
ROUNDINGS = (
    ("plain rounding", {"rounding": "plain"}),
    ("factor search", {}),
    ("search + bias correction", {"calibration": True}),
)


def accuracy(snn, test, T: int, batch: int, **options) -> float:
    return accuracy_per_t(snn, test.loader(batch), T, **options)[-1].item()


CACHE = Path("/tmp/ann2snn-hardware-cache")


IF_ATTRIBUTES = ("v_init", "v_min", "state_bits", "integer")


def calibrated(ann, calib, T: int, encoding: str = "constant"):
    """The calibrated conversion at ``T``; cached in ``CACHE`` as its state dict, metadata and IF
    attributes (an fx GraphModule does not pickle), rebuilt on the default conversion's graph."""
    cached = CACHE / f"calibrated_T{T}_{encoding}.pt"
    if cached.exists():
        saved = torch.load(cached, weights_only=False)
        snn = Converter(mode="99.9%", dataloader=calib.loader(500), encoding=encoding)(ann)
        snn.load_state_dict(saved["state"])
        snn.meta = saved["meta"]
        for name, m in snn.named_modules():
            if isinstance(m, IFNeuron):
                for key, value in saved["if"][name].items():
                    setattr(m, key, value)
        return snn
    start = time.perf_counter()
    snn = Converter(
        mode="99.9%", dataloader=calib.loader(500), calibrate_T=T, calibrate_weights=True, encoding=encoding
    )(ann)
    print(f"converted for T={T} ({encoding} input) in {time.perf_counter() - start:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    attributes = {
        n: {k: getattr(m, k) for k in IF_ATTRIBUTES} for n, m in snn.named_modules() if isinstance(m, IFNeuron)
    }
    torch.save({"state": snn.state_dict(), "meta": snn.meta, "if": attributes}, cached)
    return snn


def quantised_rows(snns, calib, test, batch) -> list[list]:
    rows = []
    xc = calib.images[:500]
    for T, snn in snns.items():
        row = [T, accuracy(snn, test, T, batch)]
        for bits in BITS:
            for _, options in ROUNDINGS:
                options = {**options, "calibration": xc} if options.get("calibration") else options
                row.append(accuracy(quantize(snn, bits, calibration_T=T, **options), test, T, batch))
        row.append(accuracy(quantize(snn, 8, bias="none"), test, T, batch))
        rows.append(row)
    return rows


def membrane_peaks(snn, x: torch.Tensor, T: int) -> dict[str, float]:
    """Largest |V| per IF layer over single-step simulation (V before the reset and after it)."""
    peak: dict[str, float] = {}

    def hook(name):
        def observe(layer, inputs, spikes):
            before = layer.v + spikes.to(layer.v.dtype) * layer.v_threshold
            peak[name] = max(peak.get(name, 0.0), float(before.abs().max()), float(layer.v.abs().max()))

        return observe

    handles = [m.register_forward_hook(hook(n)) for n, m in snn.named_modules() if isinstance(m, IFNeuron)]
    try:
        simulate(snn, x, T, execution="single")
    finally:
        for h in handles:
            h.remove()
    return peak


def with_state_bits(q, bits: int | None):
    """A copy of the quantised ``q`` whose IF layers saturate to ``bits`` (None: never)."""
    q = copy.deepcopy(q)
    for m in q.modules():
        if isinstance(m, IFNeuron):
            m.state_bits = bits
    return q


def saturation_rows(snn, calib, test, T: int, limit: int, batch: int) -> tuple[list[list], list[list], tuple[int, int]]:
    q = quantize(snn, 8, calibration=calib.images[:500], calibration_T=T)
    info = q.meta["ann2snn"]["quantization"]["layers"]
    narrow = max(layer["threshold_bits"] for layer in info.values() if "threshold_bits" in layer)
    widths = (16, narrow)
    peak = membrane_peaks(q, test.images[:limit], T)
    nets = {bits: with_state_bits(q, bits) for bits in (None, *widths)}
    changed = {bits: {name: 0 for name in peak} for bits in widths}
    spikes = {name: 0 for name in peak}
    correct = dict.fromkeys(nets, 0)
    for start in range(0, len(test.labels), batch):
        x, y = test.images[start : start + batch], test.labels[start : start + batch]
        results = {bits: simulate(net, x, T, record=True) for bits, net in nets.items()}
        for bits, result in results.items():
            correct[bits] += int((result.predictions()[-1] == y).sum())
        free = results[None].spikes
        for name in peak:
            spikes[name] += int(free[name].sum())
            for bits in widths:
                changed[bits][name] += int((free[name] != results[bits].spikes[name]).sum())
    layers = [
        [name, info[name]["threshold"], peak[name], int(peak[name]).bit_length() + 1]
        + [changed[bits][name] for bits in widths]
        + [spikes[name]]
        for name in peak
    ]
    n = len(test.labels)
    accuracies = [["none" if bits is None else f"{bits} bits", 100.0 * correct[bits] / n] for bits in nets]
    return layers, accuracies, widths


def rate_rows(ann, calib, test, snns, batch, Ts) -> list[list]:
    rows = []
    xc = calib.images[:500]
    for T in Ts:
        snn = snns[T]
        analog = accuracy(snn, test, T, batch, encoding="constant")
        spikes_in = accuracy(snn, test, T, batch, encoding="rate")
        rate_snn = calibrated(ann, calib, T, encoding="rate")
        rate = accuracy(rate_snn, test, T, batch)
        rate8 = accuracy(quantize(rate_snn, 8, calibration=xc, calibration_T=T), test, T, batch)
        rows.append([T, analog, spikes_in, rate, rate8, rate - analog])
    return rows


def energy_rows(ann, calib, test, Ts, batch) -> list[list]:
    snn = Converter(mode="99.9%", dataloader=calib.loader(500))(ann)
    rows = []
    for T in Ts:
        report = energy_report(snn, test.loader(batch), T)
        rows.append(
            [T, accuracy(snn, test, T, batch), report.spikes, report.synops, report.analog_input_macs]
            + [report.ann_macs, report.snn_energy_pj / 1e6, report.ann_energy_pj / 1e6]
            + [report.snn_energy_pj / report.ann_energy_pj, report.energy_ratio]
        )
    return rows


class Output:
    """Prints each table and appends it, under the command that printed it, to a Markdown file."""

    def __init__(self, path: Path, parts: list[int]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        with path.open("a") as f:
            f.write(f"\n## `{command}` (parts {parts}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        with self.path.open("a") as f:
            f.write(text + "\n")


def main() -> None:
    global CACHE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=10_000, help="test images (default all 10,000)")
    parser.add_argument("--batch", type=int, default=500, help="simulation batch size")
    parser.add_argument("--saturation-limit", type=int, default=200, help="test images for the 16-bit state check")
    parser.add_argument("--saturation-batch", type=int, default=250, help="batch size of the recorded runs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rate-T", default="16", help="T of section 3, comma-separated: 8, 16 (default 16)")
    parser.add_argument("--parts", default="1,2,3,4", help="sections to run, comma-separated (default all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hardware.md"))
    parser.add_argument("--cache", type=Path, default=CACHE, help="where calibrated conversions are kept")
    args = parser.parse_args()
    CACHE = args.cache
    parts = [int(p) for p in args.parts.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    ann, calib = load_mnist_cnn(), load_embedded("calib")
    test = load_embedded("test").subset(args.limit)
    start = time.perf_counter()
    out = Output(args.out, parts)

    snns = {T: calibrated(ann, calib, T) for T in (8, 16)} if {1, 2, 3} & set(parts) else {}
    if 1 in parts:
        out(f"\n1. accuracy (%) on {len(test.labels)} MNIST test images, calibrated conversion (mode 99.9%)\n")
        headers = ["T", "float"] + [f"{b}-bit {label}" for b in BITS for label, _ in ROUNDINGS] + ["8-bit, no bias"]
        out(format_table(headers, quantised_rows(snns, calib, test, args.batch)))

    if 2 in parts:
        n = min(args.saturation_limit, len(test.labels))
        layers, accuracies, widths = saturation_rows(snns[16], calib, test, 16, n, args.saturation_batch)
        out(
            f"\n2. 8-bit weights (search + bias correction), T = 16: max |V| on {n} test images; spikes on all "
            f"{len(test.labels)} with the membrane saturated to {widths[0]} and {widths[1]} bits\n"
        )
        headers = ["IF layer", "V_th", "max |V|", "bits needed"]
        headers += [f"spikes changed ({b}-bit state)" for b in widths] + ["spikes (no saturation)"]
        out(format_table(headers, layers, left=1))
        out()
        out(format_table(["saturation", "accuracy %"], accuracies, left=1))

    if 3 in parts:
        out(f"\n3. rate-coded spike input, accuracy (%) on {len(test.labels)} test images\n")
        headers = ["T", "analog input", "same SNN, spike input", "calibrated for spikes", "same, 8-bit"]
        headers += ["spikes - analog"]
        out(
            format_table(
                headers, rate_rows(ann, calib, test, snns, args.batch, [int(t) for t in args.rate_T.split(",")])
            )
        )

    if 4 in parts:
        out(f"\n4. operations per inference, default conversion (mode 99.9%), {len(test.labels)} test images")
        out(
            "   energy: arithmetic only (0.9 pJ/AC, 4.6 pJ/MAC, 45 nm, Horowitz ISSCC 2014); "
            "memory access not counted\n"
        )
        headers = [
            "T",
            "accuracy %",
            "spikes",
            "SynOps",
            "input MACs",
            "ANN MACs",
            "SNN uJ",
            "ANN uJ",
            "SNN/ANN",
            "ANN/SNN",
        ]
        out(format_table(headers, energy_rows(ann, calib, test, (4, 8, 16, 50), args.batch)))
    out(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
