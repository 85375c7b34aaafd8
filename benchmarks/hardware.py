"""Hardware-ready SNNs of the shipped seed CNN: integer weights against float, the membrane
range against a 16-bit state, and operations and arithmetic-only energy against T.

Usage::

    python benchmarks/hardware.py                 # all 10,000 MNIST test images
    python benchmarks/hardware.py --limit 1000    # quicker

1. Calibrated conversion (``Converter(mode='99.9%', calibrate_T=T, calibrate_weights=True)``)
   at T = 8 and 16; accuracy of the float SNN and of 4-, 6- and 8-bit weights
   (:func:`converter.quantize`) with plain rounding (``α = q / max|W|``, round to nearest),
   with the factor search (exact integer thresholds, least-squares factor), and with the search
   plus the bias correction on 500 calibration images; 8 bits without biases (``bias="none"``).
2. The 8-bit SNN at T = 16: the largest membrane potential magnitude per layer (integers) and
   the bits it needs, and the spikes that change when the potential is clamped to 16 bits after
   every step (single-step simulation, the clamp applied by a forward hook).
3. The energy report (:mod:`ann2snn.report`) of the default conversion (mode 99.9%) at
   T = 4, 8, 16, 50: accuracy, spikes and SynOps per inference, the ANN's MACs, and the
   ANN/SNN energy ratio, arithmetic only (0.9 pJ per accumulate, 4.6 pJ per MAC, 45 nm,
   Horowitz ISSCC 2014; memory access not counted).
"""

from __future__ import annotations

import argparse
import time

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


def accuracy(snn, test, T: int, batch: int) -> float:
    return accuracy_per_t(snn, test.loader(batch), T)[-1].item()


def quantised_rows(ann, calib, test, Ts, batch) -> list[list]:
    rows = []
    xc = calib.images[:500]
    for T in Ts:
        start = time.perf_counter()
        snn = Converter(mode="99.9%", dataloader=calib.loader(500), calibrate_T=T, calibrate_weights=True)(ann)
        print(f"converted for T={T} in {time.perf_counter() - start:.0f} s", flush=True)
        row = [T, accuracy(snn, test, T, batch)]
        for bits in BITS:
            for _, options in ROUNDINGS:
                options = {**options, "calibration": xc} if options.get("calibration") else options
                row.append(accuracy(quantize(snn, bits, calibration_T=T, **options), test, T, batch))
        row.append(accuracy(quantize(snn, 8, bias="none"), test, T, batch))
        rows.append(row)
    return rows


def membrane_range(snn, x: torch.Tensor, T: int, state_bits: int | None) -> tuple[dict[str, float], dict]:
    """Largest |V| per IF layer over single-step simulation (V before the reset and after it),
    with the potential clamped to ``state_bits`` after every step when given; and the spikes."""
    peak: dict[str, float] = {}
    limit = None if state_bits is None else (-(2 ** (state_bits - 1)), 2 ** (state_bits - 1) - 1)

    def hook(name):
        def observe(layer, inputs, spikes):
            before = layer.v + spikes * layer.v_threshold
            peak[name] = max(peak.get(name, 0.0), float(before.abs().max()), float(layer.v.abs().max()))
            if limit is not None:
                layer.v.clamp_(*limit)

        return observe

    handles = [m.register_forward_hook(hook(n)) for n, m in snn.named_modules() if isinstance(m, IFNeuron)]
    try:
        result = simulate(snn, x, T, execution="single", record=True)
    finally:
        for h in handles:
            h.remove()
    return peak, result.spikes


def saturation_rows(ann, calib, test, T: int, limit: int) -> list[list]:
    snn = Converter(mode="99.9%", dataloader=calib.loader(500), calibrate_T=T, calibrate_weights=True)(ann)
    q = quantize(snn, 8, state_bits=16)
    x = test.images[:limit]
    peak, free = membrane_range(q, x, T, None)
    _, clamped = membrane_range(q, x, T, 16)
    info = q.meta["ann2snn"]["quantization"]["layers"]
    rows = []
    for name in free:
        changed = int((free[name] != clamped[name]).sum())
        needed = int(peak[name]).bit_length() + 1
        rows.append([name, info[name]["threshold"], peak[name], needed, changed, int(free[name].sum())])
    return rows


def energy_rows(ann, calib, test, Ts, batch) -> list[list]:
    snn = Converter(mode="99.9%", dataloader=calib.loader(500))(ann)
    rows = []
    for T in Ts:
        report = energy_report(snn, test.loader(batch), T)
        rows.append(
            [T, accuracy(snn, test, T, batch), report.spikes, report.synops, report.analog_input_macs]
            + [report.ann_macs, report.snn_energy_pj / 1e6, report.ann_energy_pj / 1e6, report.energy_ratio]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=10_000, help="test images (default all 10,000)")
    parser.add_argument("--batch", type=int, default=500, help="simulation batch size")
    parser.add_argument("--saturation-limit", type=int, default=200, help="test images for the 16-bit state check")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ann, calib = load_mnist_cnn(), load_embedded("calib")
    test = load_embedded("test").subset(args.limit)
    start = time.perf_counter()

    print(f"\n1. accuracy (%) on {len(test.labels)} MNIST test images, calibrated conversion (mode 99.9%)\n")
    headers = ["T", "float"] + [f"{b}-bit {label}" for b in BITS for label, _ in ROUNDINGS] + ["8-bit, no bias"]
    print(format_table(headers, quantised_rows(ann, calib, test, (8, 16), args.batch)), flush=True)

    n = min(args.saturation_limit, len(test.labels))
    print(f"\n2. 8-bit weights, T = 16, membrane potential on {n} test images (16-bit state: -32768 .. 32767)\n")
    headers = ["IF layer", "V_th", "max |V|", "bits needed", "spikes changed (16-bit clamp)", "spikes"]
    print(format_table(headers, saturation_rows(ann, calib, test, 16, n), left=1), flush=True)

    print(f"\n3. operations per inference, default conversion (mode 99.9%), {len(test.labels)} test images")
    print("   energy: arithmetic only (0.9 pJ/AC, 4.6 pJ/MAC, 45 nm, Horowitz ISSCC 2014); memory access not counted\n")
    headers = ["T", "accuracy %", "spikes", "SynOps", "input MACs", "ANN MACs", "SNN uJ", "ANN uJ", "ANN/SNN"]
    print(format_table(headers, energy_rows(ann, calib, test, (4, 8, 16, 50), args.batch)))
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
