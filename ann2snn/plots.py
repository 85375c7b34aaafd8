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


def _save_png_exact(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` as a PNG of exactly ``figsize × dpi`` pixels, atomically, and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


#: Pixels of one panel of :func:`plot_layer_fidelity` (width = height, at 100 dpi).
FIDELITY_PANEL_PX = 300


def plot_layer_fidelity(report: dict, path: str | Path, title: str) -> Path:
    """Save a PNG with one scatter panel per IF layer: the ANN's activation / λ (x) against the
    SNN's rate (y), from a :meth:`converter.diagnostics.FidelityReport.to_dict` (its ``points``),
    with the ideal IF response clip(x, 0, 1) as a line; each panel's title gives the layer, its
    correlation and MAE. The image is ``FIDELITY_PANEL_PX`` × (layers) wide and
    ``FIDELITY_PANEL_PX`` high (+ 40 px for the title), in pixels.

    Raises:
        ValueError: a report without layers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    if not layers:
        raise ValueError("the report has no layers to plot")
    size = FIDELITY_PANEL_PX / 100
    fig, axes = plt.subplots(
        1, len(layers), figsize=(size * len(layers), size + 0.4), squeeze=False, layout="constrained"
    )
    for ax, layer in zip(axes[0], layers, strict=True):
        a = [p[0] for p in layer["points"]]
        r = [p[1] for p in layer["points"]]
        top = max([1.0, *a])
        ax.scatter(a, r, s=3, alpha=0.4)
        ax.plot([0, 1, top], [0, 1, 1], "k--", linewidth=1, label="clip(x, 0, 1)")
        corr = "-" if layer["correlation"] is None else f"{layer['correlation']:.3f}"
        ax.set_title(f"{layer['layer']}\ncorr {corr}, MAE {layer['mae']:.3f}", fontsize=8)
        ax.set_xlabel("ANN activation / λ", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(f"SNN rate (spikes/step, T={report['T']})", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    return _save_png_exact(fig, path)


def plot_raster(raster, image, path: str | Path, title: str) -> Path:
    """Save a PNG of a :class:`simulator.Raster` (spike times of its neurons against t) with the
    input sample ``image`` (``[C, H, W]``, ``[H, W]`` or flat; shown as an image when 2-D after
    squeezing) beside it; 800 × 400 pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4), width_ratios=[1, 2.5], layout="constrained")
    picture = image.detach().cpu().float().squeeze()
    if picture.dim() == 3:
        picture = picture.permute(1, 2, 0) if picture.shape[0] in (3, 4) else picture[0]
    if picture.dim() >= 2:
        left.imshow(picture.numpy(), cmap="gray" if picture.dim() == 2 else None)
    else:
        left.plot(picture.numpy())
    left.set_title("input", fontsize=9)
    left.set_xticks([])
    left.set_yticks([])
    t, j = raster.spikes.nonzero(as_tuple=True)
    right.scatter((t + 1).numpy(), j.numpy(), marker="|", s=30, color="k")
    right.set_xlim(0.5, raster.T + 0.5)
    right.set_ylim(-0.5, len(raster.neurons) - 0.5)
    right.set_xlabel("time step t")
    right.set_ylabel(f"neuron ({len(raster.neurons)} most active)")
    right.set_title(
        f"{raster.layer}: {int(raster.spikes.sum())} spikes shown, {raster.layer_spikes} in the layer", fontsize=9
    )
    fig.suptitle(title, fontsize=10)
    return _save_png_exact(fig, path)
