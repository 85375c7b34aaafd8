"""``ann2snn check``: does a .nir file fit a hardware target (Speck 2f, Loihi 2, SpiNNaker2, int8)?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ann2snn.cli.commands import FILE
from ann2snn.cli.errors import library_errors


def format_check(report) -> list[str]:
    """The lines ``ann2snn check`` prints: one per violation, then the resources, then the verdict."""
    lines = [v.line() for v in report.violations]
    for row in report.resources:
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    lines += [f"note: {n}" for n in report.notes]
    verdict = "fits" if report.fits else f"does not fit ({len(report.violations)} violations)"
    lines.append(f"{report.target}: {verdict}")
    return lines


@click.command()
@click.argument("nir_file", type=FILE)
@click.option("--target", "target_name", required=True, help="speck2f, loihi2, spinnaker2 or int8.")
@click.option("--json", "as_json", is_flag=True, help="Print the check as JSON (for scripts).")
@library_errors
def check(nir_file: Path, target_name: str, as_json: bool):
    """Check a .nir file against a hardware target: every violation as one line (layer, rule,
    value, limit), then the resources per layer (Speck: core, kernel, neuron and bias memory
    against the core's budget). Exit status 1 when anything does not fit, 0 when it fits.

    Example:

    \b
        ann2snn check runs/cnn/a_p99.9_T16.nir --target speck2f
    """
    from exporters.targets import TARGETS, check_file

    if target_name not in TARGETS:
        raise click.BadParameter(
            f"unknown target {target_name!r}: known targets are {', '.join(sorted(TARGETS))}",
            param_hint="'--target'",
        )
    report = check_file(nir_file, target_name)
    if as_json:
        click.echo(json.dumps({"file": str(nir_file), **report.to_dict()}, indent=2))
    else:
        click.echo("\n".join(format_check(report)))
    if not report.fits:
        raise SystemExit(1)
