"""Run our .nir files in external readers and compare with our simulator under each reader's rules.

Used by ``tests/test_interop.py`` and ``interop/table.py`` (run from the repository root, in the
main ``.venv``). Each reader runs in its own venv (``interop/setup.sh``) through the protocol
of ``interop/README.md``; our side is :func:`exporters.import_nir` with the ``semantics`` that
state that reader's neuron rules, simulated by :func:`simulator.simulate` in the same dtype.

The comparison counts spikes: for every IF node, ``|our count - reader's count|`` summed over
neurons and samples (``differing``) against the total of our spikes (``total``), plus the
largest difference of the per-step graph outputs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
READER_DIR = REPO / "interop" / "readers"


@dataclass(frozen=True)
class Reader:
    """One external NIR reader and the rules our simulator needs to reproduce it.

    Attributes:
        name: the venv folder and ``interop/readers/run_<name>.py``.
        profile: export profile tried first (``"portable"`` when the reader lacks AvgPool2d).
        semantics: :func:`exporters.import_nir` ``semantics`` matching the reader's IF rules,
            or ``None`` when none of our rules does (no spike comparison is possible).
        dtypes: dtypes the reader can run in (``--dtype`` of the protocol).
    """

    name: str
    profile: str
    semantics: str | dict | None
    dtypes: tuple[str, ...] = ("float64", "float32")


#: Norse: IAFCell, v += I, spike when v - v_th > 0, reset to 0, v[0] = 0: NIR's rules.
#: Sinabs: IAFSqueeze, MultiSpike, MembraneSubtract, min_v_mem = -v_th, v[0] = 0.
#: snnTorch 1.0.0: nir.IF becomes a Leaky(beta=0.9) neuron, which no IF rule describes.
#: SpikingJelly 2.0.0: IFNode(v_th, v_reset): spike when v >= v_th, reset to v_reset (0), v[0] = 0.
READERS: dict[str, Reader] = {
    "norse": Reader("norse", "portable", "nir"),
    "sinabs": Reader("sinabs", "portable", "sinabs"),
    "snntorch": Reader("snntorch", "exact", None),
    "spikingjelly": Reader("spikingjelly", "portable", {"reset": "zero", "spike_rule": ">=", "v_init_fraction": 0.0}),
}

NETWORKS = ("cnn", "resnet", "mlp")


def nirtorch_order(graph) -> list[str]:
    """The order in which nirtorch 2.6's ``GraphExecutor`` (``nirtorch.load``: Norse 1.1.0's and
    Sinabs 3.1.3's ``from_nir``) runs the nodes of a NIR graph: ``graph_utils.trace_execution``,
    the pre-order of a depth-first walk from the Input node, each node's successors in the order
    of its first outgoing edges (``Node.outgoing_nodes``, a dict filled edge by edge). The
    executor returns the value of the last node of this list."""
    import nir

    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        if b not in succ[a]:
            succ[a].append(b)
    (root,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    order, visited, stack = [], {root}, [(root, iter(succ[root]))]
    order.append(root)
    while stack:
        child = next((c for c in stack[-1][1] if c not in visited), None)
        if child is None:
            stack.pop()
            continue
        visited.add(child)
        order.append(child)
        stack.append((child, iter(succ[child])))
    return order


def late_sources(graph) -> list[tuple[str, str]]:
    """``(source, node)`` pairs that :func:`nirtorch_order` runs source-after-node: the executor
    gives ``node`` that source's value from its previous call (Norse: the previous step; Sinabs'
    single call over all steps, and Norse's first step: nothing)."""
    order = nirtorch_order(graph)
    at = {n: i for i, n in enumerate(order)}
    return [(a, b) for a, b in dict.fromkeys(graph.edges) if a in at and b in at and at[a] > at[b]]


def venv_python(reader: str) -> Path:
    """The Python of ``reader``'s venv (``$ANN2SNN_INTEROP_VENVS/<reader>``, default ``.venv-interop``)."""
    root = Path(os.environ.get("ANN2SNN_INTEROP_VENVS", REPO / ".venv-interop"))
    return root / reader / "bin" / "python"


