"""Our .nir files in real external readers (Norse, Sinabs, snnTorch), each in its own venv.

Deselected by default; ``bash interop/setup.sh all`` then ``python -m pytest -m interop``. A
reader whose venv is absent is skipped (the reason names the setup command).

For every reader × example network (seed CNN, residual net, MLP) the file is exported in the
profile the reader needs (``portable``: no AvgPool2d; falling back to ``exact`` when the
network cannot be written portably), run by the reader's own NIR import through the protocol of
``interop/README.md``, and compared with OUR simulator run under that reader's rules
(``import_nir(semantics="nir")`` for Norse, ``"sinabs"`` for Sinabs):

- float64: spike counts of every IF node and the per-step outputs must be identical;
- float32: at most 1e-4 of the spikes may differ (layers may sum in another order for another
  batch shape), and outputs must agree to 1e-5 when no spike differs.

Where a reader cannot load or run a network, the test asserts the documented reason, so a
reader release that fixes it makes the test fail and the table (interop/README.md) be updated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop import harness  # noqa: E402

pytestmark = pytest.mark.interop

T = 24
SAMPLES = 8

#: (reader, network) -> "match"; "differs" (it runs, but not as the graph says); or the
#: substrings the reader's failure reason must contain. Norse 1.1.0 and Sinabs 3.1.3 run the
#: residual net exactly since the portable profile lays graphs out for nirtorch 2.6's
#: depth-first GraphExecutor (``exporters.profiles.depth_first_layout``; before it, the skip
#: branches ran after their joins: see test_minimal_residual and interop/README.md).
EXPECTED: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("norse", "cnn"): "match",
    ("norse", "mlp"): "match",
    ("norse", "resnet"): "match",
    ("sinabs", "cnn"): "match",
    ("sinabs", "mlp"): "match",
    ("sinabs", "resnet"): "match",
    ("snntorch", "cnn"): (
        "running the snnTorch model",
        "avg_pool2d(): argument 'input'",
        "not tuple",
        "Leaky(beta=0.9, init_hidden=False",
    ),
    ("snntorch", "mlp"): (
        "running the snnTorch model",
        "linear(): argument 'input'",
        "not tuple",
        "Leaky(beta=0.9, init_hidden=False",
    ),
    ("snntorch", "resnet"): ("import_from_nir", "Unknown node type", "Scale"),
    ("spikingjelly", "cnn"): "match",
    ("spikingjelly", "mlp"): "match",
    ("spikingjelly", "resnet"): "match",
}


def _need(reader: str) -> None:
    python = harness.venv_python(reader)
    if not python.exists():
        pytest.skip(f"no {reader} venv at {python.parent.parent} (bash interop/setup.sh {reader})")


@pytest.fixture(scope="module")
def snns() -> dict[str, nn.Module]:
    return {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, dict]:
    return tmp_path_factory.mktemp("interop"), {}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    from ann2snn.zoo import load_embedded

    return load_embedded("test").images[:SAMPLES]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("network", harness.NETWORKS)
@pytest.mark.parametrize("reader", list(harness.READERS))
def test_reader_against_our_rules(reader, network, dtype, snns, workdir, x):
    _need(reader)
    if network not in snns:
        snns[network] = harness.build_snn(network)
    folder, files = workdir
    outcome = harness.evaluate(reader, network, snns[network], x, T, dtype, folder, files)
    expected = EXPECTED[(reader, network)]
    if expected == "differs":
        assert outcome.loads, outcome.reason
        c = outcome.comparison
        assert c is not None and c.differing > 0.05 * c.total, f"{reader} now runs {network} right: {outcome.cell()}"
        return
    if expected != "match":
        assert not outcome.loads, f"{reader} now runs {network}: {outcome.cell()} (update EXPECTED and the README)"
        for part in expected:
            assert part in outcome.reason, outcome.reason
        return
    assert outcome.loads, outcome.reason
    c = outcome.comparison
    assert c is not None and not c.missing and c.nodes >= 2, outcome.cell()
    assert c.total > 100, f"too few spikes to compare: {outcome.cell()}"
    if dtype == "float64":
        assert c.exact, outcome.cell()
    else:
        assert c.fraction <= 1e-4, outcome.cell()
        assert c.output_diff <= (1e-5 if c.differing == 0 else 1.0), outcome.cell()


def _micro(path: Path) -> None:
    """Input (4) -> identity Linear -> IF (V_th = 1) -> identity Linear -> output."""
    from exporters import export_nir
    from simulator import IFNeuron

    first, last = nn.Linear(4, 4), nn.Linear(4, 4)
    for layer in (first, last):
        layer.weight.data = torch.eye(4)
        layer.bias.data.zero_()
    export_nir(nn.Sequential(first, IFNeuron(v_threshold=1.0), last), path, input_shape=(4,))


MICRO_INPUT = torch.tensor([[0.1, 0.3, 0.7, 0.01]])


#: reader -> (our rules for it, our expected counts or None). Norse: NIR's rules by hand (4, 10,
#: 20, 0 spikes); Sinabs: multi-spike, subtract, clamp relu(v + V_th) - V_th (exact in float32 too).
MICRO = {"norse": ("nir", [[4.0, 10.0, 20.0, 0.0]]), "sinabs": ("sinabs", None)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reader", sorted(MICRO))
def test_micro_exact(reader, dtype, tmp_path):
    """A single IF layer with currents 0.1, 0.3, 0.7, 0.01 for 40 steps, in the reader and in
    ours under its rules."""
    _need(reader)
    rules, expected = MICRO[reader]
    _micro(tmp_path / "micro.nir")
    run = harness.run_reader(reader, tmp_path / "micro.nir", MICRO_INPUT, 40, dtype)
    assert run.rc == 0, run.reason
    mine = harness.ours(tmp_path / "micro.nir", rules, MICRO_INPUT, 40, dtype).spike_counts["1"]
    np.testing.assert_array_equal(run.counts["1"], mine.numpy())
    if expected is not None:
        assert mine.tolist() == expected


@pytest.mark.parametrize("skip", ["scale", "linear"])
@pytest.mark.parametrize("reader", ["norse", "sinabs"])
def test_minimal_residual(reader, skip, tmp_path):
    """The smallest residual SNN (``interop/residual_repro.py``): written without the layout,
    the reader runs the skip's node after the join (Sinabs: the skip is lost, Norse: it arrives
    a step late) and returns it instead of the Output; with it (the portable profile), exact."""
    from interop import residual_repro

    _need(reader)
    model, x = residual_repro.block(skip), residual_repro.inputs(3)
    for layout in (False, True):
        path = tmp_path / f"{layout}.nir"
        residual_repro.write(model, path, layout)
        m = residual_repro.measure(reader, path, x, 12)
        assert m["loads"], m.get("reason")
        c = m["comparison"]
        if layout:
            assert c.exact and c.total > 100, c
        else:
            assert c.differing > 0 and m["first_step"] == 0, c
