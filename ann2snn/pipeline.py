"""The main job as a Python API: models × normalisation modes × time steps T → convert, simulate,
export to NIR, reload and cross-check, summarise. ``ann2snn convert``, ``ann2snn batch`` and
``ann2snn demo`` are each a few lines over :func:`run_job` (the demo is a one-model job,
:func:`demo_job`).

Example (the seed CNN on 200 embedded MNIST test images, one mode, T = 8)::

    from pathlib import Path
    from ann2snn.pipeline import demo_job, run_job

    summary = run_job(demo_job(modes=("99.9%",), T=8, limit=200, out=Path("runs/demo")), quiet=True)
    row = summary.rows[0]     # model, mode, T, ann_accuracy, snn_accuracy (%), file, round_trip, ...

Each combination writes ``<out>/<model>_<mode>_T<T>.nir`` and, beside it, a record
``<model>_<mode>_T<T>.json`` of its summary row and the settings that produced it. A failing
model, mode or combination becomes a row with its error and the others still run. The summary
(``summary.csv``, ``summary.json``) is rewritten atomically after every model, so a killed run
keeps what it finished; a re-run reuses every combination whose .nir and record exist and whose
settings match, unless ``force``.

Conversion runs once per (model, mode); simulation runs once per (model, mode) at the largest
pending T, and every smaller T reads its accuracy off the same run (the simulation is causal:
the prediction at step t does not depend on later steps). ``simulated_T`` in each row says
which run ``simulation_s`` timed.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

from ann2snn.data import DataSet, DataSource, load_data
from ann2snn.distributed import init_from_env, local_device
from ann2snn.models import PROVENANCE_KEY, ModelSpec, load_model
from ann2snn.progress import Bar, progress_bar
from converter import Converter, fold_sum_pools, parse_mode, quantize
from converter.converter import CALIBRATION_SAMPLES
from converter.quantize import MAX_STATE_BITS, MAX_WEIGHT_BITS, check_bits
from converter.readout import READOUTS
from exporters import PROFILES, compare_spike_counts, export_nir, import_nir
from exporters.atomic import atomic_path
from exporters.recurrent import ONE_SPIKE_RULES
from simulator import META_KEY, distributed, evaluate
from simulator.neuron import SPIKE_RULES
from simulator.simulate import ENCODINGS

SUMMARY_FIELDS = (
    "model",
    "mode",
    "T",
    "ann_accuracy",
    "snn_accuracy",
    "conversion_s",
    "simulation_s",
    "simulated_T",
    "round_trip",
    "round_trip_max_diff",
    "file",
    "status",
    "error",
)


@dataclass(frozen=True)
class ModelEntry:
    """One model of a job; ``name`` is used in file names and the summary."""

    name: str
    spec: ModelSpec

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][\w.+-]*", self.name):
            raise ValueError(f"model name {self.name!r} must be letters, digits, '_', '-', '.', '+' (it names files)")


#: The :class:`Job` fields a hardware target may set, with their defaults.
TARGET_FIELDS: dict[str, object] = {
    "weight_bits": None,
    "state_bits": None,
    "encoding": "constant",
    "readout": "membrane",
    "spike_rule": ">=",
}

#: Time steps of the quantisation's bias correction when the conversion is not calibrated for a T.
QUANTIZE_T = 16


@dataclass(frozen=True)
class Job:
    """Everything a batch run needs; ``ann2snn convert`` options and job files both build one.

    ``limit`` evaluation samples (0: all), ``calib_size`` calibration samples, ``check_samples``
    inputs on which each reloaded .nir must reproduce the SNN's spike counts. ``weight_bits``
    and ``state_bits`` (needs ``weight_bits``): :func:`converter.quantize`'s widths.
    ``encoding``: the SNN's input, ``"constant"`` (analog), ``"rate"`` (regular spikes of IF
    encoders, calibrated for) or ``"poisson"`` (see :meth:`converter`). ``target``: a hardware
    target (:data:`exporters.targets.TARGETS`) whose settings (:func:`target_settings`: bit
    widths, reset and spike rule, no biases, spike input and readout) the conversion takes and
    whose check each exported file must pass (a row that does not fit fails, naming every
    violation; the file is kept for ``ann2snn check``). ``target_bias``: how the target keeps
    the biases instead of removing them (:data:`exporters.targets.BIAS_OPTIONS`: ``"leak"`` for
    Speck 2f, 8-bit biases added once per time step = once per slow-clock tick; ``None`` or
    ``"none"``: the target's default, biases removed). ``explicit``: the names of the fields
    the user gave (a command-line option, a job-file key); such a field that the target sets
    otherwise is refused even when its value is the default (a field not named there is taken
    from the target when it holds its default). ``calibrate_samples``: how many of the
    calibration samples (the first ones, at most ``calib_size``) the ``calibrate`` steps fit on.
    ``spike_rule``: the IF neurons' rule (:data:`simulator.neuron.SPIKE_RULES`): ``">="``,
    ``">"``, ``"multi"`` (burst neurons) or ``"signed"`` (signed neurons; a target whose events
    carry no sign, Speck 2f, refuses it).

    Raises:
        ValueError: no model, mode or T, a repeated model name or normalisation, ``T < 1``, an
            unknown readout, export profile or encoding, ``calibrate_weights`` without
            ``calibrate``, ``calibrate_samples`` < 1 (or not 500 without ``calibrate``), an
            unknown ``spike_rule`` (or ``"signed"`` for a target without signed spikes, or
            ``"multi"``/``"signed"`` with the recurrent export profile), bit
            widths out of range, or ``state_bits`` without ``weight_bits``; an unknown
            ``target`` (listing the known ones) or a setting that contradicts it (naming the
            field and both values: given explicitly, or not its default).
    """

    models: tuple[ModelEntry, ...]
    modes: tuple[str, ...]
    Ts: tuple[int, ...]
    out: Path
    data: DataSource = field(default_factory=lambda: DataSource("mnist"))
    calib_size: int = 1000
    limit: int = 0
    input_shape: tuple[int, ...] | None = None
    v_init: float = 0.5
    device: str = "cpu"
    batch_size: int = 100
    check_samples: int = 100
    readout: str = "membrane"
    channel_wise: bool = False
    calibrate: bool = False
    export_profile: str = "exact"
    calibrate_weights: bool = False
    weight_bits: int | None = None
    state_bits: int | None = None
    encoding: str = "constant"
    target: str | None = None
    explicit: tuple[str, ...] = ()
    target_bias: str | None = None
    calibrate_samples: int = CALIBRATION_SAMPLES
    spike_rule: str = ">="

    def __post_init__(self) -> None:
        if self.spike_rule not in SPIKE_RULES:
            raise ValueError(f"spike_rule must be one of {SPIKE_RULES}, got {self.spike_rule!r}")
        if self.target_bias is not None and self.target is None:
            raise ValueError(f"target_bias={self.target_bias!r} needs a target")
        if self.target is not None:
            self._take_target()
        if not self.models or not self.modes or not self.Ts:
            raise ValueError("a job needs at least one model, one mode and one T")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique, repeated: {', '.join(duplicates)}")
        seen: dict[str, str] = {}
        for mode in self.modes:
            name = parse_mode(mode).file_name
            if name in seen:
                raise ValueError(f"modes {seen[name]!r} and {mode!r} are the same normalisation ({name}): give it once")
            seen[name] = mode
        if any(t < 1 for t in self.Ts):
            raise ValueError(f"every T must be >= 1, got {list(self.Ts)}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.calibrate_weights and not self.calibrate:
            raise ValueError("calibrate_weights needs calibrate (weights are calibrated for each T)")
        if isinstance(self.calibrate_samples, bool) or not isinstance(self.calibrate_samples, int):
            raise ValueError(f"calibrate_samples must be an integer, got {self.calibrate_samples!r}")
        if self.calibrate_samples < 1:
            raise ValueError(f"calibrate_samples must be >= 1, got {self.calibrate_samples}")
        if self.calibrate_samples != CALIBRATION_SAMPLES and not self.calibrate:
            raise ValueError(f"calibrate_samples={self.calibrate_samples} needs calibrate (only calibration uses it)")
        if self.export_profile not in PROFILES:
            raise ValueError(f"export_profile must be one of {PROFILES}, got {self.export_profile!r}")
        if self.export_profile == "recurrent" and self.spike_rule not in ONE_SPIKE_RULES:
            raise ValueError(
                f"export_profile='recurrent' encodes one spike per step (spike_rule '>=' or '>'), "
                f"got spike_rule={self.spike_rule!r}"
            )
        if self.weight_bits is not None:
            check_bits("weight_bits", self.weight_bits, 2, MAX_WEIGHT_BITS)
        if self.state_bits is not None:
            if self.weight_bits is None:
                raise ValueError(f"state_bits={self.state_bits} needs weight_bits (it bounds the integer thresholds)")
            check_bits("state_bits", self.state_bits, 2, MAX_STATE_BITS)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")

    def _take_target(self) -> None:
        """Set the fields the target decides; refuse a field given otherwise (explicitly, or
        not at its default)."""
        wanted = target_settings(str(self.target), self.target_bias)
        for key, default in TARGET_FIELDS.items():
            if key not in wanted:
                continue
            given = getattr(self, key)
            if given != wanted[key] and (key in self.explicit or given != default):
                how = " (given explicitly; leave it out and the target sets it)" if given == default else ""
                raise ValueError(f"target {self.target} sets {key}={wanted[key]!r}, got {key}={given!r}{how}")
            object.__setattr__(self, key, wanted[key])  # frozen: set once, while constructing
        from exporters.targets import TARGETS

        unsigned = TARGETS[str(self.target)].LIMITS.get("unsigned_spikes")
        if self.spike_rule == "signed" and unsigned is not None and unsigned.value:
            raise ValueError(
                f"target {self.target} takes unsigned spikes only ({unsigned.source}): "
                "spike_rule='signed' cannot run there"
            )

    def settings(self) -> dict:
        """The settings that decide a combination's result (besides model, mode and T)."""
        settings = {
            "data": str(self.data),
            "calib_size": self.calib_size,
            "limit": self.limit,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "v_init": self.v_init,
            "check_samples": self.check_samples,
            "readout": self.readout,
            "channel_wise": self.channel_wise,
            "calibrate": self.calibrate,
            "calibrate_weights": self.calibrate_weights,
            "export_profile": self.export_profile,
        }
        if self.weight_bits is not None:  # absent otherwise, so earlier float results still match
            settings["weight_bits"] = self.weight_bits
        if self.state_bits is not None:
            settings["state_bits"] = self.state_bits
        if self.encoding != "constant":
            settings["encoding"] = self.encoding
        if self.target is not None:
            settings["target"] = self.target
        if self.target_bias not in (None, "none"):
            settings["target_bias"] = self.target_bias
        if self.spike_rule != target_settings(self.target).get("spike_rule", ">="):  # absent: earlier results match
            settings["spike_rule"] = self.spike_rule
        if self.calibrate and self.calibrate_samples != CALIBRATION_SAMPLES:  # the count it fits on
            settings["calibrate_samples"] = min(self.calibrate_samples, self.calib_size)
        return settings

    def converter(
        self, mode: str, dataloader, progress, calibrate_T: int | None = None
    ) -> Callable[[nn.Module], fx.GraphModule]:
        """The conversion for one mode (and one T when calibrating): the
        :class:`~converter.Converter`, followed by :func:`converter.quantize` with ``weight_bits``
        and ``state_bits`` and its bias correction on the first 500 calibration samples, simulated
        for the T calibrated for (else :data:`QUANTIZE_T`), then, for a target that sets
        ``fold_pools`` (Loihi 2), :func:`converter.fold_sum_pools`. ``encoding="rate"`` is calibrated
        for (:class:`~converter.Converter`); ``"poisson"`` is converted as for constant input and
        recorded as the SNN's input encoding."""
        convert: Callable[[nn.Module], fx.GraphModule] = self._converter(mode, dataloader, progress, calibrate_T)
        if self.encoding == "poisson":
            convert = _with_encoding(convert, "poisson")
        if self.weight_bits is None:
            return convert
        bits, state, steps = self.weight_bits, self.state_bits, calibrate_T or QUANTIZE_T
        wanted = target_settings(self.target, self.target_bias)
        bias, bias_bits = str(wanted.get("bias", "keep")), wanted.get("bias_bits")

        def quantized(ann: nn.Module) -> fx.GraphModule:
            snn = quantize(
                convert(ann),
                weight_bits=bits,
                state_bits=state,
                bias=bias,
                bias_bits=bias_bits,
                calibration=dataloader,
                calibration_T=steps,
            )
            return fold_sum_pools(snn) if wanted.get("fold_pools") else snn

        return quantized

    def _converter(self, mode: str, dataloader, progress, calibrate_T: int | None) -> Converter:
        neuron = {k: v for k, v in target_settings(self.target).items() if k == "reset"}
        return Converter(
            mode=mode,
            dataloader=dataloader,
            v_init=self.v_init,
            readout=self.readout,
            channel_wise=self.channel_wise,
            calibrate_T=calibrate_T,
            calibrate_weights=self.calibrate_weights and calibrate_T is not None,
            calibration_samples=self.calibrate_samples,
            progress=progress,
            encoding="rate" if self.encoding == "rate" else "constant",
            spike_rule=self.spike_rule,
            **neuron,
        )

    def stem(self, model: str, mode: str, T: int) -> str:
        return f"{model}_{parse_mode(mode).file_name}_T{T}"


def target_settings(name: str | None, target_bias: str | None = None) -> dict:
    """What converting for hardware target ``name`` sets (``{}`` for ``None``): ``weight_bits``,
    ``state_bits``, ``encoding`` (spike input), ``readout``, the neuron's ``reset`` and
    ``spike_rule``, and ``bias`` (``"none"``: :func:`converter.quantize` removes the biases).
    From :data:`exporters.targets.SETTINGS`, whose limits they meet (e.g. Speck 2f: 8-bit
    weights, 16-bit state, no bias, rate spikes, spike-count readout; Loihi 2: 7-bit weights, 18
    bits of state, reset to zero, ``v > V_th``). ``target_bias`` (``None`` or ``"none"``: the
    target's default) replaces ``bias`` by the target's option of that name
    (:data:`exporters.targets.BIAS_OPTIONS`; Speck 2f's ``"leak"``: ``bias="leak"``,
    ``bias_bits=8``).

    Raises:
        ValueError: an unknown target (the message lists the known ones), or a ``target_bias``
            the target does not have (listing those it has).
    """
    if name is None:
        return {}
    from exporters.targets import BIAS_OPTIONS, SETTINGS, target

    target(name)  # raises, listing the known targets
    settings = dict(SETTINGS[name])
    if target_bias not in (None, "none"):
        options = BIAS_OPTIONS.get(name, {})
        if target_bias not in options:
            known = ", ".join(["none", *options])
            raise ValueError(f"target {name} has no target_bias {target_bias!r}: it takes {known}")
        settings.update(options[str(target_bias)])
    if "input_encoding" in settings:
        settings["encoding"] = settings.pop("input_encoding")
    return settings


def _with_encoding(
    convert: Callable[[nn.Module], fx.GraphModule], encoding: str
) -> Callable[[nn.Module], fx.GraphModule]:
    """``convert`` whose SNN records ``encoding`` as its input encoding (:func:`simulator.model_encoding`)."""

    def converted(ann: nn.Module) -> fx.GraphModule:
        snn = convert(ann)
        snn.meta.setdefault(META_KEY, {})["input_encoding"] = encoding
        return snn

    return converted


@dataclass
class Row:
    """One combination's line of the summary. Accuracies in percent (None without labels)."""

    model: str
    mode: str
    T: int
    ann_accuracy: float | None = None
    snn_accuracy: float | None = None
    conversion_s: float | None = None
    simulation_s: float | None = None
    simulated_T: int | None = None
    round_trip: str | None = None  # "equal" or "differ"
    round_trip_max_diff: float | None = None
    file: str | None = None
    status: str = "failed"  # "converted", "reused" or "failed"
    error: str | None = None
    accuracy_per_t: list[float] | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _changed_settings(old: dict, new: dict) -> str:
    """``key: old -> new`` for every setting that differs (the model's fingerprint as ``model``)."""
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return ", ".join(
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" if k != "model" else _model_change(old, new) for k in keys
    )


#: What each part of a model's fingerprint (:meth:`ann2snn.models.ModelSpec.fingerprint`) is called.
_MODEL_PARTS = {
    "factory": "factory",
    "weights_sha256": "other weights",
    "pickle_sha256": "another pickled model",
    "no_weights": "--no-weights",
    "args": "factory arguments (--model-arg)",
    "kwargs": "factory arguments (--model-arg)",
}


def _model_change(old: dict, new: dict) -> str:
    """``model: <what changed>``: the parts of the model's fingerprint that differ, e.g.
    ``model: factory arguments (--model-arg) {} -> {'width': '32'}``, ``model: other weights``."""
    a, b = old.get("model"), new.get("model")
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "model: another model"
    parts: list[str] = []
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) == b.get(key):
            continue
        label = _MODEL_PARTS.get(key, key)
        if key in ("factory", "args", "kwargs"):
            label += f" {a.get(key, {} if key == 'kwargs' else [] if key == 'args' else None)!r} -> "
            label += f"{b.get(key, {} if key == 'kwargs' else [] if key == 'args' else None)!r}"
        if label not in parts:
            parts.append(label)
    return "model: " + (", ".join(parts) or "another model")


