"""Cross-check a reloaded SNN against the in-memory one: same input, same spikes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from simulator import simulate


@dataclass(frozen=True)
class SelfCheck:
    """Result of :func:`verify_file`: does our simulator reproduce the file's reference vector?

    Attributes:
        equal: every reference output value is reproduced exactly.
        max_abs_diff: largest absolute difference (0.0 when equal).
        T: time steps of the reference. samples: reference inputs.
    """

    equal: bool
    max_abs_diff: float
    T: int
    samples: int


@torch.no_grad()
def verify_file(path) -> SelfCheck:
    """Reload ``path`` and rerun its embedded reference inputs under the file's semantics.

    Raises:
        ValueError: the file has no reference vector (written without ``T``).
        exporters.NIRImportError, FileNotFoundError: see :func:`exporters.import_nir`.
    """
    from exporters.nir_import import import_nir  # local: verify is imported by the package init

    snn = import_nir(path)
    meta = snn.meta.get("ann2snn", {})
    if "reference_input" not in meta or "reference_output" not in meta:
        raise ValueError(f"{path}: no reference vector in the graph metadata (export with T=...)")
    x = torch.as_tensor(meta["reference_input"])
    expected = torch.as_tensor(meta["reference_output"])
    got = simulate(snn, x, expected.shape[0]).outputs.cpu()
    if got.shape != expected.shape:
        return SelfCheck(False, float("inf"), expected.shape[0], x.shape[0])
    diff = (got - expected).abs().max().item() if got.numel() else 0.0
    return SelfCheck(diff == 0.0, diff, expected.shape[0], x.shape[0])


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
