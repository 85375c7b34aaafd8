"""Figures (matplotlib PNG, written atomically): accuracy against time step, IF rate against input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exporters.atomic import atomic_path


@dataclass(frozen=True)
class AccuracyCurve:
    """One curve of :func:`plot_accuracy_curves`: the SNN's accuracy (%) at t = 1..T of one
    ``model`` converted with one ``mode``, and the ANN's accuracy (%) on the same samples."""

    model: str
    mode: str
    accuracy: Sequence[float]
    ann_accuracy: float | None = None


#: Line styles and markers, one per mode, so that identical curves of two modes stay visible.
MODE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 3)), "x"))

#: Line width and marker size of the last model's curves; each earlier model's are wider by
#: :data:`MODEL_WIDEN` (at most 3 steps), so that where two models' curves are identical the
#: earlier one shows as a border around the later one drawn over it.
LINE_WIDTH, MARKER_SIZE, MODEL_WIDEN = 1.5, 5.0, (1.5, 3.0)


def model_widths(index: int, models: int) -> tuple[float, float]:
    """``(line width, marker size)`` of the ``index``-th of ``models`` models' curves: the last
    model's are :data:`LINE_WIDTH` and :data:`MARKER_SIZE`, each earlier one's wider.

    Example:
        >>> [model_widths(i, 3) for i in range(3)]
        [(4.5, 11.0), (3.0, 8.0), (1.5, 5.0)]
    """
    steps = min(models - 1 - index, 3)
    return LINE_WIDTH + MODEL_WIDEN[0] * steps, MARKER_SIZE + MODEL_WIDEN[1] * steps


def ann_dashes(index: int, models: int) -> tuple[float, tuple[float, float]]:
    """The dash pattern (matplotlib ``(offset, (on, off))``, in line widths) of the ``index``-th of
    ``models`` models' ANN lines: with several models the dashes interleave (each line's dash
    fills the others' gaps), so that ANN lines at the same accuracy all stay visible.

    Example:
        >>> ann_dashes(0, 1), ann_dashes(0, 2), ann_dashes(1, 2)
        ((0, (6, 3)), (0, (5, 5)), (5, (5, 5)))
    """
    if models <= 1:
        return 0, (6, 3)
    return 5 * index, (5, 5 * (models - 1))


def accuracy_axis_limits(curves: Sequence[AccuracyCurve], full_scale: bool = False) -> tuple[float, float]:
    """The y range (%) of :func:`plot_accuracy_curves`: 0–100 with ``full_scale`` (padded by 5
    points on both sides, so that a curve or ANN line at 100 % is not drawn on the frame), else the
    data's range (every curve and ANN line) padded by 5 % of it (at least 1 point) on both sides,
    within [-5, 105]: a line at 0 or 100 % keeps the same headroom as any other, off the border."""
    if full_scale:
        return -5.0, 105.0
    values = [v for c in curves for v in c.accuracy] + [c.ann_accuracy for c in curves if c.ann_accuracy is not None]
    lo, hi = min(values), max(values)
    pad = max(0.05 * (hi - lo), 1.0)
    return max(-5.0, lo - pad), min(105.0, hi + pad)