def check_model_input(ann: torch.nn.Module, sample: torch.Tensor, name: str) -> None:
    """Run ``ann`` on a few samples ``[b, ...]`` (two where there are) so that a shape mismatch is
    reported before any work: the model must accept them and keep the batch axis (a layer that
    takes ``[2, 28, 28]`` as one unbatched 2-channel image does not).

    Raises:
        ValueError: the model rejects the samples or merges their batch axis (names the model,
            the sample shape and the option that sets it).
    """
    hint = "give the sample shape the model expects with --input-shape C,H,W (input_shape in a job file), e.g. 1,28,28"
    if sample.dim() == 4:  # already images: reshaping cannot change their channels or size
        hint = (
            f"the data's images are {sample.shape[1]} x {sample.shape[2]} x {sample.shape[3]} (C x H x W) and "
            "--input-shape only reshapes samples stored flat: give data with the channels and image size the "
            "model expects"
        )
    try:
        with torch.no_grad():
            out = ann(sample)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model {name} cannot take samples of shape {tuple(sample.shape[1:])} ({first}): {hint}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != sample.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model {name} turns {sample.shape[0]} samples of shape {tuple(sample.shape[1:])} into an output of shape "
            f"{shape}: the samples are not read as a batch; {hint}"
        )


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message``, for a summary cell."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class Runner:
    """Runs a :class:`Job`; ``echo`` receives one line per failure (stderr in the CLI)."""

    def __init__(
        self, job: Job, force: bool = False, quiet: bool = False, echo: Callable[[str], None] = lambda line: None
    ) -> None:
        self.job, self.force, self.quiet, self.echo = job, force, quiet, echo
        self.rows: list[Row] = []
        self.header: dict = {}
        self.bar: Bar | None = None

    def advance(self, items: int) -> None:
        if self.bar is not None:
            self.bar.update(items)

    def run(self) -> list[Row]:
        job = self.job
        data = load_everywhere(job)
        self.header = self.summary_header(data)
        total = len(job.models) * len(job.modes) * len(job.Ts)
        with progress_bar(total=total, desc="batch", unit="item", disable=self.quiet) as self.bar:
            for entry in job.models:
                rows = self.run_model(entry, data)
                self.rows.extend(rows)
                self.report_failures(rows)
                if distributed.is_main():
                    write_summary(job.out, self.rows, self.header)
        self.rows = distributed.broadcast_object(self.rows)  # rank 0's rows (files, round trips) everywhere
        return self.rows

    def report_failures(self, rows: list[Row]) -> None:
        """One line per distinct error of a model, naming the combinations it hit."""
        errors: dict[str, list[str]] = {}
        for row in rows:
            if row.failed:
                errors.setdefault(row.error or "", []).append(f"{row.mode} T={row.T}")
        for error, items in errors.items():
            self.echo(f"FAILED {rows[0].model} ({', '.join(items)}): {error}")

    def summary_header(self, data: DataSet) -> dict:
        return {
            **self.job.settings(),
            "device": self.job.device,
            "evaluation_samples": len(data.x),
            "calibration_samples": len(data.calib),
            "calibration_source": data.note,
            "labels": data.has_labels,
            "world_size": distributed.world_size(),
            "evaluation_samples_per_rank": distributed.batch_shares(_batch_sizes(len(data.x), self.job.batch_size)),
            "calibration_samples_per_rank": distributed.batch_shares(_batch_sizes(len(data.calib), CALIB_BATCH)),
        }

    def run_model(self, entry: ModelEntry, data: DataSet) -> list[Row]:
        job = self.job
        try:
            settings = distributed.checked("fingerprint", lambda: {**job.settings(), "model": entry.spec.fingerprint()})
        except (OSError, distributed.RankFailed) as exc:  # an unreadable checkpoint fails its own rows only
            self.advance(len(job.modes) * len(job.Ts))
            return [Row(entry.name, m, t, error=describe_error(exc)) for m in job.modes for t in job.Ts]
        done = {} if self.force else self.finished_on_rank_0(entry.name, settings)
        self.advance(len(done))
        pending = [(m, t) for m in job.modes for t in job.Ts if (m, t) not in done]
        rows = dict(done)
        if pending:
            rows.update(self.convert_model(entry, data, pending, settings))
        return [rows[(m, t)] for m in job.modes for t in job.Ts]

    def finished_on_rank_0(self, model: str, settings: dict) -> dict[tuple[str, int], Row]:
        """:meth:`finished` as rank 0 sees its output folder (the one that writes it), on every rank."""
        found = distributed.checked("finished", lambda: self.finished(model, settings) if distributed.is_main() else {})
        return distributed.broadcast_object(found)

    def finished(self, model: str, settings: dict) -> dict[tuple[str, int], Row]:
        """Combinations not to run again: those whose .nir and record exist, succeeded and match
        ``settings`` (status ``"reused"``), and those whose successful result was made with other
        settings (a failed row saying which settings differ: they are not replaced without
        ``force``)."""
        found = {}
        for mode in self.job.modes:
            for T in self.job.Ts:
                stem = self.job.stem(model, mode, T)
                nir_path, record = self.job.out / f"{stem}.nir", self.job.out / f"{stem}.json"
                if not (nir_path.is_file() and record.is_file()):
                    continue
                try:
                    saved = json.loads(record.read_text())
                    row = Row(**saved["row"])
                except (ValueError, KeyError, TypeError):
                    continue  # an unreadable record: redo the combination
                if row.failed:
                    continue
                if saved.get("settings") == settings:
                    row.status = "reused"
                    found[(mode, T)] = row
                else:
                    changed = _changed_settings(saved.get("settings") or {}, settings)
                    error = (
                        f"{nir_path} was made with other settings ({changed}): pass --force to "
                        "replace it, or use another --out or --name"
                    )
                    found[(mode, T)] = Row(model, mode, T, file=str(nir_path), error=error)
        return found

    def convert_model(
        self, entry: ModelEntry, data: DataSet, pending: list[tuple[str, int]], settings: dict
    ) -> dict[tuple[str, int], Row]:
        try:
            ann = distributed.checked("load model", lambda: _checked_model(entry, data, self.job.device))
            ann_acc = ann_accuracy(ann, data, self.job.batch_size)
        except Exception as exc:  # a broken checkpoint fails its own rows only
            self.advance(len(pending))
            return {(m, t): Row(entry.name, m, t, error=describe_error(exc)) for m, t in pending}
        rows = {}
        for mode in dict.fromkeys(m for m, _ in pending):
            Ts = [t for m, t in pending if m == mode]
            # calibration is specific to T: one conversion per T; else one for all T's
            for group in [[t] for t in Ts] if self.job.calibrate else [Ts]:
                rows.update(self.convert_mode(entry, ann, ann_acc, mode, group, data, settings))
        return rows

    def convert_mode(
        self, entry: ModelEntry, ann, ann_acc: float | None, mode: str, Ts: list[int], data: DataSet, settings: dict
    ) -> dict[tuple[str, int], Row]:
        job, label = self.job, f"{entry.name} {mode}"
        rows = {t: Row(entry.name, mode, t, ann_accuracy=ann_acc) for t in Ts}
        try:
            start = time.perf_counter()
            samples_bar = functools.partial(progress_bar, unit="sample", leave=False, disable=self.quiet)
            with samples_bar(total=len(data.calib), desc=f"calibrate {label}") as bar:
                calibrate_T = max(Ts) if job.calibrate else None
                convert = job.converter(mode, data.calib_loader(CALIB_BATCH), bar.update, calibrate_T)
                snn = distributed.checked("convert", lambda: convert(ann))
            if job.weight_bits is not None:  # the quantisation's bias correction ran on every rank
                distributed.broadcast_parameters(snn)
            conversion_s = time.perf_counter() - start
            start = time.perf_counter()
            with samples_bar(total=len(data.x), desc=f"simulate {label} T={max(Ts)}") as bar:
                curve = accuracy_curve(snn, data, max(Ts), job.batch_size, bar.update)
            simulation_s = time.perf_counter() - start
        except Exception as exc:
            for row in rows.values():
                row.error = describe_error(exc)
            self.advance(len(rows))
            return {(mode, t): row for t, row in rows.items()}
        for T, row in rows.items():
            row.conversion_s, row.simulation_s, row.simulated_T = conversion_s, simulation_s, max(Ts)
            if curve is not None:
                row.accuracy_per_t = curve[:T]
                row.snn_accuracy = curve[T - 1]
            if distributed.is_main():  # rank 0 alone writes files
                self.finish(row, snn, data, settings)
            self.advance(1)
        return {(mode, t): row for t, row in rows.items()}

    def target_misfit(self, path: Path) -> str | None:
        """``None`` when the file fits the job's target (or there is none); else every violation."""
        if self.job.target is None:
            return None
        from exporters.targets import check_file

        report = check_file(path, self.job.target)
        if report.fits:
            return None
        lines = "; ".join(v.line() for v in report.violations)
        return f"does not fit {self.job.target} ({len(report.violations)} violations): {lines}"

    def finish(self, row: Row, snn, data: DataSet, settings: dict) -> None:
        """Export, reload and cross-check one combination; write its record."""
        stem = self.job.stem(row.model, row.mode, row.T)
        try:
            # the model's fingerprint travels in the file, for ann2snn diagnose to check
            fingerprint = json.dumps(settings["model"], sort_keys=True) if "model" in settings else None
            provenance = {PROVENANCE_KEY: fingerprint}  # a None value is dropped
            path = export_nir(
                snn, self.job.out / f"{stem}.nir", T=row.T, metadata=provenance, profile=self.job.export_profile
            )
            report = compare_spike_counts(snn, import_nir(path), data.x[: self.job.check_samples], row.T)
        except Exception as exc:
            row.error = describe_error(exc)
            return
        row.file = str(path)
        row.round_trip, row.round_trip_max_diff = ("equal" if report.equal else "differ"), report.max_count_diff
        misfit = self.target_misfit(path)
        if misfit:
            row.error = misfit
        elif report.equal:
            row.status = "converted"
        else:
            row.error = (
                f"the reloaded .nir does not reproduce the SNN's spikes "
                f"(max spike-count difference {report.max_count_diff:g})"
            )
        write_json(self.job.out / f"{stem}.json", {"settings": settings, "row": asdict(row)})


