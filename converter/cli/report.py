"""Tables and figures for the command line (plain text and matplotlib PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporters.atomic import atomic_path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with right-aligned columns; floats shown with two decimals."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def plot_accuracy_curves(curves: dict[str, Sequence[float]], path: str | Path, title: str,
                         ann_accuracy: float | None = None) -> Path:
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
