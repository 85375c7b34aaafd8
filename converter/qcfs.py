"""Quantisation-clip-floor-shift (QCFS) activations: the optional fine-tune step before conversion.

A network fine-tuned with :class:`QCFS` in place of its ReLUs converts with almost no loss at a
few time steps: ``QCFS(x) = λ · clamp(floor(x L / λ + 1/2) / L, 0, 1)`` is what an IF neuron with
threshold λ, reset by subtraction and V[0] = λ/2 emits over T = L steps for a constant input
current x (Bu et al., "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency
spiking neural networks", ICLR 2022). λ is trained with the weights (the floor passes its
gradient straight through).

Workflow (``examples/train_cifar10.py --init-weights W --qcfs-levels L`` does steps 1-2)::

    qnet = qcfs_model(ann, levels=4, thresholds=initial_thresholds(ann, calibration_images))
    ...fine-tune qnet a few epochs...
    snn = Converter(mode="99.9%", dataloader=loader)(qnet)

The converter treats each QCFS layer as a ReLU capped at its trained λ (:func:`qcfs_to_clamp`,
called by :func:`converter.trace.trace`), and that λ is the layer's scale whatever the
normalisation mode (the mode applies to the network's other ReLUs); channel-wise scales and the
scale search leave QCFS layers alone. Bias/weight calibration still applies.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["QCFS", "initial_thresholds", "qcfs_levels", "qcfs_model", "qcfs_to_clamp", "with_qcfs_layers"]

#: Attribute set on the ``nn.Hardtanh`` that replaces a QCFS module when a network is traced.
LEVELS_ATTR = "qcfs_levels"


class _FloorSTE(torch.autograd.Function):
    """floor in the forward pass, identity gradient (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class QCFS(nn.Module):
    """Quantisation-clip-floor-shift activation (Bu et al., ICLR 2022), a ReLU replacement.

    ``y = λ · clamp(floor(x L / λ + shift) / L, 0, 1)``, element-wise, any shape (``[B, C, H, W]``,
    ``[B, F]``). ``y`` takes the L + 1 values ``0, λ/L, ..., λ``. The gradient of the floor is
    passed straight through, so λ (``threshold``, a trainable scalar parameter) and the weights
    before it learn together.

    Args:
        levels: L, the number of quantisation steps (the T at which the converted SNN matches).
        threshold: the initial λ (> 0), in the units of the layer's activation.
        shift: φ, 0.5 in the paper (the SNN's V[0] = V_th/2 matches it).

    Raises:
        ValueError: ``levels`` < 1, or ``threshold`` not finite and > 0.
    """

    levels: torch.Tensor  # 0-d int64 buffer

    def __init__(self, levels: int = 4, threshold: float = 8.0, shift: float = 0.5) -> None:
        super().__init__()
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise ValueError(f"QCFS levels must be an integer >= 1, got {levels!r}")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"QCFS threshold must be finite and > 0, got {threshold!r}")
        self.shift = float(shift)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.register_buffer("levels", torch.tensor(levels))  # in the state_dict: a checkpoint says its L

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam, levels = self.threshold, self.levels.to(x.dtype)
        q = _FloorSTE.apply(x * (levels / lam) + self.shift)
        return torch.clamp(q / levels, 0.0, 1.0) * lam

    def extra_repr(self) -> str:
        return f"levels={int(self.levels)}, threshold={float(self.threshold.detach()):.4g}, shift={self.shift}"


def _relu_modules(model: nn.Module) -> list[str]:
    """Every path of an ``nn.ReLU`` module, a module registered under several names at each."""
    return [name for name, m in model.named_modules(remove_duplicate=False) if type(m) is nn.ReLU]


def _groups(model: nn.Module, paths: list[str]) -> list[list[str]]:
    """``paths`` grouped by module object (one ReLU registered under several names is one group)."""
    groups: dict[int, list[str]] = {}
    for path in paths:
        groups.setdefault(id(model.get_submodule(path)), []).append(path)
    return list(groups.values())


def _qcfs(path: str, levels: int, threshold: float) -> QCFS:
    try:
        return QCFS(levels, threshold)
    except ValueError as exc:
        raise ValueError(f"layer {path!r}: {exc}") from None


