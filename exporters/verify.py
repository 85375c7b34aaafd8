"""Cross-check a reloaded SNN against the in-memory one: same input, same spikes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from simulator import simulate


@dataclass(frozen=True)
class RoundTripReport:
    """Result of :func:`compare_spike_counts`.

    Attributes:
        equal: every IF layer's spike counts and the outputs are identical.
        max_count_diff: largest absolute difference of any neuron's spike count (spikes).
        max_output_diff: largest absolute difference of any per-step output.
        layers: number of IF layers compared.
    """

    equal: bool
    max_count_diff: float
    max_output_diff: float
    layers: int


@torch.no_grad()
def compare_spike_counts(a: nn.Module, b: nn.Module, x: torch.Tensor, T: int, **simulate_kwargs) -> RoundTripReport:
    """Simulate both SNNs on ``x`` (``[B, ...]``) for ``T`` steps and compare layer by layer.

    Layers are matched by module path when both SNNs have the same set of IF layer paths (an
    exported and reimported SNN does: NIR node names are module paths), else in registration
    order; a different number of IF layers is a mismatch.
    """
    ra = simulate(a, x, T, **simulate_kwargs)
    rb = simulate(b, x, T, **simulate_kwargs)
    counts_a, counts_b = list(ra.spike_counts.values()), list(rb.spike_counts.values())
    if set(ra.spike_counts) == set(rb.spike_counts):
        counts_b = [rb.spike_counts[name] for name in ra.spike_counts]
    same_layers = len(counts_a) == len(counts_b) and all(
        u.shape == v.shape for u, v in zip(counts_a, counts_b, strict=False)
    )
    count_diff = float("inf")
    if same_layers:
        diffs = ((u - v.to(u.device)).abs().max().item() for u, v in zip(counts_a, counts_b, strict=True))
        count_diff = max(diffs, default=0.0)
    if ra.outputs.shape == rb.outputs.shape:
        out_diff = (ra.outputs - rb.outputs.to(ra.outputs.device)).abs().max().item()
    else:
        out_diff = float("inf")
    return RoundTripReport(same_layers and count_diff == 0 and out_diff == 0, count_diff, out_diff, len(counts_a))
