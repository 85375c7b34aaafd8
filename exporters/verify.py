"""Cross-check a reloaded SNN against the in-memory one: same input, same spikes."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """Reload ``path`` and rerun its embedded reference inputs under the file's semantics, in
    float64 as they were written (:func:`exporters.nir_export.reference_metadata`).

    Raises:
        ValueError: the file has no reference vector (written without ``T``).
        exporters.NIRImportError, FileNotFoundError: see :func:`exporters.import_nir`.
    """
    from exporters.nir_import import import_nir  # local: verify is imported by the package init

    snn = import_nir(path)
    meta = snn.meta.get("ann2snn", {})
    if "reference_input" not in meta or "reference_output" not in meta:
        raise ValueError(f"{path}: no reference vector in the graph metadata (export with T=...)")
    x = torch.as_tensor(meta["reference_input"]).double()
    expected = torch.as_tensor(meta["reference_output"]).double()
    got = simulate(snn.double(), x, expected.shape[0], warn_silent=False).outputs.cpu()
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


#: The rules ``ann2snn verify --data`` compares, with the readers that follow them.
READER_KINDS = {
    "file": "exact (ann2snn, the file's metadata)",
    "nir": "reset to zero, v > V_th (NIR; Norse, SpikingJelly)",
    "sinabs": "multi-spike, clamp at -V_th (Sinabs)",
}


@dataclass
class ReaderRun:
    """One file simulated on a data set under one kind of reader's rules.

    Attributes:
        semantics: the rules (:data:`exporters.semantics.READER_RULES` key).
        correct: samples classified correctly at T (None without labels). samples: data size.
        spikes: total spikes per IF layer path, over all samples.
        count_diff: per IF layer path, sum over neurons and samples of |count − count under
            the file's own rules| (spikes); all zeros for ``"file"``.
        neurons_differing: per layer, how many (sample, neuron) pairs have another count.
        neurons: per layer, neurons per sample.
    """

    semantics: str
    samples: int = 0
    correct: int | None = None
    spikes: dict[str, float] = field(default_factory=dict)
    count_diff: dict[str, float] = field(default_factory=dict)
    neurons_differing: dict[str, int] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """Accuracy at T in %, or None without labels."""
        return None if self.correct is None else 100.0 * self.correct / max(self.samples, 1)


@torch.no_grad()
def compare_readers(path, batches, T: int, semantics=tuple(READER_KINDS), device: str = "cpu") -> list[ReaderRun]:
    """What each kind of reader does with the file ``path`` on data: accuracy and per-layer
    spike counts under each of ``semantics`` against the file's own rules (``"file"``).

    Args:
        path: a ``.nir`` file.
        batches: an iterable of ``(x [B, *input_shape], y [B] or None)`` (iterated once).
        T: time steps per sample.
        semantics: the rules to compare (keys of :data:`exporters.semantics.READER_RULES`).

    Returns:
        One :class:`ReaderRun` per entry of ``semantics``, in order.

    Raises:
        FileNotFoundError, exporters.NIRImportError: the file cannot be read (named).
    """
    from exporters.nir_import import import_nir

    models = {s: import_nir(path, s).to(device) for s in ("file", *semantics)}
    runs = {s: ReaderRun(s) for s in semantics}
    for x, y in batches:
        results = {s: simulate(m, x.to(device), T, warn_silent=False) for s, m in models.items()}
        exact = results["file"].spike_counts
        for s, run in runs.items():
            result = results[s]
            run.samples += len(x)
            if y is not None:
                run.correct = (run.correct or 0) + int((result.predictions()[-1].cpu() == y.cpu()).sum())
            for name, counts in result.spike_counts.items():
                ref = exact.get(name, torch.full_like(counts, float("nan")))
                diff = (counts - ref.to(counts.dtype)).abs()
                run.spikes[name] = run.spikes.get(name, 0.0) + float(counts.sum())
                run.count_diff[name] = run.count_diff.get(name, 0.0) + float(diff.sum())
                run.neurons_differing[name] = run.neurons_differing.get(name, 0) + int((diff != 0).sum())
                run.neurons[name] = int(counts[0].numel())
    return [runs[s] for s in semantics]
