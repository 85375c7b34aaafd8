"""Files laid out as other tools' NIR exporters write them, hand-built (no external venv).

Norse 1.1.0's ``norse.torch.to_nir`` keeps the batch axis in the Input and Output types
(``[1, 8]`` before an Affine whose input is ``[8]``), which ``nir.read``'s type check refuses;
``import_nir`` names the mismatch and reads the graph as written with ``type_check=False``.
SpikingJelly 2.0.0 writes ``IF.r = 1 / dt`` (dt = 1e-4), read with ``dt=1e-4``.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from exporters import NIRImportError, import_nir
from simulator import simulate


def _mlp(path, input_shape, r=1.0, neuron="IF"):
    rng = np.random.default_rng(0)
    w0, w1 = rng.normal(0, 0.7, (16, 8)).astype(np.float32), rng.normal(0, 0.7, (4, 16)).astype(np.float32)

    def spiking(n):
        if neuron == "LIF":
            return nir.LIF(
                tau=np.full(n, 20.0, np.float32),
                r=np.ones(n, np.float32),
                v_leak=np.zeros(n, np.float32),
                v_threshold=np.ones(n, np.float32),
            )
        return nir.IF(r=np.full(n, r, np.float32), v_threshold=np.ones(n, np.float32))

    nodes = {
        "input": nir.Input(np.array(input_shape)),
        "0": nir.Affine(w0, np.zeros(16, np.float32)),
        "1": spiking(16),
        "2": nir.Affine(w1, np.zeros(4, np.float32)),
        "3": spiking(4),
        "output": nir.Output(np.array([*input_shape[:-1], 4])),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    nir.write(path, nir.NIRGraph(nodes, edges, type_check=False))


X = torch.rand(3, 8, generator=torch.Generator().manual_seed(0)).double()


def _counts(model):
    return [c.tolist() for c in simulate(model.double(), X, 20).spike_counts.values()]


def test_batch_axis_in_input_type_is_named_then_read_as_written(tmp_path):
    _mlp(tmp_path / "norse.nir", [1, 8])
    _mlp(tmp_path / "plain.nir", [8])
    with pytest.raises(NIRImportError, match=r"type check fails .*\[\[1 8\]\] -> 0.input: \[\[8\]\].*type_check=False"):
        import_nir(tmp_path / "norse.nir")
    counts = _counts(import_nir(tmp_path / "norse.nir", type_check=False))
    assert counts == _counts(import_nir(tmp_path / "plain.nir"))
    assert sum(map(np.sum, counts)) > 50


def test_r_is_one_over_dt_needs_dt(tmp_path):
    _mlp(tmp_path / "sj.nir", [8], r=1e4)
    _mlp(tmp_path / "plain.nir", [8])
    assert _counts(import_nir(tmp_path / "sj.nir", dt=1e-4)) == _counts(import_nir(tmp_path / "plain.nir"))
    assert _counts(import_nir(tmp_path / "sj.nir")) != _counts(import_nir(tmp_path / "plain.nir"))


def test_lif_is_rejected_naming_the_node(tmp_path):
    _mlp(tmp_path / "lif.nir", [8], neuron="LIF")
    with pytest.raises(NIRImportError, match=r"NIR node '1' of type LIF cannot be simulated"):
        import_nir(tmp_path / "lif.nir")
