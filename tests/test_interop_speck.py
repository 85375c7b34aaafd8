"""Speck 2f with Sinabs' own code: our Speck-target export of the seed CNN, mapped and run by
Sinabs' ``DynapcnnNetwork(..., discretize=True)`` in the Sinabs interop venv (with the samna
stand-in ``interop/samna_stub``), against our ``check`` and our integer simulation.

Deselected by default; ``bash interop/setup.sh sinabs`` then ``python -m pytest -m interop
tests/test_interop_speck.py``. Skipped (naming the setup command) when the venv is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop import harness, speck  # noqa: E402

pytestmark = pytest.mark.interop


def test_sinabs_maps_and_runs_our_speck_export_as_we_do(tmp_path):
    if not harness.venv_python("sinabs").exists():
        pytest.skip("no Sinabs venv: bash interop/setup.sh sinabs")
    result = speck.run(samples=20, T=16, out=tmp_path)
    check = result["check"]
    assert check["fits"] and check["violations"] == []
    ours_cores = list(check["cores"].values())
    assert ours_cores == [0, 1, 2, 3]
    assert [result["sinabs"]["cores"][str(i)] for i in range(4)] == ours_cores  # Sinabs' get_valid_mapping
    assert [result["sinabs"]["memory"][str(i)] for i in range(4)] == list(check["memory"].values())
    assert result["sinabs"]["discretize_unchanged"] == [True] * 4  # discretize kept our integers
    for layer, row in result["spikes"].items():
        assert row["differing"] == 0 and row["ours"] > 0, layer  # spike for spike
    assert result["accuracy_ours"] == result["accuracy_sinabs"]


def test_sinabs_runs_our_speck_export_with_leak_biases_as_we_do(tmp_path):
    """``--target-bias leak``: 8-bit biases, which Sinabs' discretize keeps and its forward adds
    once per step, as we do; ``leak_enable`` set on every core."""
    if not harness.venv_python("sinabs").exists():
        pytest.skip("no Sinabs venv: bash interop/setup.sh sinabs")
    result = speck.run(samples=20, T=16, out=tmp_path, bias="leak")
    assert result["check"]["fits"] and result["check"]["violations"] == []
    sinabs = result["sinabs"]
    assert [sinabs["cores"][str(i)] for i in range(4)] == list(result["check"]["cores"].values())
    assert sinabs["discretize_unchanged"] == sinabs["discretize_biases_unchanged"] == [True] * 4
    assert all(sinabs["leak_enable"].values()) and max(sinabs["bias_max"].values()) <= 127
    for layer, row in result["spikes"].items():
        assert row["differing"] == 0 and row["ours"] > 0, layer
    assert result["accuracy_ours"] == result["accuracy_sinabs"]
