"""``ann2snn convert``, ``batch``, ``simulate``, ``inspect`` and ``plot``: thin click commands
over the library and the batch runner (:mod:`ann2snn.pipeline`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from click.core import ParameterSource

from ann2snn.cli.errors import library_errors
from ann2snn.cli.params import BATCH_HELP, DATA, DATA_HELP, DEVICE, MODEL, SHAPE, check_model_args, check_modes
from ann2snn.data import DEFAULT_LIMIT, LIMIT_HELP
from ann2snn.jobfile import JobFileError, read_job
from ann2snn.models import ModelLoadError, ModelSpec, refusal
from ann2snn.pipeline import CALIBRATION_SAMPLES, TARGET_FIELDS, Job, ModelEntry, run_job
from ann2snn.plots import IF_RATE_DEFAULT_T, AccuracyCurve, plot_accuracy_curves, plot_if_rate
from ann2snn.progress import Bar, progress_bar
from ann2snn.tables import format_graph, format_simulation, format_summary
from simulator import distributed
from simulator.neuron import SPIKE_RULES

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
OUT_FILE = click.Path(dir_okay=False, path_type=Path)


class LazyBar:
    """A ``progress(n)`` callback whose bar (:func:`ann2snn.progress.progress_bar`) opens at the
    first update, so that a command failing before any work draws no bar."""

    def __init__(self, **options) -> None:
        self.options = options
        self.bar: Bar | None = None

    def update(self, n: int) -> None:
        if self.bar is None:
            self.bar = progress_bar(**self.options)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def given_options(ctx: click.Context, names) -> tuple[str, ...]:
    """Those of the parameters ``names`` the user gave (command line or environment), not
    defaults: a hardware target refuses a setting given explicitly that it sets otherwise."""
    defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)
    return tuple(name for name in names if ctx.get_parameter_source(name) not in defaults)


def output_options(command):
    """``--quiet`` and ``--json``, shared by the commands that run work."""
    command = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")(command)
    return click.option("--quiet", is_flag=True, help="No progress bars.")(command)


def run_options(command):
    """Options shared by ``convert`` and ``batch``."""
    command = click.option("--force", is_flag=True, help="Redo combinations whose outputs already exist.")(command)
    return output_options(command)


def _model_entries(
    model,
    weights: tuple[Path, ...],
    trust_pickle: bool,
    no_weights: bool,
    names: tuple[str, ...],
    model_args: dict | None = None,
) -> tuple[ModelEntry, ...]:
    kind, value = model
    kwargs = model_args or {}
    if kind == "pickle" and kwargs:
        raise click.BadParameter(
            f"{value} is a whole pickled model, not built by a factory: --model-arg goes with "
            "--model package.module:factory",
            param_hint="'--model-arg'",
        )
    if kind == "pickle":
        if weights:
            raise click.BadParameter(
                f"{value} is a whole pickled model and holds its weights; --weights "
                "goes with --model package.module:factory",
                param_hint="'--weights'",
            )
        if not trust_pickle:
            raise click.BadParameter(refusal(value), param_hint="'--model'")
        specs = [ModelSpec(pickled=value, trust_pickle=True)]
    else:
        try:
            specs = [ModelSpec(factory=value, weights=w, kwargs=kwargs) for w in weights] or [
                ModelSpec(factory=value, no_weights=no_weights, kwargs=kwargs)
            ]
        except ModelLoadError as exc:
            raise click.BadParameter(str(exc), param_hint="'--weights'") from None
    if names and len(names) != len(specs):
        raise click.BadParameter(
            f"{len(names)} --name for {len(specs)} model(s): give one --name per --weights file", param_hint="'--name'"
        )
    try:
        return tuple(
            ModelEntry(name, spec) for name, spec in zip(names or [s.default_name for s in specs], specs, strict=True)
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--name'") from None


def _run(job: Job, force: bool, quiet: bool, as_json: bool) -> None:
    summary = run_job(job, force=force, quiet=quiet, echo=lambda line: click.echo(line, err=True))
    if not distributed.is_main():  # under torchrun rank 0 alone prints
        raise SystemExit(1 if summary.failed else 0)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(format_summary(summary.rows))
        counts = ", ".join(f"{n} {status}" for status, n in summary.counts().items())
        click.echo(f"{counts}; summary.csv and summary.json in {job.out}")
    if summary.failed:
        raise click.ClickException(f"{summary.failed} of {len(summary.rows)} combinations failed (see summary.csv)")


@click.command()
@click.option(
    "--model",
    "model",
    type=MODEL,
    required=True,
    help="package.module:factory (or file.py:factory) returning an nn.Module, or a pickled model file.",
)
@click.option(
    "--weights",
    type=FILE,
    multiple=True,
    help="state_dict for the factory's model, read with weights_only=True (repeatable: one run per file).",
)
@click.option(
    "--no-weights",
    is_flag=True,
    help="Convert the factory's model as it is built, without --weights (a factory that loads trained weights "
    "itself; otherwise the weights are random).",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Name used in file names and the summary (default: the weights file's stem; repeatable: one per --weights).",
)
@click.option(
    "--model-arg",
    "model_args",
    multiple=True,
    metavar="NAME=VALUE",
    callback=check_model_args,
    help="Keyword argument for the factory, e.g. width=32 (repeatable; VALUE read as a Python literal, else a string).",
)
@click.option("--trust-pickle", is_flag=True, help="Allow --model FILE.pt to be unpickled (it can run code).")
@click.option(
    "--data",
    type=DATA,
    default="mnist",
    show_default=True,
    help=DATA_HELP,
)
@click.option("--calib-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Calibration samples.")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, help=LIMIT_HELP)
@click.option("--input-shape", type=SHAPE, default=None, help="Sample shape when the data's is not the model's.")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    default=("99.9%",),
    callback=check_modes,
    show_default=True,
    help="Normalisation: max, a percentile like 99.9%, or a fraction like 1/2 (repeatable).",
)
@click.option(
    "--T",
    "Ts",
    type=click.IntRange(min=1),
    multiple=True,
    default=(50,),
    show_default=True,
    help="Time steps to simulate (repeatable).",
)
@click.option(
    "--v-init",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Initial membrane potential as a fraction of the threshold (0: the seed's behaviour).",
)
@click.option(
    "--readout",
    type=click.Choice(["membrane", "spike_count"]),
    default="membrane",
    show_default=True,
    help="Output layer: integrate without spiking (membrane) or count its spikes (the seed's).",
)
@click.option("--channel-wise", is_flag=True, help="One scale per output channel instead of per layer.")
@click.option(
    "--export-profile",
    type=click.Choice(["exact", "portable", "recurrent"]),
    default="exact",
    show_default=True,
    help="exact: our nodes and metadata; portable: AvgPool as SumPool, Scale folded "
    "(for other readers); recurrent: reset by subtraction as pure NIR, I -> Threshold -> Scale -> I.",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="Calibrate for each T (scale search and bias correction on --calibrate-samples samples).",
)
@click.option(
    "--calibrate-samples",
    type=click.IntRange(min=1),
    default=CALIBRATION_SAMPLES,
    show_default=True,
    metavar="N",
    help="How many of the --calib-size samples (the first ones) --calibrate fits on; more is slower "
    "and can be better at low T.",
)
@click.option(
    "--calibrate-weights",
    is_flag=True,
    help="Also fit the weights feeding each IF layer to the ANN, layer by layer, for each T (implies "
    "--calibrate; best at T <= 16; about 12 s per T for the seed CNN).",
)
@click.option(
    "--spike-rule",
    type=click.Choice(list(SPIKE_RULES)),
    default=">=",
    show_default=True,
    help="IF neurons: spike at V >= V_th, at V > V_th (NIR's rule), burst neurons (multi: several spikes "
    "per step) or signed neurons (signed: a -1 spike when V < 0 takes back an earlier one; not on Speck).",
)
@click.option(
    "--weight-bits",
    type=click.IntRange(2, 16),
    default=None,
    metavar="N",
    help="Quantise to N-bit signed integer weights (2-16) with integer biases and thresholds, "
    "one factor per layer (default: float).",
)
@click.option(
    "--state-bits",
    type=click.IntRange(2, 32),
    default=None,
    metavar="M",
    help="With --weight-bits: saturate the integer membrane to M bits (2-32); every threshold must fit "
    "(default: no saturation).",
)
@click.option(
    "--encoding",
    type=click.Choice(["constant", "rate", "poisson"]),
    default="constant",
    show_default=True,
    help="The SNN's input: constant (analog current), rate (regular spikes of IF encoders, inputs in "
    "[0, 1], calibrated for) or poisson (Bernoulli spikes; converted as for constant input).",
)
@click.option(
    "--target",
    "target_name",
    default=None,
    metavar="NAME",
    help="Convert for a hardware target (speck2f, loihi2, spinnaker2, int8): its bit widths, reset and "
    "spike rule, no biases, spike input and readout; each file must then pass ann2snn check --target.",
)
@click.option(
    "--target-bias",
    type=click.Choice(["none", "leak", "keep"]),
    default=None,
    help="With --target: keep the biases the target removes by default. leak (speck2f): 8-bit biases at each "
    "layer's weight scale, added once per time step, i.e. Speck's leak with one slow-clock tick per time step; "
    "keep (loihi2): 13-bit biases, lava-nc's bias_mant (default: none, biases removed).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ann2snn-out"),
    show_default=True,
    help="Folder for the .nir files and the summary.",
)
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto.")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=100, show_default=True, help="Samples per simulation batch."
)
@click.option(
    "--check-samples",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Samples on which each reloaded .nir must reproduce the SNN's spike counts.",
)
@run_options
@library_errors
def convert(
    model,
    weights,
    no_weights,
    names,
    model_args,
    trust_pickle,
    data,
    calib_size,
    limit,
    input_shape,
    modes,
    Ts,
    v_init,
    readout,
    channel_wise,
    export_profile,
    calibrate,
    calibrate_weights,
    calibrate_samples,
    spike_rule,
    weight_bits,
    state_bits,
    encoding,
    target_name,
    target_bias,
    out,
    device,
    batch_size,
    check_samples,
    force,
    quiet,
    as_json,
):
    """Convert a model (one or more checkpoints) in each mode, simulate each T, export .nir.

    Writes OUT/<model>_<mode>_T<T>.nir per combination, OUT/summary.csv and OUT/summary.json.
    A failing checkpoint is reported and the others still run; the exit status is 1 if any
    combination failed. A re-run skips finished combinations unless --force.

    Example:

    \b
        ann2snn convert --model ann2snn.zoo.mnist_cnn:MnistCNN \\
            --weights a.pt --weights b.pt --mode max --mode 99.9% \\
            --T 20 --T 50 --limit 1000 --out runs/cnn
    """
    entries = _model_entries(model, weights, trust_pickle, no_weights, names, model_args)
    calibrate = calibrate or calibrate_weights
    try:
        job = Job(
            entries,
            tuple(modes),
            tuple(dict.fromkeys(Ts)),
            out,
            data,
            calib_size,
            limit,
            input_shape,
            v_init,
            device,
            batch_size,
            check_samples,
            readout,
            channel_wise,
            calibrate,
            export_profile,
            calibrate_weights,
            weight_bits,
            state_bits,
            encoding,
            target_name,
            explicit=given_options(click.get_current_context(), TARGET_FIELDS),
            target_bias=target_bias,
            calibrate_samples=calibrate_samples,
            spike_rule=spike_rule,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _run(job, force, quiet, as_json)


@click.command()
@click.argument("job_file", type=FILE)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (overrides the job file's 'out').",
)
@click.option("--device", type=DEVICE, default=None, help="cpu, cuda, cuda:N, mps or auto (overrides the job file).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"Evaluation samples (overrides the job file's limit; default {DEFAULT_LIMIT}; 0: all).",
)
@run_options
@library_errors
def batch(job_file, out, device, limit, force, quiet, as_json):
    """Run a TOML job file: every model × mode × T, one .nir each, one summary.

    The job file lists `modes`, `T`, `data`, `out` and [[models]] tables with `name`,
    `model` (package.module:factory or a pickled file) and `weights`; see docs/cli.md (job files).

    Example:

    \b
        ann2snn batch job.toml --out runs/job
    """
    try:
        job = read_job(job_file, out=out, device=device, limit=limit)
    except JobFileError as exc:
        raise click.BadParameter(str(exc), param_hint="'JOB_FILE'") from None
    _run(job, force, quiet, as_json)


def file_on_data(command):
    """``NIR_FILE``, ``--data``, ``--T``, ``--limit`` and ``--batch-size``: a .nir file run on data
    (``simulate``, ``report``)."""
    for decorator in reversed(
        [
            click.argument("nir_file", type=FILE),
            click.option(
                "--data",
                type=DATA,
                default="mnist",
                show_default=True,
                help=DATA_HELP,
            ),
            click.option(
                "--T", "T", type=click.IntRange(min=1), default=None, help="Time steps (default: the file's T)."
            ),
            click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, help=LIMIT_HELP),
            click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True, help=BATCH_HELP),
        ]
    ):
        command = decorator(command)
    return command


def model_options(required: bool):
    """``--model``, ``--weights``, ``--no-weights``, ``--model-arg``, ``--trust-pickle``: one ANN,
    as ``convert`` takes it (``diagnose`` needs it; ``simulate`` takes it for the ANN's accuracy)."""
    need = "" if required else " Optional: also run this ANN on the same samples."

    def decorate(command):
        for decorator in reversed(
            [
                click.option(
                    "--model",
                    "model",
                    type=MODEL,
                    required=required,
                    help="package.module:factory (or file.py:factory) returning the ANN, or a pickled model file."
                    + need,
                ),
                click.option("--weights", type=FILE, default=None, help="state_dict for the factory's model."),
                click.option(
                    "--no-weights", is_flag=True, help="Use the factory's model as it is built (its own weights)."
                ),
                click.option(
                    "--model-arg",
                    "model_args",
                    multiple=True,
                    metavar="NAME=VALUE",
                    callback=check_model_args,
                    help="Keyword argument for the factory, e.g. width=32 (repeatable).",
                ),
                click.option(
                    "--trust-pickle", is_flag=True, help="Allow --model FILE.pt to be unpickled (it can run code)."
                ),
            ]
        ):
            command = decorator(command)
        return command

    return decorate


@click.command()
@file_on_data
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto.")
@click.option(
    "--plot",
    "png",
    type=OUT_FILE,
    default=None,
    help="Also save accuracy against t as a PNG (with the ANN's line when --model is given).",
)
@model_options(required=False)
@click.option(
    "--early-exit",
    "early_exit",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Stop simulating a sample once its prediction has been stable for K steps (20 keeps the "
    "seed CNN within 0.2 points); reports the mean steps used.",
)
@click.option(
    "--cpu-kernels",
    "cpu_kernels",
    type=click.Choice(["torch", "compiled"]),
    default="torch",
    show_default=True,
    help="compiled: on the CPU, run the IF layers and the convolutions of spikes by C kernels compiled "
    "here (needs a C compiler; convolutions summed in another order: docs/simulation.md).",
)
@output_options
@library_errors
def simulate(
    nir_file,
    data,
    T,
    limit,
    batch_size,
    device,
    png,
    model,
    weights,
    no_weights,
    model_args,
    trust_pickle,
    early_exit,
    cpu_kernels,
    quiet,
    as_json,
):
    """Simulate a .nir file on data: accuracy per t and spikes per IF layer.

    Samples are reshaped to the file's input shape when their sizes agree.

    Example:

    \b
        ann2snn simulate runs/cnn/a_p99.9_T50.nir --data mnist --T 50 --limit 1000
    """
    from ann2snn.nirinfo import MissingTError, display_steps, open_for_simulation, simulate_dataset

    if model is None:
        given = [
            name
            for name, value in (
                ("--weights", weights),
                ("--no-weights", no_weights),
                ("--model-arg", model_args),
                ("--trust-pickle", trust_pickle),
            )
            if value
        ]
        if given:
            raise click.UsageError(f"{', '.join(given)} need --model (the ANN to run beside the SNN)")
    try:
        snn, dataset, T = open_for_simulation(nir_file, data, T, limit, device)
    except MissingTError as exc:
        raise click.BadParameter(str(exc), param_hint="'--T'") from None
    if png is not None and dataset.y is None:
        raise click.BadParameter(
            f"{data} has no labels, so there is no accuracy to plot (a .npy holds inputs only: "
            "give a .npz with x and y)",
            param_hint="'--plot'",
        )
    ann_acc = None
    if model is not None:
        from ann2snn.models import load_model
        from ann2snn.pipeline import ann_accuracy

        (entry,) = _model_entries(model, (weights,) if weights else (), trust_pickle, no_weights, (), model_args)
        ann_acc = ann_accuracy(load_model(entry.spec).eval().to(device), dataset, batch_size)
    with progress_bar(total=len(dataset.x), desc=f"simulate T={T}", unit="sample", disable=quiet or as_json) as bar:
        stats = simulate_dataset(snn, dataset, T, batch_size, bar.update, early_exit, cpu_kernels)
    written = None
    if png is not None and stats.accuracy_per_t is not None:  # labels: checked above
        name = entry.name if model is not None else nir_file.stem
        curve = AccuracyCurve(name, "", stats.accuracy_per_t, ann_acc)
        written = plot_accuracy_curves([curve], png, simulation_title(nir_file.name, snn, stats.samples, data, stats.T))
    if as_json:  # stdout stays one JSON object: no "wrote" line
        extra = {} if model is None else {"ann_accuracy": ann_acc}
        click.echo(json.dumps({"file": str(nir_file), **stats.to_dict(), **extra}, indent=2))
        return
    acc = "no labels, no accuracy" if stats.accuracy is None else f"accuracy {stats.accuracy:.2f} %"
    if ann_acc is not None:
        acc += f" (ANN {ann_acc:.2f} %)"
    click.echo(f"{nir_file}: {stats.samples} samples of {data}, T={stats.T}: {acc}")
    if early_exit:
        click.echo(
            f"early exit after {early_exit} stable steps: {stats.mean_steps:.1f} of {stats.T} steps per "
            "sample on average (accuracy at t counts a sample's held prediction after its exit)"
        )
    click.echo(format_simulation(stats, display_steps(stats.T)))
    if written is not None:
        click.echo(f"wrote {written}")


def simulation_title(name: str, snn: torch.nn.Module, samples: int, data, T: int) -> str:
    """The title of ``simulate --plot``: the file, samples and data, then T, V[0] (the IF layers'
    initial potential as a fraction of V_th; ``mixed`` when they differ) and the readout.

    Example:
        >>> from simulator import IFNeuron, Integrator
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), IFNeuron(v_init=0.5), torch.nn.Linear(3, 2), Integrator())
        >>> print(simulation_title("a.nir", net, 100, "mnist", 16))
        a.nir on 100 samples of mnist
        T = 16, V[0] = 0.5 V_th, membrane readout
    """
    from simulator import IFNeuron
    from simulator.simulate import readout_kind

    v_inits = sorted({float(m.v_init) for m in snn.modules() if isinstance(m, IFNeuron)})
    parts = [f"T = {T}"]
    if v_inits:
        parts.append(f"V[0] = {v_inits[0]:g} V_th" if len(v_inits) == 1 else "V[0] mixed")
    parts.append(f"{readout_kind(snn)} readout")
    return f"{name} on {samples} samples of {data}\n{', '.join(parts)}"


@click.command()
@click.argument("nir_file", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@library_errors
def inspect(nir_file, as_json):
    """Show a .nir file's nodes, shapes, parameter ranges and metadata as tables.

    Example:

    \b
        ann2snn inspect runs/cnn/a_p99.9_T50.nir
    """
    from ann2snn.nirinfo import describe_graph
    from exporters import read_nir

    description = describe_graph(read_nir(nir_file))
    click.echo(json.dumps(description, indent=2, default=str) if as_json else format_graph(description))


@click.command()
@click.argument("nir_file", type=FILE)
@click.option(
    "--data",
    type=DATA,
    default=None,
    help="Also simulate on data (mnist, an IDX folder, an image folder or .zip, .npz, .npy) under each kind of "
    "reader's rules.",
)
@click.option(
    "--T", "T", type=click.IntRange(min=1), default=None, help="Time steps for --data (default: the file's T)."
)
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, help=LIMIT_HELP)
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True, help=BATCH_HELP)
@output_options
@library_errors
def verify(nir_file, data, T, limit, batch_size, quiet, as_json):
    """Reload a .nir file and reproduce the reference outputs embedded in it (exit 1 on any
    difference). Files exported with T carry a few inputs and our simulator's exact outputs.

    With --data, also show what each kind of reader will do with the file: accuracy and
    per-layer spike-count differences under (a) our exact rules (the file's metadata), (b)
    NIR's reset to zero with v > V_th (Norse, SpikingJelly), (c) several spikes per step with
    the membrane clamped at -V_th (Sinabs).

    Example:

    \b
        ann2snn verify ann2snn-demo/mnist_cnn_p99.9_T50.nir
        ann2snn verify ann2snn-demo/mnist_cnn_p99.9_T50.nir --data mnist --limit 500
    """
    from ann2snn.nirinfo import MissingTError, check_file
    from ann2snn.tables import format_readers
    from exporters.verify import READER_KINDS

    bar = LazyBar(desc="3 readers", unit="sample", disable=quiet or as_json)
    try:
        result = check_file(nir_file, data, T, limit, batch_size, bar.update)
    except MissingTError as exc:
        raise click.BadParameter(str(exc), param_hint="'--T'") from None
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.message())
        if result.readers is not None:
            click.echo(f"\n{result.readers[0].samples} samples of {data}, T={result.T}:\n")
            click.echo(format_readers(result.readers, READER_KINDS))
    if not result.equal:
        raise SystemExit(1)


