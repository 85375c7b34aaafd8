"""click parameter types and callbacks: a bad value is a usage error (exit 2) naming the option."""

from __future__ import annotations

import re
from pathlib import Path

import click
import torch

from ann2snn.data import DataSource
from ann2snn.models import ModelLoadError, looks_like_factory, parse_model_arg, resolve_factory
from converter.modes import parse_mode


def check_modes(ctx, param, value):
    """Callback: every ``--mode`` parses (``max``, ``99.9%``, ``1/2``, ``0.25``)."""
    try:
        for mode in value:
            parse_mode(mode)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return list(value)


def check_model_args(ctx, param, value):
    """Callback: every ``--model-arg`` is ``NAME=VALUE``; returns ``{name: value}`` with values
    read as Python literals, else strings (:func:`ann2snn.models.parse_model_arg`)."""
    kwargs = {}
    for text in value:
        try:
            name, arg = parse_model_arg(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        if name in kwargs:
            raise click.BadParameter(f"{name!r} is given twice ({text!r})", ctx=ctx, param=param)
        kwargs[name] = arg
    return kwargs


#: ``--help`` of every ``--data`` option.
DATA_HELP = (
    "mnist (embedded), a folder of IDX files, an image folder or .zip (one subfolder per class), "
    "a .npz with x and y, or a .npy of inputs."
)
#: ``--help`` of every ``--batch-size`` option.
BATCH_HELP = "Samples per simulation batch."


class DataSourceType(click.ParamType):
    """``mnist``, a folder of IDX files, an image folder or ``.zip``, a ``.npz`` (x, y) or a ``.npy`` (x)."""

    name = "mnist|FOLDER|FILE.zip|FILE.npz|FILE.npy"

    def convert(self, value, param, ctx) -> DataSource:
        if isinstance(value, DataSource):
            return value
        try:
            return DataSource.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ModelType(click.ParamType):
    """``package.module:factory``, ``file.py:factory``, or a pickled model file.

    Converts to ``("factory", spec)`` (checked importable now) or ``("pickle", Path)``.
    """

    name = "package.module:factory|FILE.pt"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        if looks_like_factory(value):
            try:
                resolve_factory(value)
            except ModelLoadError as exc:
                self.fail(str(exc), param, ctx)
            return ("factory", value)
        path = Path(value)
        if path.is_file():
            return ("pickle", path)
        self.fail(f"{value!r} is neither an importable 'package.module:factory' nor an existing file", param, ctx)


class ShapeType(click.ParamType):
    """A sample shape without the batch axis: ``1,28,28`` or ``1x28x28``."""

    name = "C,H,W"

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        text = value.strip().replace(" ", "")
        if not re.fullmatch(r"\d+([,x]\d+)*", text) or any(int(p) == 0 for p in re.split(r"[,x]", text)):
            self.fail(f"{value!r} is not a shape like 1,28,28 (positive integers)", param, ctx)
        return tuple(int(p) for p in re.split(r"[,x]", text))


class DeviceType(click.ParamType):
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available)."""

    name = "cpu|cuda[:N]|auto"

    def convert(self, value, param, ctx) -> str:
        if value == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError):
            self.fail(f"{value!r} is not a torch device", param, ctx)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                self.fail(f"{value!r}: CUDA is not available on this machine", param, ctx)
            if device.index is not None and device.index >= torch.cuda.device_count():
                self.fail(f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)", param, ctx)
        elif device.type == "mps" and not torch.backends.mps.is_available():
            self.fail(f"{value!r}: MPS is not available on this machine", param, ctx)
        elif device.type not in ("cpu", "cuda", "mps"):
            self.fail(f"{value!r}: only cpu, cuda and mps are supported", param, ctx)
        return str(device)


DATA = DataSourceType()
MODEL = ModelType()
SHAPE = ShapeType()
DEVICE = DeviceType()