#: Calibration samples per batch of :meth:`DataSet.calib_loader` in a job (the unit of sharding).
CALIB_BATCH = 500


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def load_everywhere(job: Job) -> DataSet:
    """:func:`~ann2snn.data.load_data` on every rank, checking that all ranks read the same sizes.

    Raises:
        ValueError: the data cannot be read on this rank; the ranks read different numbers of
            samples, sample shapes or labels (naming the ranks and what they read).
        simulator.distributed.RankFailed: another rank cannot read its data (naming the rank and
            its error, e.g. the missing path).
    """
    data = distributed.checked("load data", lambda: load_data(job.data, job.calib_size, job.limit, job.input_shape))
    facts = distributed.gather(
        "check data", lambda: (len(data.calib), len(data.x), tuple(data.x.shape[1:]), data.has_labels)
    )
    for rank, theirs in enumerate(facts):
        if theirs != facts[0]:
            raise ValueError(
                f"rank {rank} read {theirs[0]} calibration and {theirs[1]} evaluation samples of shape {theirs[2]} "
                f"(labels: {theirs[3]}) from {job.data}, rank 0 read {facts[0][0]} and {facts[0][1]} of shape "
                f"{facts[0][2]} (labels: {facts[0][3]}): every rank must read the same data"
            )
    return data


