"""Figures (matplotlib PNG, written atomically): accuracy against time step, IF rate against input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporters.atomic import atomic_path


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
