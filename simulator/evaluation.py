"""Evaluation over a data set: the one loop over ``(x, y)`` batches that simulates each batch.

:func:`evaluate` sums, batch by batch, what accuracy per time step and spike statistics need
into an :class:`Evaluation` of plain totals (integer counts), which :meth:`Evaluation.merge`
adds exactly, so one pass, many batches or many processes give the same numbers.
:func:`accuracy_per_t` is its accuracy curve; :func:`classify` keeps every prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from simulator import distributed
from simulator.early_exit import DEFAULT_STABLE_STEPS
from simulator.simulate import SimulationResult, simulate, warn_silent_layers


@dataclass(frozen=True, eq=False)  # eq would compare tensors element-wise
class Evaluation:
    """Totals of an SNN run on ``samples`` samples for up to ``T`` time steps each.

    Attributes:
        T: the time steps simulated per sample (the budget; fewer with early exit).
        samples: number of samples.
        correct: ``[T]`` int64, correct predictions at t = 1..T summed over the samples
            (:meth:`SimulationResult.correct_per_t`); ``None`` when the batches had no labels.
        spikes: per IF layer path, spikes emitted over all samples and the steps simulated.
        neurons: per IF layer path, neurons per sample (the layer's ``[C, ...]`` size).
        steps: time steps used, summed over the samples (``samples * T`` without early exit;
            with early exit each sample's exit step, :attr:`SimulationResult.steps_used`).

    Example:
        >>> a = Evaluation(4, 2, torch.tensor([1, 2, 2, 2]), {"if1": 10}, {"if1": 8}, 8)
        >>> b = Evaluation(4, 2, torch.tensor([0, 1, 2, 2]), {"if1": 6}, {"if1": 8}, 8)
        >>> both = a.merge(b)  # e.g. two batches, or two processes
        >>> both.samples, both.accuracy_per_t.tolist(), both.spikes_per_sample
        (4, [25.0, 75.0, 100.0, 100.0], {'if1': 4.0})
    """

    T: int
    samples: int
    correct: torch.Tensor | None
    spikes: dict[str, int]
    neurons: dict[str, int]
    steps: int

    @classmethod
    def from_result(cls, result: SimulationResult, labels: torch.Tensor | None = None) -> Evaluation:
        """The totals of one simulated batch; ``labels`` ``[B]`` (integer classes) or ``None``."""
        counts = result.spike_counts
        batch = int(result.outputs.shape[1])
        steps = batch * result.T if result.steps_used is None else int(result.steps_used.sum())
        return cls(
            T=result.T,
            samples=batch,
            correct=None if labels is None else result.correct_per_t(labels).cpu().to(torch.int64),
            spikes={name: int(c.sum(dtype=torch.int64)) for name, c in counts.items()},
            neurons={name: int(c.shape[1:].numel()) for name, c in counts.items()},
            steps=steps,
        )

    def merge(self, other: Evaluation) -> Evaluation:
        """The totals of both (exact: integer sums).

        Raises:
            ValueError: different ``T``, one with labels and one without, or different IF
                layers (names or sizes).
        """
        if other.T != self.T:
            raise ValueError(f"cannot merge evaluations of T={self.T} and T={other.T}")
        if (self.correct is None) != (other.correct is None):
            raise ValueError("cannot merge an evaluation with labels and one without")
        if other.neurons != self.neurons:
            raise ValueError(f"cannot merge evaluations of different IF layers: {self.neurons} and {other.neurons}")
        return Evaluation(
            T=self.T,
            samples=self.samples + other.samples,
            correct=None if self.correct is None else self.correct + cast(torch.Tensor, other.correct),
            spikes={name: total + other.spikes[name] for name, total in self.spikes.items()},
            neurons=dict(self.neurons),
            steps=self.steps + other.steps,
        )

    @property
    def accuracy_per_t(self) -> torch.Tensor | None:
        """``[T]`` float64 accuracy in percent at t = 1..T (``None`` without labels)."""
        return None if self.correct is None else 100.0 * self.correct.double() / self.samples

    @property
    def accuracy(self) -> float | None:
        """Accuracy in percent at t = T (``None`` without labels)."""
        return None if self.correct is None else 100.0 * int(self.correct[-1]) / self.samples

    @property
    def mean_steps(self) -> float:
        """Time steps used per sample (``T`` without early exit)."""
        return self.steps / self.samples

    @property
    def spikes_per_sample(self) -> dict[str, float]:
        """Per IF layer path, spikes per sample over the steps simulated."""
        return {name: total / self.samples for name, total in self.spikes.items()}

    @property
    def rates(self) -> dict[str, float]:
        """Per IF layer path, spikes per neuron and per time step of the budget ``T``."""
        return {name: total / (self.samples * self.neurons[name] * self.T) for name, total in self.spikes.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    T: int,
    progress: Callable[[int], None] | None = None,
    shard: bool | None = None,
    **simulate_kwargs,
) -> Evaluation:
    """Simulate every batch for ``T`` time steps and sum the totals (:class:`Evaluation`).

    Under ``torch.distributed`` (a process group of more than one process) each rank simulates
    its share of the batches, round robin by batch index (:func:`simulator.distributed.owns`),
    and the totals of all ranks are merged exactly (integer sums), so every rank returns the
    single-process result: nothing is dropped or counted twice, and each sample is simulated in
    the batch it has in one process.

    Args:
        model: the SNN (see :func:`~simulator.simulate.simulate`).
        batches: iterable of ``(x [B, ...], labels [B])``; ``labels`` may be ``None`` (no
            accuracy then), but in every batch or none.
        T: time steps per sample (>= 1).
        progress: called with the batch size after each batch (e.g. ``tqdm.update``); when
            sharded, also for the batches other ranks simulate, so that it counts all samples.
        shard: share the batches among the ranks of the process group (default: when one of
            more than one process is initialised); ``False``: every rank simulates all batches.
        **simulate_kwargs: passed to :func:`~simulator.simulate.simulate` (``time_chunk``,
            ``early_exit``, ``execution``, ...).

    Returns:
        :class:`Evaluation` of all batches (of all ranks' batches when sharded).

    Raises:
        ValueError: no samples; labels in some batches only; an invalid option of
            :func:`~simulator.simulate.simulate`.
        simulator.distributed.RankFailed: sharded, and another rank's part raised (naming it).
    """
    shard = distributed.is_distributed() if shard is None else shard

    def local() -> Evaluation | None:
        total: Evaluation | None = None
        for index, (x, labels) in enumerate(batches):
            if shard and not distributed.owns(index):
                if progress is not None:
                    progress(len(x))
                continue
            batch = Evaluation.from_result(simulate(model, x, T, warn_silent=False, **simulate_kwargs), labels)
            total = batch if total is None else total.merge(batch)
            if progress is not None:
                progress(batch.samples)
        return total

    total: Evaluation | None = None
    for part in distributed.gather("evaluate", local) if shard else [local()]:
        if part is not None:
            total = part if total is None else total.merge(part)
    if total is None or total.samples == 0:
        raise ValueError("no samples to evaluate")
    warn_silent_layers(total.spikes, total.samples, T)
    return total


def accuracy_per_t(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    T: int,
    progress: Callable[[int], None] | None = None,
    **simulate_kwargs,
) -> torch.Tensor:
    """Classification accuracy at every time step over a data set: :func:`evaluate`'s
    :attr:`Evaluation.accuracy_per_t`.

    Args:
        batches: iterable of ``(x [B, ...], labels [B])``.
        progress: called with the batch size after each batch (e.g. ``tqdm.update``).
        **simulate_kwargs: passed to :func:`~simulator.simulate.simulate`.

    Returns:
        ``[T]`` float64 accuracy in percent at t = 1..T.

    Raises:
        ValueError: no samples, batches without labels, or an invalid option of
            :func:`~simulator.simulate.simulate`.
    """
    curve = evaluate(model, batches, T, progress, **simulate_kwargs).accuracy_per_t
    if curve is None:
        raise ValueError("the batches have no labels: no accuracy to compute")
    return curve


@dataclass(frozen=True)
class Classification:
    """What :func:`classify` returns, for ``N`` samples.

    Attributes:
        predictions: ``[N]`` int64 predicted class (at the exit step, or at T).
        labels: ``[N]`` int64 true class.
        steps_used: ``[N]`` int64 time steps after which each prediction was taken.
        correct: number of correct predictions, counted batch by batch as they were made.
    """

    predictions: torch.Tensor
    labels: torch.Tensor
    steps_used: torch.Tensor
    correct: int

    @property
    def accuracy(self) -> float:
        """Percent of correct predictions."""
        return 100.0 * self.correct / len(self.labels)

    @property
    def mean_steps(self) -> float:
        """Mean time steps used per sample."""
        return float(self.steps_used.double().mean())


@torch.no_grad()
def classify(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    T: int,
    early_exit: int | None = DEFAULT_STABLE_STEPS,
    progress: Callable[[int], None] | None = None,
    **simulate_kwargs,
) -> Classification:
    """Classify a data set with the SNN, by default with early exit.

    Args:
        batches: iterable of ``(x [B, ...], labels [B])``.
        T: the most time steps per sample.
        early_exit: ``k`` steps of stable prediction to stop a sample (default
            :data:`~simulator.early_exit.DEFAULT_STABLE_STEPS`); ``None`` runs all T steps.
        progress: called with the batch size after each batch.
        **simulate_kwargs: passed to :func:`simulate`.

    Returns:
        :class:`Classification` with predictions, steps used and accuracy.

    Raises:
        ValueError: no samples, or an invalid option of :func:`simulate`.
    """
    preds, labels, steps, correct = [], [], [], 0
    spikes: dict[str, float] = {}
    for x, y in batches:
        result = simulate(model, x, T, early_exit=early_exit, warn_silent=False, **simulate_kwargs)
        for name, counts in result.spike_counts.items():
            spikes[name] = spikes.get(name, 0.0) + float(counts.sum())
        pred = result.predictions()[-1].cpu()
        used = result.steps_used if result.steps_used is not None else torch.full((len(y),), T)
        y = y.cpu().long()
        correct += int((pred == y).sum())
        preds.append(pred)
        labels.append(y)
        steps.append(used.cpu())
        if progress is not None:
            progress(len(y))
    if not labels:
        raise ValueError("no samples to classify")
    warn_silent_layers(spikes, sum(len(y) for y in labels), T)
    return Classification(torch.cat(preds), torch.cat(labels), torch.cat(steps), correct)