def plot_accuracy_curves(
    curves: Sequence[AccuracyCurve] | dict[str, Sequence[float]],
    path: str | Path,
    title: str,
    ann_accuracy: float | None = None,
    full_scale: bool = False,
) -> Path:
    """Save a PNG of accuracy (%) against time step t (1..T), atomically: a colour per model, a line
    style and marker per mode (identical curves of two modes stay visible; with one model the
    modes get colours too, and its ANN line is black), an earlier model's curves wider (:func:`model_widths`: identical
    curves of two models stay visible), a dashed ANN line per model in the colour of its (first) curve
    (:func:`ann_dashes`: interleaved dashes with several models), the
    y-axis zoomed to the data with headroom (:func:`accuracy_axis_limits`) unless ``full_scale``
    (0–100).

    Args:
        curves: :class:`AccuracyCurve` s, or ``{label: accuracy per t}`` (one model, a mode per label).
        ann_accuracy: the ANN line for curves given as a dict (ignored for :class:`AccuracyCurve` s,
            which carry their own).

    Raises:
        ValueError: no curve, or a curve without points (naming it).
    """
    if isinstance(curves, dict):
        curves = [AccuracyCurve("", label, list(acc), ann_accuracy) for label, acc in curves.items()]
    curves = list(curves)
    if not curves:
        raise ValueError("plot_accuracy_curves needs at least one curve")
    for c in curves:
        if len(c.accuracy) == 0:
            raise ValueError(f"the curve of model {c.model!r}, mode {c.mode!r} has no points")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(c.model for c in curves))
    modes = list(dict.fromkeys(c.mode for c in curves))
    by_model = len(models) > 1  # one model: a colour per mode as well
    keys = models if by_model else modes
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in curves:
        style, marker = MODE_STYLES[modes.index(c.mode) % len(MODE_STYLES)]
        width, size = model_widths(models.index(c.model), len(models))
        t = range(1, len(c.accuracy) + 1)
        label = f"{c.model} {c.mode}".strip() if len(models) > 1 or not c.mode else c.mode
        every = max(1, len(c.accuracy) // 12)
        ax.plot(
            t,
            c.accuracy,
            color=colours[c.model if by_model else c.mode],
            linestyle=style,
            marker=marker,
            markevery=every,
            markersize=size,
            markerfacecolor="none",
            linewidth=width,
            label=label,
        )
    for index, model in enumerate(models):
        anns = {c.ann_accuracy for c in curves if c.model == model and c.ann_accuracy is not None}
        if len(anns) == 1:
            ann = anns.pop()
            name = f"ANN {model}" if len(models) > 1 else "ANN"
            first = next(c for c in curves if c.model == model)
            ax.axhline(
                ann,
                # one model: its colour is its curve's; with several modes the colours are the
                # modes', so the ANN line is black (not the first mode's colour)
                color=colours[model] if by_model else colours[first.mode] if len(modes) == 1 else "k",
                linestyle=ann_dashes(index, len(models)),
                linewidth=1.2,
                label=f"{name} {ann:.2f} %",
            )
    ax.set_xlabel("time step t")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(*accuracy_axis_limits(curves, full_scale))
    if full_scale:
        ax.set_yticks(range(0, 101, 20))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save_png(fig, path)


#: ``plot if-rate``'s default T: at T = 8 the steps of V[0] = 0 and V[0] = ½ V_th differ by up
#: to 1/T = 0.125 in rate; at T = 100 the two curves overlap within a line's width.
IF_RATE_DEFAULT_T = 8


def plot_if_rate(inputs: Sequence[float], rates: dict[str, Sequence[float]], T: int, path: str | Path) -> Path:
    """Save a PNG of IF firing rate (spikes per step) over ``T`` steps against a constant input
    current (multiples of V_th per step), one curve per label, beside the rate a ReLU clipped at 1
    would give, ``clip(x, 0, 1)``, and its ±1/T band, atomically (Rueckauer et al. 2017)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ideal = [min(max(x, 0.0), 1.0) for x in inputs]
    ax.fill_between(
        inputs,
        [v - 1 / T for v in ideal],
        [v + 1 / T for v in ideal],
        color="0.85",
        label=f"clip(x, 0, 1) ± 1/T (T = {T})",
    )
    ax.plot(inputs, ideal, "k--", linewidth=1, label="clip(x, 0, 1): the clipped ReLU")
    for i, (label, values) in enumerate(rates.items()):
        ax.step(inputs, values, where="mid", linewidth=1.5, color=f"C{i}", label=label)
    ax.set_xlabel("constant input current (units of V_th per step)")
    ax.set_ylabel("firing rate (spikes per step)")
    ax.set_title(f"IF neuron, reset by subtraction, T = {T}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
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


def plot_layer_fidelity(report, path: str | Path, title: str) -> Path:
    """Save a PNG with one scatter panel per IF layer: the ANN's activation / λ (x) against the
    SNN's rate (y), from a :class:`converter.diagnostics.FidelityReport` or its
    :meth:`~converter.diagnostics.FidelityReport.to_dict` (``--json``'s, with its ``points``),
    with the ideal IF response clip(x, 0, 1) as a line; each panel's title gives the layer, its
    correlation and MAE. The image is ``FIDELITY_PANEL_PX`` × (layers) wide and
    ``FIDELITY_PANEL_PX`` high (+ 40 px for the title), in pixels.

    Raises:
        ValueError: a report without layers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if hasattr(report, "to_dict"):
        report = report.to_dict()
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


def raster_title(raster, sample: int | None = None, label: int | None = None) -> str:
    """The raster panel's title: layer, sample index, label and the SNN's predicted class, and
    how many of the layer's neurons are shown (the most active N when capped).

    Example:
        >>> from simulator import Raster
        >>> import torch
        >>> r = Raster("if_1", torch.zeros(4, 2, dtype=torch.bool), torch.tensor([3, 7]), 5, 32, 1)
        >>> print(raster_title(r, sample=3, label=1))
        if_1, sample 3, label 1, predicted 1: the 2 most active of 32 neurons (0 of the layer's 5 spikes shown)
    """
    parts = [raster.layer]
    label = label if label is not None else getattr(raster, "label", None)
    if sample is not None:
        parts.append(f"sample {sample}")
    name = raster.class_name
    if label is not None:
        parts.append(f"label {name(label)}")
    if raster.prediction is not None:
        parts.append(f"predicted {name(raster.prediction)}")
    shown = len(raster.neurons)
    total = raster.layer_neurons or shown
    which = f"all {total} neurons" if shown >= total else f"the {shown} most active of {total} neurons"
    spikes = f"{int(raster.spikes.sum())} of the layer's {raster.layer_spikes} spikes shown"
    return f"{', '.join(parts)}: {which} ({spikes})"


#: Tick length of one spike in :func:`plot_raster` (rows are 1 apart: ticks of neighbours never touch).
RASTER_TICK = 0.6


def plot_raster(
    raster, image, path: str | Path, title: str, sample: int | None = None, label: int | None = None
) -> Path:
    """Save a PNG of a :class:`simulator.Raster` (spike times of its neurons against t) with the
    input sample ``image`` (``[C, H, W]``, ``[H, W]`` or flat; shown as an image when 2-D after
    squeezing; colour values outside [0, 1], e.g. normalised inputs, are scaled min–max to it
    for display and the panel's title says from which range) beside it; 800 × 400 pixels. Each
    spike is a short vertical tick (black; a signed layer's -1 spikes red)
    (:data:`RASTER_TICK` of a row, so that neighbouring neurons' spikes stay apart at any rate);
    rows are labelled with the neurons' real indices in the layer (flat, ``C·H·W`` order); the
    panel's title is :func:`raster_title` (sample, label, predicted class, neurons shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4), width_ratios=[1, 2.5], layout="constrained")
    picture = image.detach().cpu().float().squeeze()
    if picture.dim() == 3:
        picture = picture.permute(1, 2, 0) if picture.shape[0] in (3, 4) else picture[0]
    label = label if label is not None else raster.label
    heading = "input" if label is None else f"input (label {raster.class_name(label)})"
    lo, hi = (float(picture.min()), float(picture.max())) if picture.numel() else (0.0, 1.0)
    if picture.dim() == 3 and (lo < 0 or hi > 1) and hi > lo:  # normalised colours: imshow would clip them
        picture = (picture - lo) / (hi - lo)
        heading += f"\ncolours scaled from [{lo:.3g}, {hi:.3g}]"
    if picture.dim() >= 2:
        left.imshow(picture.numpy(), cmap="gray" if picture.dim() == 2 else None)
    else:
        left.plot(picture.numpy())
    left.set_title(heading, fontsize=9)
    left.set_xticks([])
    left.set_yticks([])
    n = len(raster.neurons)
    times = [((raster.spikes[:, j] > 0).nonzero().flatten() + 1).tolist() for j in range(n)]
    right.eventplot(times, lineoffsets=list(range(n)), linelengths=RASTER_TICK, linewidths=1.0, colors="k")
    negative = [((raster.spikes[:, j] < 0).nonzero().flatten() + 1).tolist() for j in range(n)]
    if any(negative):  # a signed layer's -1 spikes (spike_rule="signed"), in red
        right.eventplot(negative, lineoffsets=list(range(n)), linelengths=RASTER_TICK, linewidths=1.0, colors="r")
    right.set_xlim(0.5, raster.T + 0.5)
    right.set_ylim(-0.5, n - 0.5)
    step = max(1, -(-n // 12))  # at most about 12 labelled rows
    rows = list(range(0, n, step))
    right.set_yticks(rows, [str(int(raster.neurons[j])) for j in rows], fontsize=7)
    right.set_xlabel("time step t")
    right.set_ylabel("neuron (index in the layer)")
    right.set_title(raster_title(raster, sample, label).replace(": ", ":\n", 1), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save_png_exact(fig, path)