def _checked_model(entry: ModelEntry, data: DataSet, device: str) -> torch.nn.Module:
    ann = load_model(entry.spec).to(device)
    check_model_input(ann, data.x[:2].to(device), entry.name)
    return ann


@torch.no_grad()
def ann_accuracy(ann: torch.nn.Module, data: DataSet, batch_size: int) -> float | None:
    """The ANN's accuracy (%) on the evaluation data, None without labels (under
    ``torch.distributed``, each rank runs its share of the batches and the counts are summed)."""
    if not data.has_labels:
        return None
    device = next((p.device for p in ann.parameters()), torch.device("cpu"))

    def correct() -> int:
        batches = (b for i, b in enumerate(data.batches(batch_size)) if distributed.owns(i))
        return sum(int((ann(x.to(device)).argmax(1).cpu() == y).sum()) for x, y in batches)

    return 100.0 * sum(distributed.gather("ann accuracy", correct)) / len(data.x)


def accuracy_curve(
    snn, data: DataSet, T: int, batch_size: int, progress: Callable[[int], None] | None = None
) -> list[float] | None:
    """Accuracy (%) at t = 1..T over the evaluation data (None without labels; the SNN is
    still simulated, so that its time is measured and failures show); :func:`simulator.evaluate`."""
    curve = evaluate(snn, data.batches(batch_size), T, progress).accuracy_per_t
    return None if curve is None else curve.tolist()


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def _rounded(row: Row) -> dict:
    """The row as a dict, seconds to the millisecond and accuracies to 1e-4 points."""
    values = asdict(row)
    for key, digits in (("conversion_s", 3), ("simulation_s", 3), ("ann_accuracy", 4), ("snn_accuracy", 4)):
        if values[key] is not None:
            values[key] = round(values[key], digits)
    if values["accuracy_per_t"] is not None:
        values["accuracy_per_t"] = [round(v, 4) for v in values["accuracy_per_t"]]
    return values


