"""Load the ANN to convert: a factory (``package.module:factory``) plus a state_dict, or a
whole pickled model when the user says they trust it.

A state_dict is read with ``torch.load(weights_only=True)``, which cannot run code. A pickled
model can run arbitrary code while it loads, so it is read only with ``trust_pickle=True``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import pickle
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from converter.qcfs import with_qcfs_layers

#: Prefixes that wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Keys under which training scripts commonly nest the state_dict in a checkpoint dict.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
#: The prefix a PyTorch Lightning checkpoint puts on every key of a LightningModule that holds the
#: network as ``self.model``; stripped only where that makes the keys fit (:func:`fit_prefix`).
LIGHTNING_PREFIX = "model."

_FACTORY = re.compile(r"^(?P<module>[^:]+):(?P<attr>[A-Za-z_][\w.]*)$")


class ModelLoadError(ValueError):
    """The model or its weights cannot be loaded; the message names the file or factory."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from.

    Attributes:
        factory: ``package.module:callable`` or ``path/to/file.py:callable`` (a callable that
            returns an ``nn.Module``), or None for a pickled model.
        weights: a state_dict file for the factory's module, or None.
        pickled: a whole pickled model (``torch.save(model)``), or None.
        trust_pickle: the user allows ``pickled`` to be unpickled (it can run code).
        no_weights: the factory's model is converted as the factory builds it, without a weights
            file (for a factory that loads trained weights itself; otherwise these are random
            initial weights). A factory needs ``weights`` or ``no_weights=True``.
        args, kwargs: passed to the factory, ``factory(*args, **kwargs)`` (``--model-arg
            width=32``; ``args``/``kwargs`` in a job file).

    Raises:
        ModelLoadError: neither or both of ``factory`` and ``pickled``; a pickle with weights or
            factory arguments; a factory with neither ``weights`` nor ``no_weights``, or with both;
            a keyword that is not a Python identifier.
    """

    factory: str | None = None
    weights: Path | None = None
    pickled: Path | None = None
    trust_pickle: bool = False
    no_weights: bool = False
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pickled is not None and (self.args or self.kwargs):
            raise ModelLoadError(
                f"a pickled model ({self.pickled}) is not built by a factory: drop the factory arguments"
            )
        bad = [k for k in self.kwargs if not (isinstance(k, str) and k.isidentifier())]
        if bad:
            raise ModelLoadError(f"factory argument names must be Python identifiers, got {bad[0]!r}")
        if (self.factory is None) == (self.pickled is None):
            raise ModelLoadError("give either a factory 'package.module:factory' or a pickled model file")
        if self.factory is not None and self.weights is None and not self.no_weights:
            raise ModelLoadError(
                f"factory {self.factory} without weights would use the model as the factory builds it (random "
                "initial weights, unless the factory loads trained ones): give --weights FILE (weights = ... in a job "
                "file), or --no-weights (no_weights = true) if the factory's own weights are meant"
            )
        if self.weights is not None and self.no_weights:
            raise ModelLoadError(f"no_weights contradicts the weights file {self.weights}")
        if self.pickled is not None and self.weights is not None:
            raise ModelLoadError(f"a pickled model ({self.pickled}) already holds its weights: drop the weights file")

    @property
    def default_name(self) -> str:
        """A name for file names: the weights' or pickle's stem, else the factory's name."""
        source = self.weights or self.pickled
        if source is not None:
            return source.stem
        return str(self.factory).rsplit(":", 1)[1].rsplit(".", 1)[-1]

    def fingerprint(self) -> dict:
        """What identifies this model's content (for deciding whether old outputs are current)."""
        return {
            "factory": self.factory,
            "weights_sha256": file_sha256(self.weights) if self.weights else None,
            "pickle_sha256": file_sha256(self.pickled) if self.pickled else None,
            **({"no_weights": True} if self.no_weights else {}),
            **({"args": [repr(a) for a in self.args]} if self.args else {}),
            **({"kwargs": {k: repr(v) for k, v in self.kwargs.items()}} if self.kwargs else {}),
        }


#: The graph metadata key under which ``ann2snn convert`` records the model's fingerprint
#: (:meth:`ModelSpec.fingerprint`, as a JSON string) in each ``.nir`` file, for ``ann2snn diagnose``.
PROVENANCE_KEY = "model_fingerprint"