@click.group()
def plot():
    """Figures: accuracy against t from a batch summary, the IF neuron's rate against input, or
    the spike raster of one layer for one sample of a .nir file.

    Example:

    \b
        ann2snn plot accuracy runs/cnn/summary.json --out runs/cnn/accuracy.png
        ann2snn plot if-rate --T 8 --out if_rate.png
        ann2snn plot raster runs/cnn/a_p99.9_T50.nir --sample 3 --layer if_network_6
    """


@plot.command("accuracy")
@click.argument("summary", type=FILE)
@click.option("--out", type=OUT_FILE, default=None, help="PNG to write (default: beside the summary).")
@click.option("--full-scale", is_flag=True, help="Show the y-axis from 0 to 100 % (default: zoomed to the data).")
@library_errors
def plot_accuracy(summary, out, full_scale):
    """Accuracy against time step t from a summary.json: a colour per model, a line style per
    mode, a dashed ANN line per model; V[0], readout and T in the title. Per model and mode the
    longest T's curve, and a shorter T's too where it differs (--calibrate fits each T).

    Example:

    \b
        ann2snn plot accuracy runs/cnn/summary.json --out runs/cnn/accuracy.png
    """
    try:
        document = json.loads(summary.read_text())
        rows = document["rows"]
    except (ValueError, KeyError, TypeError):
        raise click.BadParameter(
            f"{summary} is not a summary.json written by ann2snn convert/batch", param_hint="'SUMMARY'"
        ) from None
    curves = summary_curves(rows)
    if not curves:
        raise click.ClickException(f"{summary} has no accuracy curves (no labels, or every row failed)")
    path = plot_accuracy_curves(
        curves,
        out or summary.with_name("accuracy_vs_t.png"),
        accuracy_title(
            document.get("settings") or {}, ", ".join(str(t) for t in sorted({len(c.accuracy) for c in curves}))
        ),
        full_scale=full_scale,
    )
    click.echo(f"wrote {path}")


