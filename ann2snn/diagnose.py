"""Per-layer diagnostics of a ``.nir`` file against the model it was converted from
(``ann2snn diagnose``) and spike rasters of one sample (``ann2snn plot raster``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ann2snn.data import DEFAULT_LIMIT, DataSource
from ann2snn.models import PROVENANCE_KEY, ModelSpec, load_model
from ann2snn.nirinfo import open_for_simulation
from ann2snn.tables import format_table
from converter.diagnostics import FidelityReport, layer_fidelity
from simulator import META_KEY, Raster, spike_raster


def diagnose_file(
    path: str | Path,
    model: ModelSpec,
    data: DataSource,
    T: int | None = None,
    limit: int = DEFAULT_LIMIT,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> FidelityReport:
    """:func:`converter.diagnostics.layer_fidelity` of the ``.nir`` file ``path`` against the
    ANN ``model`` on the first ``limit`` samples of ``data`` (0: all), for ``T`` steps (default:
    the file's T), on ``device`` (the SNN, the ANN and each batch), calling ``progress(samples)``
    after each batch. The file's IF node names
    must be the IF layer names the converter gave the model's ReLUs (``if_<ReLU path>``, or as
    the file's ``if_layers`` metadata records them), and its ``lambdas`` metadata gives each
    layer's λ.

    The report's first warning says so when the file records another model fingerprint than
    ``model``'s (:func:`provenance_mismatch`; e.g. other weights, such as a QCFS fine-tune of
    the weights the file was converted from, whose layers still correlate).

    Raises:
        nirinfo.MissingTError: no T. ann2snn.models.ModelLoadError: the model. ValueError: the
            data, or a file that does not match the model (see ``layer_fidelity``).
    """
    snn, dataset, T = open_for_simulation(path, data, T, limit, device)
    ann = load_model(model)
    report = layer_fidelity(ann, snn, dataset.x, T, batch_size, progress=progress)
    meta: dict = getattr(snn, "meta", {}).get(META_KEY, {})
    mismatch = provenance_mismatch(meta.get(PROVENANCE_KEY), model)
    if mismatch:
        report.warnings.insert(0, f"{Path(path).name} {mismatch}")
    return report


def _factory_name(factory: str | None) -> str | None:
    """``pkg.mod:fn`` as it is; ``some/path/fac.py:make`` as ``fac.py:make`` (the same file may be
    named by another path)."""
    if factory is None or ":" not in factory:
        return factory
    module, name = factory.rsplit(":", 1)
    return f"{Path(module).name}:{name}" if module.endswith(".py") else factory


def provenance_mismatch(recorded: object, model: ModelSpec) -> str | None:
    """What differs between the model fingerprint a ``.nir`` file records (``ann2snn convert``
    writes it as the graph metadata :data:`PROVENANCE_KEY`, a JSON string) and ``model``'s: the
    weights (SHA-256), the pickled model (SHA-256), the factory (by name; a ``file.py`` factory by
    its file name, since the same file may be named by another path) and the factory arguments,
    as ``"was converted from another model than the one given (other weights): ..."``. None when
    they agree, or the file records no fingerprint (or one that is not a JSON object)."""
    if isinstance(recorded, str):
        try:
            recorded = json.loads(recorded)
        except ValueError:
            return None
    if not isinstance(recorded, dict):
        return None
    given = model.fingerprint()
    if bool(recorded.get("pickle_sha256")) != bool(given.get("pickle_sha256")):
        was = "a pickled model" if recorded.get("pickle_sha256") else "a factory's model"
        diffs = [f"the file's was {was}, the one given is not"]
    elif recorded.get("pickle_sha256"):
        diffs = ["another pickled model"] if recorded["pickle_sha256"] != given["pickle_sha256"] else []
    else:
        diffs = []
        if _factory_name(recorded.get("factory")) != _factory_name(given.get("factory")):
            diffs.append(f"factory {recorded.get('factory')!r}, not {given.get('factory')!r}")
        if recorded.get("weights_sha256") != given.get("weights_sha256"):
            diffs.append(
                "other weights" if recorded.get("weights_sha256") else "weights given, the file's model had none"
            )
        if (recorded.get("args"), recorded.get("kwargs")) != (given.get("args"), given.get("kwargs")):
            diffs.append(f"factory arguments {recorded.get('kwargs', {})} -> {given.get('kwargs', {})}")
    if not diffs:
        return None
    return f"was converted from another model than the one given ({'; '.join(diffs)}): the comparison may mean little"


def format_fidelity(report: FidelityReport) -> str:
    """The per-layer table printed by ``ann2snn diagnose``, and the first growing layer."""
    headers = [
        "layer",
        "ReLU",
        "λ",
        "neurons",
        "corr",
        "MAE",
        "saturated %",
        "a > 1 %",
        "silent % (a ≥ 1/T)",
        "mean a",
        "mean rate",
    ]
    rows = [
        [
            r.layer,
            r.relu,
            f"{r.lam:.4g}" + (" (max, per channel)" if r.per_channel else ""),
            r.neurons,
            "-" if r.correlation is None else f"{r.correlation:.4f}",
            f"{r.mae:.4f}",
            f"{100 * r.saturated:.2f}",
            f"{100 * r.clipped:.2f}",
            f"{100 * r.silent:.2f}",
            f"{r.mean_activation:.4f}",
            f"{r.mean_rate:.4f}",
        ]
        for r in report.layers
    ]
    first = report.first_growing or "none"
    if report.reason:
        first += f": {report.reason}"
    rule = f"MAE > {report.growth:g} × previous MAE + 1/(2T), > 1 % of a above λ, or a correlation drop"
    lines = [format_table(headers, rows, left=2), f"first layer whose error grows ({rule}): {first}"]
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def raster_file(
    path: str | Path,
    data: DataSource,
    sample: int,
    layer: str,
    T: int | None = None,
    neurons: int | None = 50,
    limit: int = DEFAULT_LIMIT,
) -> tuple[Raster, torch.Tensor]:
    """The :func:`simulator.spike_raster` of IF layer ``layer`` of the ``.nir`` file ``path``
    for sample ``sample`` (0-based) of the ``limit`` evaluation samples of ``data`` (0: all)
    that ``simulate`` and ``diagnose`` take with the same ``--limit``: the first ``limit`` of
    MNIST, an IDX folder or an array, ``limit`` images spread evenly over an image folder's
    split. Returns ``(raster, input sample [C, H, W])``, the raster's ``label`` set from the
    data's labels (None without labels) and its ``classes`` from an image folder's class folders.

    Raises:
        ValueError: ``sample`` out of range (names the number of samples and the limit), an
            unknown ``layer`` (lists the file's IF layers). nirinfo.MissingTError: no T.
    """
    if sample < 0:
        raise ValueError(f"sample index must be >= 0, got {sample}")
    if limit and sample >= limit:
        raise ValueError(
            f"sample {sample} is out of range: --limit {limit} takes samples 0 to {limit - 1} of {data} "
            "(raise --limit, or 0 for all)"
        )
    snn, dataset, T = open_for_simulation(path, data, T, limit=limit)
    if sample >= len(dataset.x):
        raise ValueError(
            f"sample {sample} is out of range: {data} has {len(dataset.x)} samples (0 to {len(dataset.x) - 1})"
        )
    x = dataset.x[sample]
    raster = spike_raster(snn, x, T, layer, neurons)
    if dataset.y is not None:
        raster.label = int(dataset.y[sample])
    raster.classes = dataset.classes
    return raster, x
