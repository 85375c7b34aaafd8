"""``ann2snn`` commands."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from ann2snn.cli.check import check
from ann2snn.cli.commands import accuracy_title, batch, convert, inspect, plot, simulate, verify
from ann2snn.cli.diagnose import diagnose
from ann2snn.cli.errors import show_logging, warnings_as_lines
from ann2snn.cli.params import check_modes as _modes
from ann2snn.cli.report import report
from ann2snn.data import DEFAULT_LIMIT, LIMIT_HELP
from ann2snn.pipeline import DEMO_MODES, demo_job, run_job
from ann2snn.plots import AccuracyCurve, plot_accuracy_curves
from ann2snn.tables import format_table


@click.group()
@click.version_option(package_name="ann2snn")
@click.option(
    "--verbose",
    "-v",
    "verbosity",
    count=True,
    help="Show the library's log lines on stderr (-v: what each conversion step did; -vv: debug).",
)
def main(verbosity: int) -> None:
    """Convert ReLU networks into integrate-and-fire SNNs, simulate them, export them to NIR.

    Put --verbose before the command: ann2snn -v convert ...
    """
    warnings_as_lines()
    show_logging(verbosity)


@main.command()
@click.option("--T", "T", type=click.IntRange(min=1), default=50, show_default=True, help="Time steps to simulate.")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, help=LIMIT_HELP)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    callback=_modes,
    default=DEMO_MODES,
    show_default=True,
    help="Normalisation mode: max, a percentile like 99.9%, or a fraction like 1/2 (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ann2snn-demo"),
    show_default=True,
    help="Folder for the .nir files, the summary and the PNG.",
)
@click.option(
    "--check-samples",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Test images on which the reloaded .nir must reproduce the spike counts.",
)
@click.option(
    "--weight-bits",
    type=click.IntRange(2, 16),
    default=None,
    metavar="N",
    help="Quantise to N-bit signed integer weights (2-16), integer biases and thresholds (default: float).",
)
@click.option(
    "--state-bits",
    type=click.IntRange(2, 32),
    default=None,
    metavar="M",
    help="With --weight-bits: saturate the integer membrane to M bits (default: no saturation).",
)
@click.option(
    "--encoding",
    type=click.Choice(["constant", "rate", "poisson"]),
    default="constant",
    show_default=True,
    help="Input: constant (analog), rate (regular IF-encoder spikes, calibrated for) or poisson.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(T, limit, modes, out, check_samples, weight_bits, state_bits, encoding, threads, quiet):
    """Run the main job on the embedded MNIST data and the shipped seed CNN.

    Converts the CNN in each mode, simulates T steps of constant input, prints accuracy at
    t = 10, 20, 30, 40 and T, writes OUT/mnist_cnn_<mode>_T<T>.nir, reloads each file and
    checks that its spike counts equal the in-memory SNN's, and saves OUT/accuracy_vs_t.png
    (and OUT/summary.csv, OUT/summary.json). Exit status 1 if any mode failed.

    Example: ann2snn demo --T 50 --limit 0 --out runs/demo
    """
    if threads:
        torch.set_num_threads(threads)
    try:
        job = demo_job(
            tuple(modes),
            T,
            limit,
            out,
            check_samples,
            weight_bits=weight_bits,
            state_bits=state_bits,
            encoding=encoding,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    summary = run_job(job, force=True, quiet=quiet, echo=lambda line: click.echo(line, err=True))
    rows = [r for r in summary.rows if r.accuracy_per_t is not None]
    steps = [t for t in (10, 20, 30, 40) if t < T] + [T]
    headers = ["mode", "convert s", "simulate s", *(f"acc t={t}" for t in steps), "reload", "max diff"]
    cells = [
        [r.mode, r.conversion_s, r.simulation_s, *(r.accuracy_per_t[t - 1] for t in steps), r.round_trip or "-"]
        + [r.round_trip_max_diff]
        for r in rows
    ]
    settings = summary.settings
    ann = summary.rows[0].ann_accuracy
    click.echo(
        f"ANN accuracy {ann:.2f} % on {settings['evaluation_samples']} MNIST test images; calibration on "
        f"{settings['calibration_samples']} training images; SNN: IF, reset by subtraction, V[0] = V_th/2, "
        f"membrane readout, {encoding} input, T={T}; reload checked on "
        f"{min(check_samples, settings['evaluation_samples'])} images."
    )
    click.echo(format_table(headers, cells))
    curves = [AccuracyCurve("seed CNN", r.mode, r.accuracy_per_t, ann) for r in rows if r.accuracy_per_t]
    if curves:
        title = accuracy_title({**settings, "data": "MNIST test"}, T)
        png = plot_accuracy_curves(curves, out / "accuracy_vs_t.png", title)
        click.echo(f"wrote {len(curves)} .nir files and {png} in {out}")
    if summary.failed:
        raise SystemExit(1)


for _command in (convert, batch, simulate, inspect, verify, plot, report, diagnose, check):
    main.add_command(_command)