def parse_model_arg(text: str) -> tuple[str, Any]:
    """``"width=32"`` -> ``("width", 32)``: the value read as a Python literal (``32``, ``0.5``,
    ``True``, ``None``, ``(1, 2)``, ``'a'``), else kept as the string (``act=relu`` -> ``"relu"``).

    Raises:
        ValueError: no ``=``, or the name before it is not a Python identifier (naming ``text``).

    Example:
        >>> parse_model_arg("width=32"), parse_model_arg("act=relu"), parse_model_arg("sizes=[1, 2]")
        (('width', 32), ('act', 'relu'), ('sizes', [1, 2]))
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"{text!r} is not NAME=VALUE (e.g. width=32)")
    if not name.isidentifier():
        raise ValueError(f"{text!r}: {name!r} is not a Python identifier (expected NAME=VALUE, e.g. width=32)")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return name, value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def looks_like_factory(text: str) -> bool:
    """``package.module:callable`` or ``file.py:callable`` (not a plain file path)."""
    return _FACTORY.match(text) is not None and not Path(text).exists()


def resolve_factory(spec: str):
    """The callable named by ``package.module:name`` or ``path/to/file.py:name``.

    Raises:
        ModelLoadError: the module cannot be imported, lacks the attribute, or it is not callable.
    """
    match = _FACTORY.match(spec)
    if match is None:
        raise ModelLoadError(f"expected 'package.module:factory' or 'file.py:factory', got {spec!r}")
    module_name, attr = match["module"], match["attr"]
    try:
        module = _import(module_name)
    except ModelLoadError:
        raise
    except Exception as exc:  # an ImportError or anything the module raises while importing
        raise ModelLoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"{spec!r} is not callable ({type(obj).__name__})")
    return obj


def _import(module_name: str):
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ModelLoadError(f"no such Python file: {path}")
        name = f"_ann2snn_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_name)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (``weights_only=True``), unnested and without wrapper prefixes.

    Accepts a plain state_dict or a checkpoint dict holding one under ``state_dict`` (a PyTorch
    Lightning checkpoint), ``model_state_dict`` or ``model``; strips ``module.`` (DataParallel)
    and ``_orig_mod.`` (torch.compile) from every key. Lightning's ``model.`` prefix is left for
    :func:`load_weights`, which strips it when that makes the keys fit the model.

    Raises:
        ModelLoadError: not a torch file, a file holding pickled objects (a whole model), or
            no tensors in it.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise ModelLoadError(f"cannot read weights {path}: {type(exc).__name__}: {_first_line(exc)}") from exc
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip, or a pickle (protocol >= 2)
        raise ModelLoadError(
            f"cannot read weights {path}: not a torch.save file, or a truncated or corrupt one "
            f"(it starts with {head!r}: neither a zip nor a pickle)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path} is not a plain state_dict: it holds pickled objects that a weights-only load refuses "
            f"(first line: {str(exc).strip().splitlines()[0]}). If it is a whole model saved with torch.save(model) "
            "and you trust its source, load it with --model FILE --trust-pickle"
        ) from exc
    except Exception as exc:  # RuntimeError / EOFError / OSError from a truncated, corrupt or foreign file
        raise ModelLoadError(
            f"cannot read weights {path}: not a torch.save file, or a truncated or corrupt one: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    state = _unnest(obj, path)
    return {_strip_prefixes(k): v for k, v in state.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unnest(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            if isinstance(obj.get(key), dict):
                return _unnest(obj[key], path)
    raise ModelLoadError(f"{path} holds no state_dict (a dict of tensors), found {type(obj).__name__}")


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` with every missing, unexpected or mis-shaped key listed.

    A PyTorch Lightning checkpoint's ``model.`` prefix (:data:`LIGHTNING_PREFIX`) is stripped
    first when the keys do not fit as they are and either every key has it or the stripped keys
    are exactly the model's (:func:`fit_prefix`).

    Raises:
        ModelLoadError: the keys or shapes do not match exactly (nothing is loaded then).
    """
    own = model.state_dict()
    state = fit_prefix(state, own.keys(), source)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {', '.join(shapes)}")
    if problems:
        hint = fitting_prefixes(state, own.keys())
        if hint:
            names = " and ".join(f"'{p}.'" for p in hint)
            problems.insert(
                0,
                f"the keys under {names} are exactly the model's (a LightningModule holding the network as "
                f"{' or '.join('self.' + p for p in hint)}?): save that network's own state_dict, "
                "or strip the prefix from the keys",
            )
        raise ModelLoadError(f"weights {source} do not fit {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state)


def fitting_prefixes(state: dict[str, torch.Tensor], own) -> list[str]:
    """The first key components ``P`` (sorted) such that the keys starting with ``P.``, without it
    (and without ``module.`` / ``_orig_mod.`` after it), are exactly ``own``: where the network
    sits in a checkpoint whose keys do not fit as they are (not stripped automatically: only
    Lightning's ``model.`` is, :func:`fit_prefix`).

    Example:
        >>> fitting_prefixes({"net.0.weight": 1, "net.0.bias": 2, "loss.w": 3}, {"0.weight", "0.bias"})
        ['net']
    """
    own = set(own)
    found = []
    for prefix in sorted({k.split(".", 1)[0] for k in state if "." in k}):
        inner = {_strip_prefixes(k[len(prefix) + 1 :]) for k in state if k.startswith(prefix + ".")}
        if inner == own:
            found.append(prefix)
    return found


def fit_prefix(state: dict[str, torch.Tensor], own, source: str, prefix: str = LIGHTNING_PREFIX) -> dict:
    """``state`` with ``prefix`` stripped from its keys, if the keys do not match ``own`` (the
    model's keys) as they are and either every key has the prefix or the prefixed keys, stripped,
    are exactly ``own`` (the other keys, e.g. a Lightning module's loss buffers, are then left out,
    with a warning naming them); ``module.`` and ``_orig_mod.`` after the prefix (a DDP-wrapped or
    compiled network inside the LightningModule) are stripped too; else ``state`` unchanged (and
    :func:`load_weights` lists what does not fit)."""
    own = set(own)
    if set(state) == own:
        return state
    # after the prefix, a wrapped inner network's own prefixes (model.module.*, model._orig_mod.*)
    prefixed = {_strip_prefixes(k[len(prefix) :]): v for k, v in state.items() if k.startswith(prefix)}
    if len(prefixed) == len(state):
        return prefixed
    if prefixed and set(prefixed) == own:
        others = [k for k in state if not k.startswith(prefix)]
        warnings.warn(
            f"weights {source}: loaded the {len(prefixed)} '{prefix}' keys; left out {len(others)} other key(s) "
            f"that are not the model's: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}",
            stacklevel=3,
        )
        return prefixed
    return state


def load_model(spec: ModelSpec) -> nn.Module:
    """Build the ANN described by ``spec`` (a factory is called with ``spec.args`` and
    ``spec.kwargs``), on the CPU, in eval mode.

    Raises:
        ModelLoadError: see :func:`resolve_factory`, :func:`read_state_dict`,
            :func:`load_weights`; a pickle without ``trust_pickle``; a factory or pickle that
            does not give an ``nn.Module``.

    A pickled model is unpickled with the current folder and the pickle's folder first on
    ``sys.path``, so that the classes of a model saved by a script are found by the module names
    the script used.
    """
    if spec.pickled is not None:
        model = _load_pickled(spec.pickled, spec.trust_pickle)
    else:
        try:
            model = resolve_factory(str(spec.factory))(*spec.args, **spec.kwargs)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"factory {spec.factory} failed: {type(exc).__name__}: {_first_line(exc)}") from exc
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"factory {spec.factory} returned {type(model).__name__}, not a torch.nn.Module")
        if spec.weights is not None:
            state = read_state_dict(spec.weights)
            model = _with_qcfs(model, state, str(spec.weights))
            load_weights(model, state, str(spec.weights))
    return model.cpu().eval()


