"""Batch job files (TOML): models × modes × T's.

Example (paths are relative to the job file)::

    data = "mnist"            # or a folder of IDX files, a .npz (x, y), a .npy (x)
    modes = ["max", "99.9%"]
    T = [20, 50]
    limit = 1000              # evaluation samples, 0: all
    out = "runs/job"

    [[models]]
    name = "seed"
    model = "ann2snn.zoo.mnist_cnn:MnistCNN"
    weights = "checkpoints/seed.pt"

    [[models]]
    name = "wide"
    model = "mymodels.py:make_cnn"       # a factory taking arguments
    kwargs = { width = 32 }               # make_cnn(width=32); args = [...] for positional ones
    weights = "checkpoints/wide.pt"

    [[models]]
    name = "legacy"
    model = "checkpoints/whole_model.pt"   # a pickled model
    trust_pickle = true
"""

from __future__ import annotations

import sys
from pathlib import Path

from ann2snn.data import DEFAULT_LIMIT, DataSource
from ann2snn.models import ModelSpec, looks_like_factory
from ann2snn.pipeline import CALIBRATION_SAMPLES, TARGET_FIELDS, Job, ModelEntry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Top-level keys and their types; ``models`` is an array of tables.
JOB_KEYS = {
    "data": str,
    "modes": list,
    "T": list,
    "out": str,
    "calib_size": int,
    "limit": int,
    "input_shape": list,
    "v_init": (int, float),
    "device": str,
    "batch_size": int,
    "check_samples": int,
    "readout": str,
    "channel_wise": bool,
    "calibrate": bool,
    "calibrate_weights": bool,
    "calibrate_samples": int,
    "export_profile": str,
    "weight_bits": int,
    "state_bits": int,
    "encoding": str,
    "target": str,
    "target_bias": str,
    "spike_rule": str,
    "models": list,
}
MODEL_KEYS = {
    "name": str,
    "model": str,
    "weights": str,
    "no_weights": bool,
    "trust_pickle": bool,
    "args": list,
    "kwargs": dict,
}


class JobFileError(ValueError):
    """A job file that cannot be read or has a bad key or value; the message names it."""


def read_job(path: Path, out: Path | None = None, device: str | None = None, limit: int | None = None) -> Job:
    """Read a TOML job file into a :class:`Job`; ``out``, ``device`` and ``limit`` override it.

    Raises:
        JobFileError: invalid TOML, an unknown key, a value of the wrong type, a missing file,
            an unparseable mode, or no models (naming the key and the model).
    """
    try:
        doc = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise JobFileError(f"{path} is not a text (TOML) file") from None
    _check_keys(doc, JOB_KEYS, "the job file")
    base = Path(path).parent
    for key in ("models", "modes", "T"):
        if not doc.get(key):
            raise JobFileError(f"the job file needs a non-empty '{key}' list")
    models = tuple(_model(i, table, base) for i, table in enumerate(doc["models"]))
    try:
        return Job(
            models=models,
            modes=tuple(_str(v, "modes") for v in doc["modes"]),
            Ts=tuple(_int(v, "T") for v in doc["T"]),
            out=out or base / doc.get("out", "ann2snn-out"),
            data=_data(doc.get("data", "mnist"), base),
            calib_size=doc.get("calib_size", 1000),
            limit=limit if limit is not None else doc.get("limit", DEFAULT_LIMIT),
            input_shape=tuple(_int(v, "input_shape") for v in doc["input_shape"]) if "input_shape" in doc else None,
            v_init=float(doc.get("v_init", 0.5)),
            device=device or doc.get("device", "cpu"),
            batch_size=doc.get("batch_size", 100),
            check_samples=doc.get("check_samples", 100),
            readout=doc.get("readout", "membrane"),
            channel_wise=doc.get("channel_wise", False),
            calibrate=doc.get("calibrate", False),
            export_profile=doc.get("export_profile", "exact"),
            calibrate_weights=doc.get("calibrate_weights", False),
            weight_bits=doc.get("weight_bits"),
            state_bits=doc.get("state_bits"),
            encoding=doc.get("encoding", "constant"),
            target=doc.get("target"),
            explicit=tuple(key for key in TARGET_FIELDS if key in doc),
            target_bias=doc.get("target_bias"),
            calibrate_samples=doc.get("calibrate_samples", CALIBRATION_SAMPLES),
            spike_rule=doc.get("spike_rule", ">="),
        )
    except JobFileError:
        raise
    except ValueError as exc:
        raise JobFileError(str(exc)) from None


def _check_keys(table: dict, allowed: dict, where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise JobFileError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
        if not isinstance(value, allowed[key]) or isinstance(value, bool) and allowed[key] is not bool:
            raise JobFileError(
                f"{where}: {key!r} = {value!r} has the wrong type: expected {_toml_type(allowed[key])}, "
                f"got {_toml_type(type(value))}"
            )


#: How each Python type of a key is written in TOML, for :func:`_check_keys`' message.
TOML_TYPES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array [...]",
    dict: "a table { ... }",
}


def _toml_type(kind) -> str:
    """``int`` -> ``"an integer"``; a tuple of types -> ``"an integer or a number"``.

    Example:
        >>> _toml_type(dict), _toml_type((int, float))
        ('a table { ... }', 'an integer or a number')
    """
    if isinstance(kind, tuple):
        return " or ".join(_toml_type(k) for k in kind)
    return TOML_TYPES.get(kind, kind.__name__)


def _str(value, key: str) -> str:
    if not isinstance(value, str):
        raise JobFileError(f"'{key}' entries must be strings, got {value!r}")
    return value


def _int(value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise JobFileError(f"'{key}' entries must be positive integers, got {value!r}")
    return value


def _data(text: str, base: Path) -> DataSource:
    try:
        return DataSource.parse(text if text == "mnist" else str(base / text))
    except ValueError as exc:
        raise JobFileError(f"'data': {exc}") from None


def _existing(text: str, base: Path, where: str) -> Path:
    path = base / text
    if not path.is_file():
        raise JobFileError(f"{where}: no such file {path}")
    return path


def _model(index: int, table, base: Path) -> ModelEntry:
    where = f"models[{index}]"
    if not isinstance(table, dict):
        raise JobFileError(f"{where} must be a table ([[models]])")
    _check_keys(table, MODEL_KEYS, where)
    if "model" not in table:
        raise JobFileError(f"{where} needs 'model' (package.module:factory or a pickled model file)")
    text = table["model"]
    weights = _existing(table["weights"], base, f"{where} 'weights'") if "weights" in table else None
    try:
        if looks_like_factory(text) or looks_like_factory(str(base / text)):
            factory = text if not text.split(":")[0].endswith(".py") else str(base / text)
            spec = ModelSpec(
                factory=factory,
                weights=weights,
                no_weights=table.get("no_weights", False),
                args=tuple(table.get("args", ())),
                kwargs=dict(table.get("kwargs", {})),
            )
        else:
            spec = ModelSpec(
                pickled=_existing(text, base, f"{where} 'model'"),
                weights=weights,
                trust_pickle=table.get("trust_pickle", False),
                args=tuple(table.get("args", ())),
                kwargs=dict(table.get("kwargs", {})),
            )
        return ModelEntry(table.get("name", spec.default_name), spec)
    except ValueError as exc:
        raise JobFileError(f"{where}: {exc}") from None
