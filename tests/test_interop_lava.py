"""Loihi 2 with Lava's bit-accurate fixed-point models: our Loihi-target export of the interop MLP
run by lava-nc's Dense / LIF processes (``PyDenseModelBitAcc``, ``PyLifModelBitAcc``) in the Lava
interop venv, against our integer simulation of the file, spike for spike at every step.

Deselected by default; ``bash interop/setup.sh lava`` then ``python -m pytest -m interop
tests/test_interop_lava.py``. Skipped (naming the setup command) when the venv is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop import harness, lava  # noqa: E402

pytestmark = pytest.mark.interop


def test_lava_runs_our_loihi_export_as_we_do(tmp_path):
    if not harness.venv_python("lava").exists():
        pytest.skip("no Lava venv: bash interop/setup.sh lava")
    result = lava.run(samples=20, T=16, out=tmp_path)
    assert result["check"]["fits"] and result["check"]["violations"] == []
    assert len(result["spikes"]) == 3
    for layer, row in result["spikes"].items():
        assert row["differing"] == 0 and row["ours"] > 0, layer  # every spike at every step
    assert result["accuracy_ours"] == result["accuracy_lava"]


def test_lava_adds_our_kept_biases_as_bias_mant(tmp_path):
    """``--target-bias keep``: 13-bit biases as ``bias_mant`` (``bias_exp = 6``), each layer's set
    from the step its first input arrives."""
    if not harness.venv_python("lava").exists():
        pytest.skip("no Lava venv: bash interop/setup.sh lava")
    result = lava.run(samples=20, T=16, out=tmp_path, bias="keep")
    assert result["check"]["fits"] and result["check"]["violations"] == []
    assert max(result["lava"]["bias_max"]) > 0 and result["lava"]["bias_exp"] == 6
    for layer, row in result["spikes"].items():
        assert row["differing"] == 0 and row["ours"] > 0, layer
    assert result["accuracy_ours"] == result["accuracy_lava"]


def test_lava_runs_the_seed_cnn_with_its_pools_folded(tmp_path):
    """The seed CNN, pools folded (``convert --target loihi2`` does it): Lava's ``Conv``
    (``PyConvModelFixed``, lava-nc 0.10.0 has no bit-accurate Conv model) for the three
    convolutions, ``Dense`` for the Linear, every spike at every step equal."""
    if not harness.venv_python("lava").exists():
        pytest.skip("no Lava venv: bash interop/setup.sh lava")
    result = lava.run(samples=5, T=16, out=tmp_path, bias="keep", net="cnn")
    assert result["check"]["fits"] and result["check"]["violations"] == []
    assert result["lava"]["layers"] == ["conv", "conv", "conv", "dense"]
    assert "Conv: PyConvModelFixed" in result["lava"]["process_models"]
    assert len(result["spikes"]) == 4
    for layer, row in result["spikes"].items():
        assert row["differing"] == 0 and row["ours"] > 0, layer
    assert result["accuracy_ours"] == result["accuracy_lava"]