def reader_version(reader: str) -> str:
    """``"<reader> X (nir Y, nirtorch Z)"`` as installed in the reader's venv ("" if absent)."""
    code = (
        "import importlib.metadata as m, sys; r = sys.argv[1]; "
        "print(f\"{r} {m.version(r)} (nir {m.version('nir')}, nirtorch {m.version('nirtorch')})\")"
    )
    python = venv_python(reader)
    if not python.exists():
        return ""
    proc = subprocess.run([str(python), "-c", code, reader], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip()


def _mlp_ann(images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """A 784-64-32-10 ReLU MLP trained for one pass over ``images`` (seeded, about a second)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for i in range(0, len(images), 100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(images[i : i + 100]), labels[i : i + 100]).backward()
        opt.step()
    return model.eval()


def build_snn(network: str, calib_images: int = 256) -> nn.Module:
    """The converted SNN of an example network, with a spike-count readout.

    ``cnn``: the seed CNN (:func:`ann2snn.zoo.load_mnist_cnn`, shipped weights); ``resnet``:
    :func:`ann2snn.zoo.load_mnist_resnet`; ``mlp``: :func:`_mlp_ann` trained on the embedded
    calibration images. Each is converted in mode ``99.9%`` on the first ``calib_images``
    calibration images with the converter's defaults except ``readout="spike_count"`` (none
    of the readers maps NIR's ``I`` node: Norse and Sinabs drop it, snnTorch refuses it).
    """
    from ann2snn.zoo import load_embedded, load_mnist_cnn, load_mnist_resnet
    from converter import Converter

    calib = load_embedded("calib")
    if network == "cnn":
        ann = load_mnist_cnn()
    elif network == "resnet":
        ann = load_mnist_resnet()
    elif network == "mlp":
        ann = _mlp_ann(calib.images, calib.labels)
    else:
        raise ValueError(f"unknown network {network!r} (one of {NETWORKS})")
    return Converter(mode="99.9%", dataloader=calib.subset(calib_images).loader(), readout="spike_count")(ann)


def export(snn: nn.Module, path: Path, profile: str, T: int, layout: bool = True) -> tuple[str, str]:
    """Write ``snn`` to ``path`` in ``profile``, else (a ProfileError) in ``exact``.

    ``layout=False``: the portable file without :func:`exporters.profiles.depth_first_layout`
    (as written before it; ``apply_profile(..., layout=False)`` and ``nir.write``, no
    reference vector), to measure what the layout changes.

    Returns:
        ``(profile used, why it fell back or "")``.
    """
    from exporters import export_nir
    from exporters.profiles import ProfileError

    try:
        if layout:
            export_nir(snn, path, T=T, profile=profile)
        else:
            import nir

            from exporters.nir_export import to_nir
            from exporters.profiles import apply_profile

            nir.write(path, apply_profile(to_nir(snn, T=T), profile, layout=False))
        return profile, ""
    except ProfileError as exc:
        export_nir(snn, path, T=T, profile="exact")
        return "exact", f"no {profile} file ({exc})"


@dataclass
class ReaderRun:
    """What a reader's script gave: exit status, its stderr reason, and OUT.npz's arrays."""

    rc: int
    reason: str
    output: np.ndarray | None = None
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    version: str = ""
    note: str = ""


def run_reader(
    reader: str, nir_path: Path, x: torch.Tensor, T: int, dtype: str = "float64", timeout: float = 600
) -> ReaderRun:
    """Run ``interop/readers/run_<reader>.py`` in its venv on ``x`` (``[B, ...]``) for ``T`` steps."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npy", Path(tmp) / "out.npz"
        np.save(inp, x.numpy().astype(np.float32))
        cmd = [
            str(venv_python(reader)),
            str(READER_DIR / f"run_{reader}.py"),
            "--nir",
            str(nir_path),
            "--input",
            str(inp),
            "--T",
            str(T),
            "--out",
            str(out),
            "--dtype",
            dtype,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else ""
        if proc.returncode != 0 or not out.exists():
            return ReaderRun(proc.returncode, reason)
        with np.load(out) as data:
            return ReaderRun(
                0,
                "",
                data["output"],
                {k[len("counts__") :]: data[k] for k in data.files if k.startswith("counts__")},
                str(data["version"]),
                str(data["note"]) if "note" in data.files else "",
            )


@dataclass
class Comparison:
    """Our simulation of a file against a reader's run of it.

    Attributes:
        differing: spikes that differ, ``sum |ours - theirs|`` over all IF nodes' counts.
        total: our spikes over all IF nodes.
        nodes: IF nodes compared (the reader exposed their counts and shapes agree).
        missing: IF nodes whose counts the reader did not give (or gave in another shape).
        output_diff: largest ``|ours - theirs|`` of the per-step outputs (inf: shapes differ).
    """

    differing: int
    total: int
    nodes: int
    missing: list[str]
    output_diff: float

    @property
    def exact(self) -> bool:
        return self.differing == 0 and not self.missing and self.output_diff == 0

    @property
    def fraction(self) -> float:
        return self.differing / max(self.total, 1)


def ours(nir_path: Path, semantics, x: torch.Tensor, T: int, dtype: str = "float64"):
    """Our simulation of the file under ``semantics`` (:func:`exporters.import_nir`) in ``dtype``."""
    from exporters import import_nir
    from simulator import simulate

    model = import_nir(nir_path, semantics=semantics).to(getattr(torch, dtype))
    return simulate(model, x.to(getattr(torch, dtype)), T)


def compare(result, run: ReaderRun) -> Comparison:
    """Compare :func:`ours`'s result with a reader's successful run."""
    differing = total = nodes = 0
    missing = []
    for name, mine in result.spike_counts.items():
        mine = mine.double().cpu().numpy()
        total += int(round(mine.sum()))
        theirs = run.counts.get(name)
        if theirs is None or theirs.shape != mine.shape:
            missing.append(name)
            continue
        nodes += 1
        differing += int(round(np.abs(mine - theirs.astype(np.float64)).sum()))
    out = result.outputs.double().cpu().numpy()
    output_diff = float(np.abs(out - run.output).max()) if run.output.shape == out.shape else float("inf")
    return Comparison(differing, total, nodes, missing, output_diff)


@dataclass
class Outcome:
    """One cell of the interop table (reader × network × dtype)."""

    reader: str
    network: str
    dtype: str
    profile: str
    loads: bool
    reason: str = ""
    comparison: Comparison | None = None
    version: str = ""
    note: str = ""

    def cell(self) -> str:
        """The table cell: "does not load/run: ...", "exact", or "differs by N spikes (of M)"."""
        if not self.loads:
            return f"does not load/run: {self.reason}"
        c = self.comparison
        if c is None:
            return f"runs; not compared: {self.reason}"
        missing = f"; no counts for {', '.join(c.missing)}" if c.missing else ""
        if c.exact:
            return f"exact ({c.total} spikes in {c.nodes} IF nodes)"
        return (
            f"differs by {c.differing} spikes (of {c.total}, {c.fraction:.1e}); output max diff "
            f"{c.output_diff:g}{missing}"
        )


def evaluate(
    reader: str,
    network: str,
    snn: nn.Module,
    x: torch.Tensor,
    T: int,
    dtype: str,
    workdir: Path,
    files: dict | None = None,
    layout: bool = True,
) -> Outcome:
    """Export ``snn`` for ``reader``, run the reader and our simulator under its rules, compare.

    ``files`` caches the exported files across calls: ``(network, profile, layout) -> (path,
    profile used, why it fell back)``. ``layout``: see :func:`export`.
    """
    spec = READERS[reader]
    files = {} if files is None else files
    key = (network, spec.profile, layout)
    if key not in files:
        path = workdir / f"{network}_{spec.profile}{'' if layout else '_unlaid'}.nir"
        files[key] = (path, *export(snn, path, spec.profile, T, layout))
    path, profile, fallback = files[key]
    run = run_reader(reader, path, x, T, dtype)
    prefix = f"{fallback}; exact file: " if fallback else ""
    if run.rc != 0:
        return Outcome(reader, network, dtype, profile, False, prefix + (run.reason or f"exit status {run.rc}"))
    if spec.semantics is None:
        return Outcome(
            reader,
            network,
            dtype,
            profile,
            True,
            "none of our IF rules describes this reader's neuron",
            version=run.version,
            note=run.note,
        )
    return Outcome(
        reader,
        network,
        dtype,
        profile,
        True,
        prefix,
        compare(ours(path, spec.semantics, x, T, dtype), run),
        run.version,
        run.note,
    )


def vendor_inputs(out: Path | None, samples: int, T: int) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """The folder of a vendor comparison (``out``, or a new temporary one), the first ``samples``
    embedded MNIST test images ``[B, 1, 28, 28]`` and labels ``[B]``; their rate spike trains
    (:func:`simulator.rate_spikes`, ``[T, B, 1, 28, 28]``) saved there as ``spikes.npy`` for the
    vendor's reader."""
    from ann2snn.zoo.mnist import load_embedded
    from simulator import rate_spikes

    folder = Path(tempfile.mkdtemp()) if out is None else out
    folder.mkdir(parents=True, exist_ok=True)
    test = load_embedded("test")
    images, labels = test.images[:samples], test.labels[:samples]
    np.save(folder / "spikes.npy", rate_spikes(images, T).numpy().astype(np.float32))
    return folder, images, labels


def run_vendor_reader(reader: str, script: Path, nir_file: Path, folder: Path, out_name: str, timeout: int):
    """Run ``script`` in ``reader``'s venv on ``nir_file`` and ``folder/spikes.npy``; the ``.npz``
    it writes to ``folder/out_name``, loaded.

    Raises:
        RuntimeError: the script failed (its exit status and the end of its stderr).
    """
    out = folder / out_name
    cmd = [str(venv_python(reader)), str(script), "--nir", str(nir_file), "--spikes", str(folder / "spikes.npy")]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return np.load(out, allow_pickle=False)


def vendor_main(run, doc: str, argv: list[str] | None = None) -> int:
    """``--samples``, ``--T``, ``--out`` for a vendor comparison ``run(samples, T, out)``; prints its
    dictionary as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="folder kept for the files (default: a temporary one)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.samples, args.T, args.out), indent=2))
    return 0
