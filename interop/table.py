"""Print the interop table: reader (version) × network → loads / exact / differs by N spikes (of M).

    python interop/table.py [--samples 16] [--T 32] [--reader norse ...] [--network cnn ...] [--no-layout]

Run from the repository root in the main ``.venv``, after ``bash interop/setup.sh all``
(``$ANN2SNN_INTEROP_VENVS`` as for the tests). Each cell is :func:`interop.harness.evaluate`:
the reader's own NIR import on the first ``--samples`` MNIST test images for ``--T`` steps,
against our simulator under that reader's rules, in float64 and in float32. ``--no-layout``
writes the portable files without :func:`exporters.profiles.depth_first_layout` (the files as
they were before it), to measure what it changes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interop import harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Evaluate every reader × network × dtype and print one markdown row per reader × network."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--reader", action="append", choices=list(harness.READERS))
    parser.add_argument("--network", action="append", choices=list(harness.NETWORKS))
    parser.add_argument("--dtype", action="append", choices=["float64", "float32"])
    parser.add_argument("--no-layout", action="store_true", help="portable files without the depth-first layout")
    args = parser.parse_args(argv)
    from ann2snn.zoo import load_embedded

    x = load_embedded("test").images[: args.samples]
    readers = args.reader or list(harness.READERS)
    networks = args.network or list(harness.NETWORKS)
    dtypes = args.dtype or ["float64", "float32"]
    snns = {}
    rows = [
        f"| reader | network | file | loads | {' | '.join(dtypes)} | notes |",
        "|---|---|---|---|" + "---|" * len(dtypes) + "---|",
    ]
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        files: dict = {}
        for reader in readers:
            version = harness.reader_version(reader)
            if not version:
                missing = f"| {reader} | - | - | no venv (bash interop/setup.sh {reader}) |"
                rows.append(missing + " |" * (len(dtypes) + 1))
                continue
            for network in networks:
                if network not in snns:
                    snns[network] = harness.build_snn(network)
                outcomes = [
                    harness.evaluate(reader, network, snns[network], x, args.T, d, Path(tmp), files, not args.no_layout)
                    for d in dtypes
                ]
                first = outcomes[0]
                if not first.loads:
                    cells = ["-"] * len(dtypes)
                    loads = f"no: {first.reason}"
                else:
                    cells = [o.cell() for o in outcomes]
                    loads = "yes"
                note = first.note if first.loads else ""
                file = first.profile + (" without layout" if args.no_layout and first.profile == "portable" else "")
                rows.append(f"| {version} | {network} | {file} | {loads} | {' | '.join(cells)} | {note} |")
    print("\n".join(rows))
    print(f"\n{args.samples} MNIST test images, T = {args.T}, {time.time() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
