"""Record activation statistics of every ReLU over calibration data (an fx Interpreter)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import cast

import torch
import torch.fx as fx
from torch.utils.data import DataLoader, Dataset, TensorDataset

from converter.statistics import ActivationStats, all_reduce_stats
from converter.trace import UnsupportedLayerError
from simulator import distributed
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


#: Samples per batch when calibration data comes as one tensor, an ``(x, y)`` pair or a dataset.
CALIBRATION_BATCH = 256


class TensorBatches:
    """``[N, ...]`` inputs as consecutive ``[batch_size, ...]`` views (the last may be shorter);
    iterable again and again, with ``len()`` the number of batches."""

    def __init__(self, x: torch.Tensor, batch_size: int = CALIBRATION_BATCH) -> None:
        self.x, self.batch_size = x, batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, self.x.shape[0], self.batch_size):
            yield self.x[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-self.x.shape[0] // self.batch_size)


def calibration_batches(data, batch_size: int = CALIBRATION_BATCH) -> Iterable:
    """Calibration data in any of the usual forms as an iterable of ``[B, ...]`` batches (or
    ``(inputs, labels)`` batches), which :func:`record_activations` and the calibration read.

    Accepted: a tensor ``[N, ...]`` of inputs (batched here, ``batch_size`` at a time); an
    ``(x, y)`` pair of inputs ``[N, ...]`` and labels ``[N]`` (the labels are not used) as a
    tuple *or a list*: two tensors whose first dims agree, the second 1-D of integers, are a
    pair, not two batches; a ``TensorDataset`` (its first tensor); any other
    ``torch.utils.data.Dataset`` (read through a non-shuffling ``DataLoader``); a
    ``DataLoader`` or any other re-iterable of batches (a list of tensors...), as it is; a
    one-shot iterator (a generator) is read once here into a list, since the converter reads
    the data more than once.

    Raises:
        TypeError: anything else (``None``, a number, a string, a dict, an array that is not a
            tensor...), naming its type; a tensor without a batch axis.
        ValueError: an empty tensor, dataset or iterator.

    Example:
        >>> x = torch.rand(600, 1, 28, 28)  # [N, C, H, W]
        >>> [b.shape[0] for b in calibration_batches(x)], len(calibration_batches((x, torch.zeros(600))))
        ([256, 256, 88], 3)
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        integer = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
        if y.dim() == 1 and x.dim() >= 1 and x.shape[0] == y.shape[0] and (isinstance(data, tuple) or integer):
            data = x
    if isinstance(data, TensorDataset):
        data = data.tensors[0]
    if isinstance(data, torch.Tensor):
        if data.dim() < 1:
            raise TypeError(f"calibration data: a tensor [N, ...] of inputs is needed, got a 0-d tensor {data!r}")
        if data.shape[0] == 0:
            raise ValueError("calibration data: the tensor holds no samples (shape[0] = 0)")
        return TensorBatches(data, batch_size)
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        if hasattr(data, "__len__") and len(data) == 0:
            raise ValueError(f"calibration data: the {type(data).__name__} holds no samples")
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    if data is None or isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "calibration data must be a tensor [N, ...] of inputs, an (x, y) pair of tensors, a TensorDataset, "
            f"a Dataset, a DataLoader or an iterable of [B, ...] batches; got {type(data).__name__}"
        )
    if iter(data) is data:  # a generator or other one-shot iterator: read it once, keep the batches
        kind, data = type(data).__name__, list(data)
        if not data:
            raise ValueError(f"calibration data: the {kind} yielded no batches")
    return data


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
    hint = ""
    if isinstance(batch, dict):
        hint = f" with keys {sorted(map(str, batch))}: give a DataLoader of tensors or (inputs, labels) pairs"
    elif type(batch).__module__ == "numpy":
        hint = ": convert it with torch.from_numpy(x)"
    raise TypeError(f"a calibration batch must be a tensor or (inputs, ...) tuple, got {type(batch).__name__}{hint}")


@torch.no_grad()
def record_activations(
    gm: fx.GraphModule,
    dataloader: Iterable,
    track_histogram: bool,
    progress: Callable[[int], None] | None = None,
    channel_wise: bool = False,
    shard: bool | None = None,
) -> tuple[dict[str, ActivationStats], tuple[int, ...], int]:
    """Run ``gm`` (eval mode, no grad) over ``dataloader`` and summarise each ReLU's output.

    Under ``torch.distributed`` each rank records its share of the batches (round robin by batch
    index, :func:`simulator.distributed.owns`) and the summaries are merged across ranks exactly
    (:func:`~converter.statistics.all_reduce_stats`): every rank returns what one process
    recording every batch returns, bit for bit (max, counts, histograms, per channel too).

    Args:
        gm: the traced ANN (BatchNorm already folded or not: the values are the same).
        dataloader: yields input tensors ``[B, ...]`` or ``(inputs, labels)`` tuples.
        track_histogram: keep histograms (needed for percentile modes).
        progress: called with each batch's size (sharded: also for the other ranks' batches).
        channel_wise: keep one summary per channel (dim 1) of each activation.
        shard: share the batches among the ranks (default: when a process group of more than
            one process is initialised); ``False``: every rank records every batch.

    Returns:
        ``(stats by ReLU node name, input shape without the batch axis, samples seen)`` (all
        ranks' samples when sharded).

    Raises:
        ValueError: the dataloader yields no samples (on no rank).
        simulator.distributed.RankFailed: sharded, and another rank's part raised (naming it).
    """
    modules = dict(gm.named_modules())
    names = {n.name for n in gm.graph.nodes if is_relu(n, modules)}
    device = next((p.device for p in gm.parameters()), torch.device("cpu"))
    recorder = _Recorder(gm.eval(), names, track_histogram, channel_wise)
    shard = distributed.is_distributed() if shard is None else shard

    def local() -> tuple[tuple[int, ...] | None, int]:
        input_shape: tuple[int, ...] | None = None
        samples = 0
        for index, batch in enumerate(dataloader):
            x = batch_inputs(batch)
            if not shard or distributed.owns(index):
                x = x.to(device)
                input_shape = tuple(x.shape[1:])
                recorder.run(x)
                samples += x.shape[0]
            if progress is not None:
                progress(x.shape[0])
        return input_shape, samples

    parts = distributed.gather("record activations", local) if shard else [local()]
    shapes = [shape for shape, _ in parts if shape is not None]
    if not shapes:
        raise ValueError("the calibration dataloader yielded no samples")
    stats = all_reduce_stats(recorder.stats) if shard else recorder.stats
    return stats, shapes[0], sum(n for _, n in parts)
