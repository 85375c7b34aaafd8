"""Tables and figures for the command line (plain text and matplotlib PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporters.atomic import atomic_path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 0) -> str:
    """A Markdown table, its first ``left`` columns left-aligned and the others right-aligned;
    floats shown with two decimals."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    just = lambda v, i: v.ljust(widths[i]) if i < left else v.rjust(widths[i])  # noqa: E731
    line = lambda vals: "| " + " | ".join(just(v, i) for i, v in enumerate(vals)) + " |"  # noqa: E731
    sep = "|" + "|".join(":" + "-" * (w + 1) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def plot_accuracy_curves(
    curves: dict[str, Sequence[float]], path: str | Path, title: str, ann_accuracy: float | None = None
) -> Path:
    """Save a PNG of accuracy (%) against time step t, one curve per label, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, acc in curves.items():
        ax.plot(range(1, len(acc) + 1), acc, label=label)
    if ann_accuracy is not None:
        ax.axhline(ann_accuracy, color="k", linestyle="--", linewidth=1, label=f"ANN {ann_accuracy:.2f} %")
    ax.set_xlabel("time step t")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save_png(fig, path)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_summary(rows) -> str:
    """The batch summary (rows of :class:`converter.cli.batch.Row`) as a table."""
    headers = ["model", "mode", "T", "ANN %", "SNN %", "convert s", "simulate s", "round trip", "status"]
    cells = [
        [
            r.model,
            r.mode,
            str(r.T),
            _pct(r.ann_accuracy),
            _pct(r.snn_accuracy),
            _secs(r.conversion_s),
            _secs(r.simulation_s),
            r.round_trip or "-",
            r.status,
        ]
        for r in rows
    ]
    return format_table(headers, cells, left=2)


def format_simulation(stats, steps: Sequence[int]) -> str:
    """Accuracy at the given t's and spikes per IF layer of a :class:`SimulationStats`."""
    parts = []
    if stats.accuracy_per_t is not None:
        parts.append(
            format_table(
                ["t", *(str(t) for t in steps)], [["accuracy %", *(_pct(stats.accuracy_per_t[t - 1]) for t in steps)]]
            )
        )
    layers = [[s.layer, str(s.neurons), f"{s.spikes_per_sample:.1f}", f"{s.rate:.4f}"] for s in stats.layers]
    parts.append(format_table(["IF layer", "neurons", "spikes/sample", "rate (spikes/neuron/step)"], layers, left=1))
    return "\n\n".join(parts)


def format_readers(runs, kinds: dict[str, str]) -> str:
    """Two tables from :func:`exporters.verify.compare_readers`: accuracy and spikes per kind
    of reader, then per IF layer the spikes per sample that differ from our exact rules."""

    def per_sample(run, values):
        return sum(values.values()) / max(run.samples, 1)

    summary = [
        [
            kinds.get(r.semantics, r.semantics),
            "-" if r.accuracy is None else _pct(r.accuracy),
            f"{per_sample(r, r.spikes):.1f}",
            f"{per_sample(r, r.count_diff):.1f}",
            f"{100.0 * sum(r.neurons_differing.values()) / max(r.samples * sum(r.neurons.values()), 1):.3f}",
        ]
        for r in runs
    ]
    layers = [
        [
            name,
            f"{runs[0].spikes[name] / max(runs[0].samples, 1):.1f}",
            *(f"{r.count_diff.get(name, float('nan')) / max(r.samples, 1):.1f}" for r in runs[1:]),
        ]
        for name in runs[0].spikes
    ]
    return "\n\n".join(
        [
            format_table(
                [
                    "rules (readers)",
                    "accuracy %",
                    "spikes/sample",
                    "|Δ spikes|/sample vs exact",
                    "neurons with another count %",
                ],
                summary,
                left=1,
            ),
            format_table(
                ["IF layer", f"spikes/sample ({runs[0].semantics})", *(f"|Δ|/sample {r.semantics}" for r in runs[1:])],
                layers,
                left=1,
            ),
        ]
    )


def format_graph(description: dict) -> str:
    """Nodes and metadata of :func:`converter.cli.nirinfo.describe_graph` as two tables."""
    nodes = [
        [
            n["name"],
            n["type"],
            n["input_shape"],
            n["output_shape"],
            n["parameters"],
            " ".join(f"{k}={v}" for k, v in n["metadata"].items()),
        ]
        for n in description["nodes"]
    ]
    meta = [[k, str(v)] for k, v in description["metadata"].items()]
    return "\n\n".join(
        [
            format_table(["node", "type", "input", "output", "parameters [min, max]", "metadata"], nodes, left=6),
            f"{len(description['edges'])} edges: " + ", ".join(f"{a}->{b}" for a, b in description["edges"]),
            format_table(["graph metadata", "value"], meta, left=2) if meta else "no graph metadata",
        ]
    )


def plot_if_rate(inputs: Sequence[float], rates: dict[str, Sequence[float]], T: int, path: str | Path) -> Path:
    """Save a PNG of IF firing rate against constant input current (one curve per label), with
    the ReLU line rate = input and its 1/T band, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ideal = [min(max(x, 0.0), 1.0) for x in inputs]
    ax.fill_between(
        inputs, [v - 1 / T for v in ideal], [v + 1 / T for v in ideal], color="0.85", label=f"ReLU ± 1/T (T={T})"
    )
    ax.plot(inputs, ideal, "k--", linewidth=1, label="ReLU")
    for label, values in rates.items():
        ax.plot(inputs, values, marker=".", linewidth=1, label=label)
    ax.set_xlabel("constant input current (units of V_th per step)")
    ax.set_ylabel("firing rate (spikes per step)")
    ax.set_title(f"IF neuron, reset by subtraction, T = {T}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save_png(fig, path)


def _save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