def summary_curves(rows: list[dict]) -> list[AccuracyCurve]:
    """The curves of ``plot accuracy`` from a summary's rows: per model and mode the longest T's,
    and each shorter T's that is not the start of a longer one (a different SNN: ``--calibrate``
    fits each T), its mode then labelled with its T (``99.9% T=4``, as are the others of that
    model and mode); rows without ``accuracy_per_t`` (failed, or no labels) are skipped."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in sorted((r for r in rows if r.get("accuracy_per_t")), key=lambda r: -r["T"]):
        kept = groups.setdefault((row["model"], row["mode"]), [])
        acc = list(row["accuracy_per_t"])
        if not any(list(k["accuracy_per_t"][: len(acc)]) == acc for k in kept):
            kept.append(row)
    curves = []
    for (model, mode), kept in groups.items():
        for row in sorted(kept, key=lambda r: r["T"]):
            label = f"{mode} T={row['T']}" if len(kept) > 1 else mode
            curves.append(AccuracyCurve(model, label, row["accuracy_per_t"], row.get("ann_accuracy")))
    return curves


def accuracy_title(settings: dict, T: int | str) -> str:
    """The title of an accuracy plot: T (or the T's, ``"4, 8"``, when curves of several are drawn),
    V[0], readout and samples from a summary's settings."""
    parts = [f"SNN accuracy, T = {T}"]
    if settings.get("v_init") is not None:
        parts.append(f"V[0] = {settings['v_init']:g} V_th")
    if settings.get("readout"):
        parts.append(f"{settings['readout']} readout")
    if settings.get("evaluation_samples"):
        parts.append(f"{settings['evaluation_samples']} samples of {settings.get('data', 'the data')}")
    return ", ".join(parts)


@plot.command("if-rate")
@click.option(
    "--T",
    "T",
    type=click.IntRange(min=1),
    default=IF_RATE_DEFAULT_T,
    show_default=True,
    help="Time steps (at 8 the curves of V[0] = 0 and 1/2 differ visibly; at 100 they overlap).",
)
@click.option(
    "--v-init",
    "v_inits",
    type=click.FloatRange(0, 1),
    multiple=True,
    default=(0.0, 0.5),
    show_default=True,
    help="Initial potential as a fraction of V_th (repeatable: one curve each).",
)
@click.option("--out", type=OUT_FILE, default=Path("if_rate.png"), show_default=True, help="PNG to write.")
def plot_if(T, v_inits, out):
    """An IF neuron's firing rate over T steps against a constant input, beside clip(x, 0, 1).

    Example:

    \b
        ann2snn plot if-rate --T 8 --v-init 0 --v-init 0.5 --out if_rate.png
    """
    from simulator import IFNeuron
    from simulator import simulate as run

    inputs = torch.linspace(-0.1, 1.1, 121)
    rates = {
        f"IF, V[0] = {v:g} V_th": (run(IFNeuron(v_init=v), inputs[None, :], T).outputs.sum(0)[0] / T).tolist()
        for v in v_inits
    }
    click.echo(f"wrote {plot_if_rate(inputs.tolist(), rates, T, out)}")