def initial_thresholds(model: nn.Module, images: torch.Tensor, percentile: float = 99.9) -> dict[str, float]:
    """The ``percentile`` of each ``nn.ReLU`` module's output on ``images`` (``[N, ...]``, the
    model's input), by module path: the initial λ of :func:`qcfs_model` (eval mode, no grad;
    at most 10^6 values per layer, an even subsample, enter the quantile).

    Raises:
        ValueError: the model has no ``nn.ReLU`` module, ``images`` is empty, or
            ``percentile`` is not in (0, 100].

    One ``nn.ReLU`` registered under several names gets one λ, listed under each name; a ReLU
    module the forward never calls is left out.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if len(images) == 0:
        raise ValueError("initial_thresholds needs at least one image, got an empty tensor")
    groups = _groups(model, _relu_modules(model))
    if not groups:
        raise ValueError(f"{type(model).__name__} has no nn.ReLU module to replace by QCFS")
    outputs: dict[str, list[torch.Tensor]] = {g[0]: [] for g in groups}
    hooks = [
        model.get_submodule(n).register_forward_hook(lambda _m, _i, out, n=n: outputs[n].append(out.detach().flatten()))
        for n in outputs
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), 500):
                model(images[i : i + 500])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    result = {}
    for group in groups:
        parts = outputs[group[0]]
        if not parts:  # a ReLU module the forward does not call
            continue
        values = torch.cat(parts).float()
        if values.numel() > 1_000_000:
            values = values[:: values.numel() // 1_000_000 + 1]
        lam = float(torch.quantile(values, percentile / 100.0))
        result.update(dict.fromkeys(group, lam if lam > 0 else 1.0))
    return result


def qcfs_model(model: nn.Module, levels: int, thresholds: Mapping[str, float] | None = None) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU`` module replaced by a :class:`QCFS` of ``levels``
    steps, its λ from ``thresholds`` (module path → λ, e.g. :func:`initial_thresholds`; 8.0,
    the paper's initial value, where not given). ``model`` is not modified. The copy's
    state_dict holds each λ and L as ``<relu path>.threshold`` and ``<relu path>.levels``: load
    it into the plain class through :func:`with_qcfs_layers` (or this function) and
    ``load_state_dict``.

    Raises:
        ValueError: no ``nn.ReLU`` module (functional ReLUs cannot be replaced: make them
            modules), a ``thresholds`` key that is not a ReLU module, bad ``levels``, or a λ
            that is not finite and > 0 (naming the layer). One ``nn.ReLU`` registered under
            several names becomes one QCFS under each (different λ for its names: an error).
    """
    names = _relu_modules(model)
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no nn.ReLU module to replace by QCFS "
            "(functional ReLUs such as F.relu cannot be replaced: use nn.ReLU modules)"
        )
    unknown = sorted(set(thresholds or {}) - set(names))
    if unknown:
        raise ValueError(f"thresholds for {unknown}, which are not nn.ReLU modules of {type(model).__name__}")
    thresholds = thresholds or {}
    result = copy.deepcopy(model)
    for group in _groups(model, names):  # one QCFS per ReLU object, set under each of its names
        given = {thresholds[n] for n in group if n in thresholds}
        if len(given) > 1:
            raise ValueError(f"thresholds {sorted(given)} for the one nn.ReLU module registered as {group}")
        act = _qcfs(group[0], levels, given.pop() if given else 8.0)
        for name in group:
            _set_submodule(result, name, act)
    return result


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, module)


def qcfs_to_clamp(model: nn.Module) -> dict[str, tuple[float, int]]:
    """Replace, in place, every :class:`QCFS` submodule of ``model`` by ``nn.Hardtanh(0, λ)``
    (the ReLU capped at its trained λ, which the converter turns into an IF layer with scale λ)
    carrying the attribute ``qcfs_levels`` = L. Returns {module path: (λ, L)}.

    Raises:
        ValueError: a QCFS layer whose λ is not finite and positive (naming it).
    """
    found = {}
    clamps: dict[int, nn.Hardtanh] = {}  # one per QCFS object (a module registered twice stays shared)
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not isinstance(module, QCFS):
            continue
        lam = float(module.threshold.detach())
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"QCFS layer {name!r} has threshold λ = {lam}: it must be finite and > 0 to convert")
        if id(module) not in clamps:
            clamps[id(module)] = nn.Hardtanh(0.0, lam)
            setattr(clamps[id(module)], LEVELS_ATTR, int(module.levels))
        _set_submodule(model, name, clamps[id(module)])
        found[name] = (lam, int(module.levels))
    return found


def qcfs_levels(module: nn.Module) -> int | None:
    """L for a traced QCFS layer (the ``nn.Hardtanh`` of :func:`qcfs_to_clamp`), None otherwise."""
    value = getattr(module, LEVELS_ATTR, None)
    return int(value) if type(module) is nn.Hardtanh and value is not None else None


def with_qcfs_layers(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """``model`` with a :class:`QCFS` in place of each ``nn.ReLU`` module that ``state_dict`` has
    QCFS entries for (``<path>.threshold`` and ``<path>.levels``, as :func:`qcfs_model` writes
    them), ready for ``load_state_dict(state_dict)``; ``model`` itself when there are none (a
    plain ReLU checkpoint). A fine-tuned checkpoint thus loads into the plain network class.

    Raises:
        ValueError: QCFS entries for a path that is not an ``nn.ReLU`` module of ``model``, or
            a bad L or λ there (not one value, L not an integer >= 1, λ not finite and > 0),
            naming the layer.
    """
    paths = {k.removesuffix(".levels") for k in state_dict if k.endswith(".levels")}
    paths = {p for p in paths if f"{p}.threshold" in state_dict}
    relus = set(_relu_modules(model))
    current = {n for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, QCFS)}
    paths -= current
    if not paths:
        return model
    unknown = sorted(paths - relus)
    if unknown:
        raise ValueError(
            f"the checkpoint has QCFS layers {unknown}, which are not nn.ReLU modules of {type(model).__name__}"
        )
    result = copy.deepcopy(model)
    for group in _groups(model, sorted(relus)):
        present = [p for p in group if p in paths]
        if not present:
            continue
        path = present[0]
        levels, threshold = state_dict[f"{path}.levels"], state_dict[f"{path}.threshold"]
        if levels.numel() != 1 or threshold.numel() != 1:
            raise ValueError(
                f"layer {path!r}: QCFS levels and threshold must hold one value each, got shapes "
                f"{list(levels.shape)} and {list(threshold.shape)}"
            )
        if float(levels) != int(levels):
            raise ValueError(f"layer {path!r}: QCFS levels must be an integer >= 1, got {float(levels)}")
        act = _qcfs(path, int(levels), float(threshold))
        for name in group:
            _set_submodule(result, name, act)
    return result