def summary_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in _rounded(row).items()})
    return buffer.getvalue()


def summary_object(rows: list[Row], header: dict) -> dict:
    counts = {status: sum(r.status == status for r in rows) for status in ("converted", "reused", "failed")}
    return {"settings": header, **counts, "rows": [_rounded(r) for r in rows]}


def write_summary(out: Path, rows: list[Row], header: dict) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.json`` in ``out``, each atomically."""
    with atomic_path(out / "summary.csv") as tmp:
        tmp.write_text(summary_csv(rows))
    write_json(out / "summary.json", summary_object(rows, header))
    return out / "summary.csv", out / "summary.json"


@dataclass
class Summary:
    """What :func:`run_job` returns: one :class:`Row` per model × mode × T (job order) and the
    settings header written to ``summary.json``."""

    rows: list[Row]
    settings: dict

    def counts(self) -> dict[str, int]:
        """Rows per status: ``{"converted": n, "reused": n, "failed": n}``."""
        return {status: sum(r.status == status for r in self.rows) for status in ("converted", "reused", "failed")}

    @property
    def failed(self) -> int:
        """Number of failed combinations."""
        return self.counts()["failed"]

    def to_dict(self) -> dict:
        """The content of ``summary.json``."""
        return summary_object(self.rows, self.settings)


def run_job(job: Job, force: bool = False, quiet: bool = False, echo: Callable[[str], None] | None = None) -> Summary:
    """Run every model × mode × T of ``job``: convert, simulate, export, reload and cross-check.

    Args:
        job: what to run (:class:`Job`; :func:`ann2snn.jobfile.read_job` reads one from TOML).
        force: redo combinations whose outputs already exist with the same settings.
        quiet: no progress bars.
        echo: receives one line per distinct failure of a model (the CLI prints it on stderr).

    Returns:
        :class:`Summary`; ``summary.csv`` and ``summary.json`` are in ``job.out``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the processes first join one
    process group (:func:`ann2snn.distributed.init_from_env`; ``device="cuda"`` becomes each
    rank's local GPU); every rank reads the same data, the calibration statistics, the ANN's
    accuracy and the SNN's evaluation are shared among the ranks and merged exactly, rank 0
    alone shows progress, echoes failures and writes the files, and every rank returns rank 0's
    summary. ``settings`` records ``world_size`` and the samples of each rank.

    Raises:
        ValueError: the data cannot be read (:func:`ann2snn.data.load_data`); an incomplete
            launcher environment (``WORLD_SIZE`` without ``RANK``, ...). A model, mode or
            combination that fails does not raise: its row holds the error.
        simulator.distributed.RankFailed: another rank cannot read its data (naming it).
    """
    init_from_env()
    job = dataclasses.replace(job, device=local_device(job.device))
    main = distributed.is_main()
    shown = echo or (lambda line: None)
    runner = Runner(job, force=force, quiet=quiet or not main, echo=shown if main else (lambda line: None))
    with warnings.catch_warnings():
        if not main:
            warnings.simplefilter("ignore")  # rank 0 shows them
        rows = runner.run()
    return Summary(rows, runner.header)


#: Normalisation modes of the demo: the max (Diehl 2015), the 99.9th percentile (Rueckauer
#: 2017) and fractions of the max.
DEMO_MODES = ("max", "99.9%", "1/2", "1/3", "1/4", "1/5")


def demo_job(
    modes: tuple[str, ...] = DEMO_MODES,
    T: int = 50,
    limit: int = 1000,
    out: Path = Path("ann2snn-demo"),
    check_samples: int = 100,
    device: str = "cpu",
    weight_bits: int | None = None,
    state_bits: int | None = None,
    encoding: str = "constant",
) -> Job:
    """The main job on the embedded default: the shipped seed CNN (:mod:`ann2snn.zoo.mnist_cnn`),
    calibrated on the 4,000 embedded MNIST training images, evaluated on the first ``limit``
    embedded test images (0: all 10,000), one ``.nir`` per mode at ``T`` time steps.

    Raises:
        ValueError: an unparseable mode or ``T < 1`` (see :class:`Job`).
    """
    from ann2snn.zoo.mnist import embedded_data_dir
    from ann2snn.zoo.mnist_cnn import WEIGHTS_FILE

    spec = ModelSpec(factory="ann2snn.zoo.mnist_cnn:MnistCNN", weights=embedded_data_dir() / WEIGHTS_FILE)
    return Job(
        models=(ModelEntry("mnist_cnn", spec),),
        modes=tuple(modes),
        Ts=(T,),
        out=out,
        calib_size=4000,
        limit=limit,
        device=device,
        check_samples=check_samples,
        weight_bits=weight_bits,
        state_bits=state_bits,
        encoding=encoding,
    )
