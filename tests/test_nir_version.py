"""The nir versions ann2snn supports: a nir outside them is named, with the supported range,
when :mod:`exporters` is imported."""

from __future__ import annotations

import importlib
import warnings

import nir
import pytest

import exporters
from exporters.semantics import NIR_SUPPORTED, NIR_TESTED, check_nir_version, nir_version_problem


@pytest.mark.parametrize(
    ("version", "inside"),
    [
        ("1.0.8", True),
        ("1.0.9", True),
        ("1.0.9.dev0", True),
        ("1.0.7", False),
        ("1.0", False),
        ("1.1.0", False),
        ("1.1.0rc1", False),
        ("2.0.0", False),
        ("garbage", False),
    ],
)
def test_nir_version_range(version, inside):
    problem = nir_version_problem(version)
    assert (problem is None) == inside
    if not inside:
        assert version in problem and f">= {NIR_SUPPORTED[0]}, < {NIR_SUPPORTED[1]}" in problem
        assert NIR_TESTED in problem


def test_unsupported_nir_warns_on_import_naming_both_versions(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_nir_version()  # the installed nir is a supported one
    with pytest.warns(UserWarning, match=r"nir 1\.0\.4 is installed; ann2snn supports nir >= 1\.0\.8, < 1\.1"):
        check_nir_version("1.0.4")
    monkeypatch.setattr(nir, "__version__", "1.2.0")
    with pytest.warns(UserWarning, match=r"nir 1\.2\.0 is installed; ann2snn supports nir >= 1\.0\.8, < 1\.1"):
        importlib.reload(exporters)
