"""``ann2snn diagnose`` (per-layer fidelity of a .nir file against its ANN) and
``ann2snn plot raster`` (spike trains of one layer for one sample)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ann2snn.cli.commands import FILE, OUT_FILE, LazyBar, _model_entries, file_on_data, model_options, plot
from ann2snn.cli.errors import library_errors
from ann2snn.cli.params import DATA, DATA_HELP, DEVICE
from ann2snn.data import DEFAULT_LIMIT


@click.command()
@file_on_data
@model_options(required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the table (and the plotted points) as JSON.")
@click.option("--plot", "png", type=OUT_FILE, default=None, help="Also save a scatter panel per layer as a PNG.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto.")
@library_errors
def diagnose(
    nir_file,
    data,
    T,
    limit,
    batch_size,
    model,
    weights,
    no_weights,
    model_args,
    trust_pickle,
    as_json,
    png,
    quiet,
    device,
):
    """Where a conversion loses accuracy: each IF layer's rate against the ANN's activation / λ.

    Runs the ANN (--model, as given to convert) and the .nir file on the same samples and
    prints, per IF layer: correlation, mean absolute error, the % of neurons saturated (rate 1),
    with an activation above λ (a > 1) and silent (rate 0 while a ≥ 1/T), and the first layer
    whose error grows (MAE > 2 × the previous layer's + 1/(2T), more than 1 % of a above λ, or
    a correlation 0.1 below the previous layer's or below 0.5); a warning when every layer's
    correlation is below 0.5 (weights that do not match the model).

    Example:

    \b
        ann2snn diagnose runs/cnn/a_p99.9_T50.nir --model ann2snn.zoo.mnist_cnn:MnistCNN \\
            --weights a.pt --T 16 --limit 200 --plot layers.png
    """
    from ann2snn.diagnose import diagnose_file, format_fidelity
    from ann2snn.nirinfo import MissingTError
    from ann2snn.plots import plot_layer_fidelity

    (entry,) = _model_entries(model, (weights,) if weights else (), trust_pickle, no_weights, (), model_args)
    bar = LazyBar(desc="diagnose", unit="sample", disable=quiet or as_json)
    try:
        report = diagnose_file(nir_file, entry.spec, data, T, limit, batch_size, bar.update, device)
    except MissingTError as exc:
        raise click.BadParameter(str(exc), param_hint="'--T'") from None
    finally:
        bar.close()
    result = report.to_dict()
    if png is not None:
        plot_layer_fidelity(result, png, f"{nir_file.name}: {report.samples} samples, T={report.T}")
    if as_json:
        click.echo(json.dumps({"file": str(nir_file), **result}, indent=2))
        return
    click.echo(f"{nir_file} against {entry.name}: {report.samples} samples of {data}, T={report.T}")
    click.echo(format_fidelity(report))
    if png is not None:
        click.echo(f"wrote {png}")


@plot.command("raster")
@click.argument("nir_file", type=FILE)
@click.option("--data", type=DATA, default="mnist", show_default=True, help=DATA_HELP)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Sample index (0-based) among the --limit samples.",
)
@click.option("--layer", required=True, help="IF layer (NIR node name), e.g. if_network_2.")
@click.option(
    "--neurons",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Neurons shown: the N most active (the title says N of how many).",
)
@click.option("--T", "T", type=click.IntRange(min=1), default=None, help="Time steps (default: the file's T).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=DEFAULT_LIMIT,
    help=f"--sample indexes the samples simulate and diagnose take with this --limit (default {DEFAULT_LIMIT}, "
    "as in every command; 0: all): the first N, or N spread evenly over an image folder.",
)
@click.option("--out", type=OUT_FILE, default=Path("raster.png"), show_default=True, help="PNG to write.")
@library_errors
def plot_raster_command(nir_file, data, sample, layer, neurons, T, limit, out):
    """Spike raster of one IF layer for one sample, the input image beside it.

    Example:

    \b
        ann2snn plot raster runs/cnn/a_p99.9_T50.nir --sample 3 --layer if_network_6 --out raster.png
    """
    from ann2snn.diagnose import raster_file
    from ann2snn.nirinfo import MissingTError
    from ann2snn.plots import plot_raster

    try:
        raster, image = raster_file(nir_file, data, sample, layer, T, neurons, limit)
    except MissingTError as exc:
        raise click.BadParameter(str(exc), param_hint="'--T'") from None
    except ValueError as exc:
        text = str(exc)
        hint = "'--layer'" if text.startswith("no IF layer") else "'--sample'" if text.startswith("sample ") else None
        if hint is None:
            raise
        raise click.BadParameter(text, param_hint=hint) from None
    plot_raster(raster, image, out, f"{nir_file.name}, sample {sample}, T={raster.T}", sample=sample)
    label = "" if raster.label is None else f"label {raster.class_name(raster.label)}, "
    predicted = "?" if raster.prediction is None else raster.class_name(raster.prediction)
    click.echo(
        f"wrote {out}: {int(raster.spikes.sum())} spikes of {len(raster.neurons)} neurons of {layer} "
        f"(sample {sample}: {label}predicted {predicted})"
    )
