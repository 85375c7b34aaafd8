"""Mergeable activation statistics: exact max and a fixed-size histogram for percentiles.

``torch.quantile`` refuses more than 2^24 values; one layer of the seed CNN over 1,000
calibration images already has 21.6 million. :class:`ActivationStats` keeps the exact count,
zero count and maximum, plus (for percentile modes) a histogram whose bins are the float32 bit
patterns of the values with the low mantissa bits dropped: ``MANTISSA_BITS`` mantissa bits
give ``2^MANTISSA_BITS`` equal bins per octave over [2^MIN_EXP, 2^MAX_EXP). Binning is one
integer shift per value (no logarithm), memory is fixed per layer (4 MiB; 256 KiB a channel for
per-channel statistics), and two summaries merge by addition, so one pass, many batches or many
processes give bit-identical summaries.

Bound: a percentile is computed from the midpoints of the bins that hold the order statistics
(clamped to the exact max), so its relative error is at most ``2^-(MANTISSA_BITS + 1)``
(:data:`RELATIVE_ERROR` ≈ 6.1e-5) for values in [2^MIN_EXP, 2^MAX_EXP); smaller values count
as zero and larger ones fall in the top bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import torch

from simulator import distributed

MANTISSA_BITS = 13
#: Mantissa bits of per-channel histograms (``[C, n_bins]``): 512 bins per octave, 256 KiB a channel.
CHANNEL_MANTISSA_BITS = 9
MIN_EXP, MAX_EXP = -32, 32
#: Largest relative error of :meth:`ActivationStats.percentile` inside the binned range
#: (layer-wise statistics; per-channel ones: ``2^-(CHANNEL_MANTISSA_BITS + 1)`` ≈ 9.8e-4).
RELATIVE_ERROR = 2.0 ** -(MANTISSA_BITS + 1)


def n_bins(bits: int = MANTISSA_BITS) -> int:
    """Histogram length for ``bits`` mantissa bits; bin 0 holds zeros (values < 2^MIN_EXP)."""
    return 1 + ((MAX_EXP - MIN_EXP) << bits)


N_BINS = n_bins()


def _offset(bits: int) -> int:
    return (127 + MIN_EXP) << bits  # the shifted bit pattern of 2^MIN_EXP


def _bin_midpoints(bins: torch.Tensor, bits: int = MANTISSA_BITS) -> torch.Tensor:
    """float64 midpoints of histogram bins ``bins`` (>= 1)."""
    shift = 23 - bits
    pattern = ((bins - 1 + _offset(bits)) << shift) | (1 << (shift - 1))
    return pattern.to(torch.int32).view(torch.float32).double()


def bin_index(x: torch.Tensor, bits: int = MANTISSA_BITS) -> torch.Tensor:
    """Histogram bin of each value of ``x`` (int32, same shape): 0 for values below 2^MIN_EXP."""
    index = x.float().contiguous().view(torch.int32) >> (23 - bits)  # int32 throughout: one allocation
    return index.sub_(_offset(bits) - 1).clamp_(0, n_bins(bits) - 1)


@dataclass
class ActivationStats:
    """Summary of one layer's activations over the calibration set.

    With ``channels=None`` one summary covers the whole layer; with ``channels=C`` (channel-wise
    normalisation) every field has a leading ``[C]`` axis over dim 1 of the activations.

    Attributes:
        count: number of values seen (per channel). zeros: values below 2^MIN_EXP.
        max: the exact largest value (0 if none seen); a float, or ``[C]`` float64.
        histogram: ``[N_BINS]`` (or ``[C, n_bins(CHANNEL_MANTISSA_BITS)]``) int64 counts, bin 0 = zeros;
            None when only the max is tracked (``'max'`` and fraction modes).
    """

    count: int = 0
    max: float | torch.Tensor = 0.0
    histogram: torch.Tensor | None = field(default=None, repr=False)
    channels: int | None = None
    bits: int = MANTISSA_BITS

    @classmethod
    def empty(cls, track_histogram: bool, channels: int | None = None) -> ActivationStats:
        bits = MANTISSA_BITS if channels is None else CHANNEL_MANTISSA_BITS
        shape = (n_bins(bits),) if channels is None else (channels, n_bins(bits))
        hist = torch.zeros(shape, dtype=torch.int64) if track_histogram else None
        start_max = 0.0 if channels is None else torch.zeros(channels, dtype=torch.float64)
        return cls(0, start_max, hist, channels, bits)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the values of ``x`` (non-negative, post-ReLU): any shape, or ``[B, C, ...]``
        for per-channel statistics.

        Raises:
            ValueError: per-channel statistics and ``x.shape[1] != channels``.
        """
        x = x.detach()
        if x.numel() == 0:
            return
        if self.channels is None:
            self.count += x.numel()
            self.max = max(self.max, float(x.max()))
            if self.histogram is not None:
                self.histogram += torch.bincount(bin_index(x).reshape(-1), minlength=N_BINS).cpu()
            return
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected [B, {self.channels}, ...] activations, got {tuple(x.shape)}")
        per_channel = x.transpose(0, 1).reshape(self.channels, -1)
        self.count += per_channel.shape[1]
        self.max = torch.maximum(cast(torch.Tensor, self.max), per_channel.max(1).values.double().cpu())
        if self.histogram is not None:
            length = n_bins(self.bits)
            idx = bin_index(per_channel, self.bits) + torch.arange(self.channels, device=x.device).view(-1, 1) * length
            flat = torch.bincount(idx.reshape(-1), minlength=self.channels * length).cpu()
            self.histogram += flat.view(self.channels, length)

    def merge(self, other: ActivationStats) -> ActivationStats:
        """A new summary equal (bit for bit) to one pass over both data sets."""
        if (self.histogram is None) != (other.histogram is None) or self.channels != other.channels:
            raise ValueError("cannot merge summaries of different kinds (histogram or channels differ)")
        hist = None if self.histogram is None else self.histogram + cast(torch.Tensor, other.histogram)
        if self.channels is None:
            top = max(self.max, other.max)
        else:
            top = torch.maximum(cast(torch.Tensor, self.max), cast(torch.Tensor, other.max))
        return ActivationStats(self.count + other.count, top, hist, self.channels, self.bits)

    @property
    def zeros(self) -> int | torch.Tensor:
        """Number of values below 2^MIN_EXP (needs the histogram)."""
        if self.histogram is None:
            raise ValueError("zero counts need a histogram")
        return self.histogram[..., 0] if self.channels is not None else int(self.histogram[0])

    def percentile(self, p: float) -> float | torch.Tensor:
        """The p-th percentile (0 < p <= 100) with numpy's default linear interpolation, within
        :data:`RELATIVE_ERROR` (relative); a ``[C]`` float64 tensor for per-channel statistics.

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
        hist = self.histogram.view(-1, self.histogram.shape[-1])
        tops = torch.as_tensor(self.max, dtype=torch.float64).view(-1)
        rank = p / 100 * (self.count - 1)
        lo, frac = math.floor(rank), rank - math.floor(rank)
        cumulative = hist.cumsum(1)
        values = [self._order_statistic(k, cumulative, tops) for k in ((lo, lo + 1) if frac > 0 else (lo,))]
        result = values[0] if len(values) == 1 else values[0] + frac * (values[1] - values[0])
        return float(result[0]) if self.channels is None else result

    def _order_statistic(self, k: int, cumulative: torch.Tensor, tops: torch.Tensor) -> torch.Tensor:
        """``[C]`` float64 approximation of the k-th smallest value (0-based) per row."""
        if k >= self.count - 1:
            return tops.clone()
        target = torch.full((cumulative.shape[0], 1), k, dtype=cumulative.dtype)
        bins = torch.searchsorted(cumulative, target, right=True).view(-1)
        values = torch.where(bins == 0, torch.zeros_like(tops), _bin_midpoints(bins.clamp(min=1), self.bits))
        return torch.minimum(values, tops)


@torch.no_grad()
def rate_coded_counts(
    x: torch.Tensor, T: int, v_init: float, reset: str = "subtract", spike_rule: str = ">="
) -> torch.Tensor:
    """Spikes in ``T`` steps of an IF neuron (threshold 1) driven by the constant input ``x >= 0``
    per step from ``V[0] = v_init``.

    Reset by subtraction keeps the charge above threshold: ``n = clamp(floor(T x + v_init), 0, T)``
    (exact for ``v >= V_th``; the search uses it for every spike rule). Reset to zero loses it
    (Loihi 2): the first spike comes after ``t_1`` steps, then one every ``m`` steps from 0,

    .. math::  n = 1 + \\lfloor (T - t_1) / m \\rfloor \\ (t_1 \\le T, \\text{ else } 0), \\qquad
        t_1 = \\lfloor (1 - v_{init}) / x \\rfloor + 1, \\ m = \\lfloor 1 / x \\rfloor + 1 \\ (v > V_{th}),

    with ``t_1 = max(1, ⌈(1 - v_init)/x⌉)``, ``m = max(1, ⌈1/x⌉)`` for ``v >= V_th`` (and
    ``"multi"``, counted as one spike per firing step). Input ``x = 1/2`` with reset to zero and
    ``v > V_th`` fires every third step (rate 1/3, not 1/2).

    Args:
        x: inputs per step in threshold units, any shape (float64 recommended).

    Returns:
        The counts, ``x``'s shape and dtype.

    Example:
        >>> x = torch.tensor([0.5, 0.25], dtype=torch.float64)
        >>> rate_coded_counts(x, 12, 0.0).tolist(), rate_coded_counts(x, 12, 0.0, "zero", ">").tolist()
        ([6.0, 3.0], [4.0, 2.0])
    """
    if reset == "subtract":
        return torch.floor(T * x + v_init).clamp(0, T)
    safe = x.clamp_min(1e-12)
    if spike_rule == ">":
        first, period = torch.floor((1 - v_init) / safe) + 1, torch.floor(1 / safe) + 1
    else:
        first, period = torch.ceil((1 - v_init) / safe).clamp_min(1), torch.ceil(1 / safe).clamp_min(1)
    n = 1 + torch.floor((T - first) / period)
    return torch.where((x > 0) & (first <= T), n, torch.zeros_like(n)).clamp(0, T)


def mse_optimal_scale(
    stats: ActivationStats,
    upper: float | torch.Tensor,
    T: int,
    v_init: float,
    candidates: int = 64,
    octave_bins: int = 128,
    reset: str = "subtract",
    spike_rule: str = ">=",
) -> torch.Tensor:
    """The scale λ ≤ ``upper`` minimising the squared error between the activations and their
    T-step rate-coded version (per channel for per-channel statistics).

    An IF neuron with reset by subtraction, constant input ``a/λ`` per step and ``V[0] = v_init``
    fires ``n = clamp(floor(T a/λ + v_init), 0, T)`` times in T steps, so it represents
    ``q(a) = n λ / T``; with ``reset="zero"`` (and its ``spike_rule``) it fires fewer times,
    :func:`rate_coded_counts`, so a smaller λ codes better. The error ``Σ (a - q(a))²`` is
    evaluated on the histogram (bins merged in ``octave_bins`` per octave) for ``λ = f·upper``,
    ``f`` on a grid of ``candidates`` values in (0, 1]. This is the threshold search of Li et al.
    (ICML 2021) for a given time budget T.

    Every λ codes a layer with no positive value (a dead layer) without error; it keeps ``upper``.

    Returns:
        ``[C]`` float64 λ per channel (``[1]`` for layer-wise statistics).

    Raises:
        ValueError: the statistics have no histogram.
    """
    if stats.histogram is None:
        raise ValueError("the scale search needs a histogram")
    if not bool(stats.histogram[..., 1:].any()):
        rows = stats.histogram.view(-1, stats.histogram.shape[-1]).shape[0]
        return torch.as_tensor(upper, dtype=torch.float64).view(-1).expand(rows).clone()
    coarsen = max(1, (1 << stats.bits) // octave_bins)
    length = stats.histogram.shape[-1]
    hist = stats.histogram.view(-1, length)[:, 1:].double()
    hist = hist.view(hist.shape[0], -1, coarsen).sum(-1)
    occupied = hist.sum(0) > 0
    first = torch.arange(1, length, coarsen, dtype=torch.int64)
    lo, hi = _bin_midpoints(first, stats.bits), _bin_midpoints(first + coarsen - 1, stats.bits)
    values = ((lo + hi) / 2)[occupied]  # [M]
    counts = hist[:, occupied]  # [C, M]
    upper = torch.as_tensor(upper, dtype=torch.float64).view(-1, 1).expand(counts.shape[0], 1)
    best_err = torch.full((counts.shape[0],), float("inf"), dtype=torch.float64)
    best = upper.view(-1).clone()
    for f in torch.linspace(1.0 / candidates, 1.0, candidates, dtype=torch.float64):
        lam = f * upper  # [C, 1]
        n = rate_coded_counts(values / lam, T, v_init, reset, spike_rule)
        err = (counts * (values - n * lam / T) ** 2).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, lam.view(-1), best)
    return best


def all_reduce_stats(stats: dict[str, ActivationStats]) -> dict[str, ActivationStats]:
    """Merge every rank's statistics exactly (under ``torch.distributed``; ``stats`` itself in a
    single process): counts and histograms by an all-reduce SUM, maxima by an all-reduce MAX, so
    the result is bit-identical to :meth:`ActivationStats.merge` of all ranks' summaries, i.e. to
    one pass over all ranks' data (also per channel). A rank that saw no batch contributes empty
    summaries (the layers' kinds are exchanged first).

    Args:
        stats: this rank's summaries by ReLU node name (every rank calls this, with the summaries
            of its own share of the calibration data).

    Returns:
        The merged summaries, the same on every rank.

    Raises:
        ValueError: two ranks hold different kinds of summary for one layer (histogram or channels).
    """
    if not distributed.is_distributed():
        return stats
    kinds: dict[str, tuple[bool, int | None]] = {}
    mine = {name: (s.histogram is not None, s.channels) for name, s in stats.items()}
    every = distributed.gather("statistics kinds", lambda: mine)
    for rank, theirs in enumerate(every):
        for name, kind in theirs.items():
            if kinds.setdefault(name, kind) != kind:
                raise ValueError(
                    f"rank {rank} records {name} as {kind}, another rank as {kinds[name]} (histogram, channels)"
                )
    names = sorted(kinds)
    local = {n: stats.get(n) or ActivationStats.empty(kinds[n][0], kinds[n][1]) for n in names}
    counts = distributed.all_reduce(torch.tensor([local[n].count for n in names], dtype=torch.int64))
    tops = [torch.as_tensor(local[n].max, dtype=torch.float64).view(-1) for n in names]
    maxima = distributed.all_reduce(torch.cat(tops), op="max").split([t.numel() for t in tops])
    merged = {}
    for name, count, top in zip(names, counts.tolist(), maxima, strict=True):
        s = local[name]
        hist = None if s.histogram is None else distributed.all_reduce(s.histogram)
        value: float | torch.Tensor = float(top[0]) if s.channels is None else top.clone()
        merged[name] = ActivationStats(count, value, hist, s.channels, s.bits)
    return merged
