"""``ann2snn`` commands."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from converter.cli.commands import batch, convert, inspect, plot, simulate, verify
from converter.cli.params import check_modes as _modes


@click.group()
@click.version_option(package_name="ann2snn")
def main() -> None:
    """Convert ReLU networks into integrate-and-fire SNNs, simulate them, export them to NIR."""


@main.command()
@click.option("--T", "T", type=click.IntRange(min=1), default=50, show_default=True, help="Time steps to simulate.")
@click.option(
    "--limit", type=click.IntRange(min=0), default=1000, show_default=True, help="Test images to use (0: all 10,000)."
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    callback=_modes,
    default=("max", "99.9%", "1/2", "1/3", "1/4", "1/5"),
    show_default=True,
    help="Normalisation mode: max, a percentile like 99.9%, or a fraction like 1/2 (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ann2snn-demo"),
    show_default=True,
    help="Folder for the .nir files and the PNG.",
)
@click.option(
    "--check-samples",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Test images on which the reloaded .nir must reproduce the spike counts.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(T, limit, modes, out, check_samples, threads, quiet):
    """Run the main job on the embedded MNIST data and the shipped seed CNN.

    Converts the CNN in each mode, simulates T steps of constant input, prints accuracy at
    t = 10, 20, 30, 40 and T, writes OUT/mnist_cnn_<mode>.nir, reloads each file and checks
    that its spike counts equal the in-memory SNN's, and saves OUT/accuracy_vs_t.png.

    Example: ann2snn demo --T 50 --limit 0 --out runs/demo
    """
    from converter.cli.demo import run_demo
    from converter.cli.report import format_table, plot_accuracy_curves

    if threads:
        torch.set_num_threads(threads)
    ann_acc, n_test, n_calib, results = run_demo(modes, T, limit, out, check_samples, quiet=quiet)
    checkpoints = [t for t in (10, 20, 30, 40) if t < T] + [T]
    headers = ["mode", "convert s", "simulate s", *(f"acc t={t}" for t in checkpoints), "reload equal", "max diff"]
    rows = [
        [
            r.mode,
            r.conversion_s,
            r.simulation_s,
            *(r.accuracy[t - 1] for t in checkpoints),
            "yes" if r.reload_equal else "NO",
            r.reload_max_diff,
        ]
        for r in results
        if r.error is None
    ]
    click.echo(
        f"ANN accuracy {ann_acc:.2f} % on {n_test} MNIST test images; calibration on {n_calib} "
        f"training images; SNN: IF, reset by subtraction, V[0] = V_th/2, membrane readout, "
        f"constant input, T={T}; "
        f"reload checked on {min(check_samples, n_test)} images."
    )
    click.echo(format_table(headers, rows))
    for r in results:
        if r.error is not None:
            click.echo(f"mode {r.mode}: FAILED: {r.error}", err=True)
    curves = {r.mode: r.accuracy for r in results if r.error is None}
    png = plot_accuracy_curves(
        curves, out / "accuracy_vs_t.png", f"seed CNN on {n_test} MNIST test images", ann_accuracy=ann_acc
    )
    click.echo(f"wrote {len(curves)} .nir files and {png} in {out}")
    if any(r.error or not r.reload_equal for r in results):
        raise SystemExit(1)


for _command in (convert, batch, simulate, inspect, verify, plot):
    main.add_command(_command)
