"""Spike rasters: the spike trains of some neurons of one IF layer for one sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from simulator.graph import input_dtype_problem, input_shape_problem
from simulator.simulate import if_layers, simulate


@dataclass
class Raster:
    """Spikes of ``len(neurons)`` neurons of IF layer ``layer`` for one sample.

    Attributes:
        layer: the IF layer's module path.
        spikes: ``[T, N]`` bool (uint8 spikes per step for a ``spike_rule="multi"`` layer, int8
            1/0/-1 for a ``"signed"`` one),
            ``spikes[t, j]``: what neuron ``neurons[j]`` emitted at step t + 1.
        neurons: ``[N]`` int64 indices into the layer's flattened neurons (``C·H·W``).
        layer_spikes: spikes of the whole layer for this sample (the simulator's count).
        layer_neurons: neurons of the whole layer (``C·H·W``), shown or not.
        prediction: the class the SNN predicts for this sample at t = T
            (:meth:`~simulator.simulate.SimulationResult.predictions`).
        label: the sample's label, where the caller knows it (:func:`spike_raster` does not).
        classes: the class names, index = class (an image folder's class folders), where the
            caller knows them; titles then name the label and the prediction.
    """

    layer: str
    spikes: torch.Tensor
    neurons: torch.Tensor
    layer_spikes: int
    layer_neurons: int = 0
    prediction: int | None = None
    label: int | None = None
    classes: list[str] | None = None

    def class_name(self, index: int) -> str:
        """``index`` with its class name where :attr:`classes` has one: ``"3 (cat)"``, else ``"3"``."""
        if self.classes is not None and 0 <= index < len(self.classes):
            return f"{index} ({self.classes[index]})"
        return str(index)

    @property
    def T(self) -> int:
        return int(self.spikes.shape[0])


@torch.no_grad()
def spike_raster(model: nn.Module, x: torch.Tensor, T: int, layer: str, neurons: int | None = 50) -> Raster:
    """Simulate ``model`` on one sample ``x`` for ``T`` steps (constant input, ``record=True``)
    and return the spike trains of layer ``layer``.

    Args:
        model: an SNN of :class:`~simulator.neuron.IFNeuron` layers.
        x: one sample ``[C, H, W]`` (or ``[...]`` without the batch axis).
        T: time steps (>= 1).
        layer: an IF layer's module path (a NIR node name for an imported file).
        neurons: how many neurons to show: the ``neurons`` that spiked most (ties: lower index
            first), listed in index order; None: all of them.

    Returns:
        :class:`Raster` with ``spikes`` ``[T, N]``.

    Raises:
        ValueError: an unknown ``layer`` (lists the model's IF layers), ``neurons < 1``, ``T < 1``,
            a sample that does not fit the model's first layer (expected and got shapes, e.g. a
            flat ``[784]`` or a batched ``[1, 1, 28, 28]`` for a Conv2d that takes ``[1, 28, 28]``),
            a sample whose dtype is not the model's parameters'.
    """
    known = list(if_layers(model))
    if layer not in known:
        raise ValueError(f"no IF layer {layer!r}; the IF layers are: {', '.join(known) or 'none'}")
    if neurons is not None and neurons < 1:
        raise ValueError(f"neurons must be >= 1 (or None for all), got {neurons}")
    problem = input_shape_problem(model, (1, *x.shape))
    if problem is not None:
        raise ValueError(
            f"spike_raster takes one sample without the batch axis, got shape {list(x.shape)}; "
            f"with the batch axis added (B = 1): {problem}"
        )
    problem = input_dtype_problem(model, x.dtype)
    if problem is not None:
        raise ValueError(f"spike_raster: {problem}")
    result = simulate(model, x.unsqueeze(0), T, record=True, warn_silent=False)
    if result.spikes is None:  # record=True always fills it
        raise ValueError("the simulator recorded no spikes")
    train = result.spikes[layer][:, 0].flatten(1)  # [T, neurons of the layer]
    counts = train.sum(0, dtype=torch.int64)
    if neurons is None or neurons >= train.shape[1]:
        index = torch.arange(train.shape[1])
    else:
        order = torch.argsort(-counts * train.shape[1] + torch.arange(train.shape[1], device=counts.device))
        index = order[:neurons].sort().values.cpu()
    total = int(result.spike_counts[layer][0].sum())
    prediction = int(result.predictions()[-1, 0])
    return Raster(layer, train[:, index.to(train.device)].cpu(), index, total, int(train.shape[1]), prediction)
