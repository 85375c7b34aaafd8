"""``ann2snn report``: operations per layer and an arithmetic-only energy estimate of a .nir file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ann2snn.cli.commands import OUT_FILE, LazyBar, file_on_data
from ann2snn.cli.errors import library_errors


@click.command()
@file_on_data
@click.option("--plot", "png", type=OUT_FILE, default=None, help="Also save a bar chart of SynOps against MACs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@library_errors
def report(nir_file: Path, data, T, limit, batch_size, png, as_json, quiet):
    """Spikes, synaptic operations and the ANN's MACs per layer, and an energy estimate.

    Per layer: neurons, fan-in, fan-out, spikes per neuron per inference, firing rate, SynOps
    (each spike times the synapses it drives) and the ANN's multiply-accumulates of the same
    connections. The energy estimate is arithmetic only (0.9 pJ per accumulate, 4.6 pJ per
    float MAC, 45 nm, Horowitz ISSCC 2014): memory access is not counted.

    Example:

    \b
        ann2snn report runs/cnn/a_p99.9_T50.nir --data mnist --T 16 --limit 1000 --plot ops.png
    """
    from ann2snn.nirinfo import MissingTError
    from ann2snn.report import format_report, plot_report, report_file

    bar = LazyBar(total=None, desc="report", disable=quiet or as_json)
    try:
        result = report_file(nir_file, data, T, limit, batch_size, bar.update)
    except MissingTError as exc:
        raise click.BadParameter(str(exc), param_hint="'--T'") from None
    finally:
        bar.close()
    if png is not None:
        plot_report(result, png, f"{nir_file.name}: {result.samples} samples, T={result.T}")
    if as_json:
        click.echo(json.dumps({"file": str(nir_file), **result.to_dict()}, indent=2))
        return
    click.echo(f"{nir_file}: {data}")
    click.echo(format_report(result))
