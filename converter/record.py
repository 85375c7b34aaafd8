"""Record activation statistics of every ReLU over calibration data (an fx Interpreter)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import torch
import torch.fx as fx

from converter.statistics import ActivationStats
from converter.trace import UnsupportedLayerError
from simulator.graph import describe, is_relu, is_reshape


class _Recorder(fx.Interpreter):
    """Runs the graph, feeding each ReLU's output to its summary (created on first sight) and
    checking that every reshape keeps the batch axis (the simulator folds time steps into it)."""

    def __init__(self, gm: fx.GraphModule, names: set[str], track_histogram: bool, channel_wise: bool) -> None:
        super().__init__(gm)
        self.names = names
        self.track_histogram = track_histogram
        self.channel_wise = channel_wise
        self.stats: dict[str, ActivationStats] = {}
        modules = dict(gm.named_modules())
        self.reshapes = {n: describe(n, modules) for n in gm.graph.nodes if is_reshape(n, modules)}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.names:
            if n.name not in self.stats:
                channels = out.shape[1] if self.channel_wise and out.dim() >= 2 else None
                self.stats[n.name] = ActivationStats.empty(self.track_histogram, channels)
            self.stats[n.name].update(out)
        if n in self.reshapes:
            batch = self.env[cast(fx.Node, n.args[0])].shape[0]
            if out.shape[0] != batch:
                raise UnsupportedLayerError(
                    f"cannot convert {self.reshapes[n]}: it turns a batch of {batch} into {out.shape[0]}; keep the "
                    "batch axis with nn.Flatten(), x.flatten(1) or x.view(x.size(0), -1) "
                    "(the simulator folds time steps into the batch axis)"
                )
        return out


class _Capture(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names, self.values = names, cast(dict[str, torch.Tensor], {})

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.names:
            self.values[n.name] = out.clone()
        return out


@torch.no_grad()
def capture_activations(gm: fx.GraphModule, x: torch.Tensor, names: set[str]) -> dict[str, torch.Tensor]:
    """The outputs ``[N, ...]`` of the nodes ``names`` when ``gm`` runs on ``x`` (eval, no grad)."""
    capture = _Capture(gm.eval(), names)
    capture.run(x)
    return capture.values


def first_samples(dataloader: Iterable, n: int) -> torch.Tensor:
    """The first ``n`` inputs of ``dataloader`` stacked into ``[n, ...]`` (fewer if it is shorter)."""
    parts, total = [], 0
    for batch in dataloader:
        x = batch_inputs(batch)
        parts.append(x[: n - total])
        total += parts[-1].shape[0]
        if total >= n:
            break
    if not parts:
        raise ValueError("the calibration dataloader yielded no samples")
    return torch.cat(parts)


def batch_inputs(batch) -> torch.Tensor:
    """The input tensor of a DataLoader batch: the batch itself or its first element."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(f"a calibration batch must be a tensor or (inputs, ...) tuple, got {type(batch).__name__}")


@torch.no_grad()
def record_activations(
    gm: fx.GraphModule,
    dataloader: Iterable,
    track_histogram: bool,
    progress: Callable[[int], None] | None = None,
    channel_wise: bool = False,
) -> tuple[dict[str, ActivationStats], tuple[int, ...], int]:
    """Run ``gm`` (eval mode, no grad) over ``dataloader`` and summarise each ReLU's output.

    Args:
        gm: the traced ANN (BatchNorm already folded or not: the values are the same).
        dataloader: yields input tensors ``[B, ...]`` or ``(inputs, labels)`` tuples.
        track_histogram: keep histograms (needed for percentile modes).
        progress: called with each batch's size.
        channel_wise: keep one summary per channel (dim 1) of each activation.

    Returns:
        ``(stats by ReLU node name, input shape without the batch axis, samples seen)``.

    Raises:
        ValueError: the dataloader yields no samples.
    """
    modules = dict(gm.named_modules())
    names = {n.name for n in gm.graph.nodes if is_relu(n, modules)}
    device = next((p.device for p in gm.parameters()), torch.device("cpu"))
    recorder = _Recorder(gm.eval(), names, track_histogram, channel_wise)
    input_shape: tuple[int, ...] | None = None
    samples = 0
    for batch in dataloader:
        x = batch_inputs(batch).to(device)
        input_shape = tuple(x.shape[1:])
        recorder.run(x)
        samples += x.shape[0]
        if progress is not None:
            progress(x.shape[0])
    if input_shape is None:
        raise ValueError("the calibration dataloader yielded no samples")
    return recorder.stats, input_shape, samples
