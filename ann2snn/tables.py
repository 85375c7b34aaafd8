"""Plain-text tables for the command line (Markdown pipe tables)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 0) -> str:
    """A Markdown table, its first ``left`` columns left-aligned and the others right-aligned;
    floats shown with two decimals."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    just = lambda v, i: v.ljust(widths[i]) if i < left else v.rjust(widths[i])  # noqa: E731
    line = lambda vals: "| " + " | ".join(just(v, i) for i, v in enumerate(vals)) + " |"  # noqa: E731
    sep = "|" + "|".join(":" + "-" * (w + 1) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_summary(rows) -> str:
    """The batch summary (rows of :class:`ann2snn.pipeline.Row`) as a table."""
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
    """Nodes and metadata of :func:`ann2snn.nirinfo.describe_graph` as two tables."""
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
    meta = [[k, str(v)] for k, v in description["metadata"].items() if k != "quantization"]
    parts = [
        format_table(["node", "type", "input", "output", "parameters [min, max]", "metadata"], nodes, left=6),
        f"{len(description['edges'])} edges: " + ", ".join(f"{a}->{b}" for a, b in description["edges"]),
        format_table(["graph metadata", "value"], meta, left=2) if meta else "no graph metadata",
    ]
    hardware = description.get("hardware")
    if hardware:
        parts.append(format_hardware(hardware))
    return "\n\n".join(parts)


def format_hardware(hardware: dict) -> str:
    """:func:`ann2snn.nirinfo.hardware` as a line on the input and bit widths and a table per IF layer."""
    where = hardware["events_enter_at"]
    line = f"input: {hardware['input_encoding']}" + (
        f" (spike events enter at node {where!r})" if where else " (analog current, no events)"
    )
    line += "; weight bits: " + str(hardware["weight_bits"] or "float") + "; state bits: "
    line += str(hardware["state_bits"] or "no saturation")
    headers = ["IF layer", "state bits", "integer", "scale factor", "V_th", "V_th bits", "V[0]"]
    dash = lambda v: "-" if v is None else v  # noqa: E731
    rows = [
        [r["layer"], dash(r["state_bits"]), r["integer"]]
        + [dash(r[k]) for k in ("factor", "threshold", "threshold_bits", "v_init")]
        for r in hardware["layers"]
    ]
    quantised = hardware["weight_bits"] or any(r["state_bits"] or r["integer"] for r in hardware["layers"])
    return line + ("\n\n" + format_table(headers, rows, left=1) if rows and quantised else "")