def _with_qcfs(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``model`` with the QCFS layers of a QCFS fine-tune's checkpoint (:mod:`converter.qcfs`), so
    that it loads into the plain ReLU class; the keys as they are or without Lightning's
    ``model.`` prefix (as :func:`load_weights` strips it).

    Raises:
        ModelLoadError: the checkpoint's QCFS entries do not fit the model's ReLU modules, or
            hold a bad λ or L (naming the layer).
    """
    stripped = {k[len(LIGHTNING_PREFIX) :]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    first_error = None
    for candidate in (state, stripped) if stripped else (state,):
        try:
            return with_qcfs_layers(model, candidate)
        except ValueError as exc:
            first_error = first_error or exc
    raise ModelLoadError(f"weights {source}: {first_error}") from first_error


def refusal(path: Path) -> str:
    """Why a pickled model is not loaded without ``--trust-pickle``."""
    return (
        f"{path} would be loaded by unpickling, and unpickling can run arbitrary code from the file. "
        "Load it only if you trust its source: add --trust-pickle (trust_pickle = true in a job file), "
        "or better, save model.state_dict() and pass --model package.module:factory --weights FILE"
    )


def _load_pickled(path: Path, trust: bool) -> nn.Module:
    if not trust:
        raise ModelLoadError(refusal(path))
    try:
        with _import_path(Path.cwd(), path.resolve().parent):
            model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot unpickle model {path}: {type(exc).__name__}: {_first_line(exc)}") from exc
    if isinstance(model, dict):
        raise ModelLoadError(
            f"{path} holds a state_dict, not a model: pass --model package.module:factory --weights {path}"
        )
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{path} holds a {type(model).__name__}, not a torch.nn.Module")
    return model


@contextlib.contextmanager
def _import_path(*folders: Path) -> Iterator[None]:
    """``folders`` first on ``sys.path`` while unpickling, as Python puts a script's folder there:
    a model saved by ``python train.py`` refers to its classes by the module names the script
    imported (``mymodels.Net``), found in the current folder or beside the pickle."""
    added = [str(f) for f in dict.fromkeys(folders) if str(f) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            sys.path.remove(folder)
