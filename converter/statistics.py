"""Mergeable activation statistics: exact max and a log-binned histogram for percentiles.

``torch.quantile`` refuses more than 2^24 values; one layer of the seed CNN over 1,000
calibration images already has 21.6 million. :class:`ActivationStats` instead keeps the exact
count, zero count and maximum, plus (for percentile modes) a histogram of the positive values
with ``BINS_PER_OCTAVE`` logarithmic bins per factor of two over [2^-32, 2^32). Memory is fixed
per layer (2 MiB), and two summaries merge by addition, so one pass, many batches or many
processes give the same numbers.

Bound: a percentile is returned as the geometric centre of the bin holding the order statistic
(clamped to the exact max), so its relative error is at most ``2^(1/(2*BINS_PER_OCTAVE)) - 1``
≈ 8.5e-5 for values in [2^-32, 2^32); values below 2^-32 count as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

BINS_PER_OCTAVE = 4096
MIN_EXP, MAX_EXP = -32, 32
N_BINS = (MAX_EXP - MIN_EXP) * BINS_PER_OCTAVE
#: Largest relative error of :meth:`ActivationStats.percentile` inside the binned range.
RELATIVE_ERROR = 2 ** (1 / (2 * BINS_PER_OCTAVE)) - 1


@dataclass
class ActivationStats:
    """Summary of one layer's activations over the calibration set.

    Attributes:
        count: number of values seen. zeros: values below 2^-32 (ReLU zeros).
        max: the exact largest value (0 if none seen).
        histogram: ``[N_BINS]`` int64 counts of positive values, or None when only the max
            is tracked (``'max'`` and fraction modes).
    """

    count: int = 0
    zeros: int = 0
    max: float = 0.0
    histogram: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, track_histogram: bool) -> ActivationStats:
        return cls(histogram=torch.zeros(N_BINS, dtype=torch.int64) if track_histogram else None)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the values of ``x`` (any shape, non-negative: post-ReLU activations)."""
        x = x.detach().reshape(-1)
        if x.numel() == 0:
            return
        self.count += x.numel()
        self.max = max(self.max, float(x.max()))
        positive = x[x >= 2.0**MIN_EXP]
        self.zeros += x.numel() - positive.numel()
        if self.histogram is not None and positive.numel():
            idx = ((torch.log2(positive.double()) - MIN_EXP) * BINS_PER_OCTAVE).floor().long()
            self.histogram += torch.bincount(idx.clamp_(0, N_BINS - 1), minlength=N_BINS).cpu()

    def merge(self, other: ActivationStats) -> ActivationStats:
        """A new summary equal to one pass over both data sets."""
        if (self.histogram is None) != (other.histogram is None):
            raise ValueError("cannot merge a summary with a histogram and one without")
        hist = None if self.histogram is None else self.histogram + other.histogram
        return ActivationStats(self.count + other.count, self.zeros + other.zeros, max(self.max, other.max), hist)

    def _order_statistic(self, k: int, cumulative: torch.Tensor) -> float:
        if k >= self.count - 1:
            return self.max
        if k < self.zeros:
            return 0.0
        b = int(torch.searchsorted(cumulative, k - self.zeros, right=True))
        centre = 2.0 ** (MIN_EXP + (b + 0.5) / BINS_PER_OCTAVE)
        return min(centre, self.max)

    def percentile(self, p: float) -> float:
        """The p-th percentile (0 < p <= 100) with numpy's default linear interpolation,
        within :data:`RELATIVE_ERROR` (relative).

        Raises:
            ValueError: no values seen, p outside (0, 100], or no histogram was tracked.
        """
        if not 0 < p <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {p}")
        if self.count == 0:
            raise ValueError("no activations recorded")
        if p == 100:
            return self.max
        if self.histogram is None:
            raise ValueError("percentiles need a histogram: create the stats with track_histogram=True")
        rank = p / 100 * (self.count - 1)
        lo, frac = math.floor(rank), rank - math.floor(rank)
        cumulative = self.histogram.cumsum(0)
        low = self._order_statistic(lo, cumulative)
        high = self._order_statistic(lo + 1, cumulative) if frac > 0 else low
        return low + frac * (high - low)
