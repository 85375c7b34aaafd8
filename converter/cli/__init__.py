"""Deprecated alias: the command line is :mod:`ann2snn.cli` (console script ``ann2snn``).

``converter.cli:main`` keeps working for this release with a ``DeprecationWarning``; the
library package ``converter`` itself does not import the application layer.
"""

from __future__ import annotations

import warnings


def main(*args, **kwargs):
    """Run ``ann2snn.cli:main`` (deprecated entry point)."""
    warnings.warn(
        "converter.cli:main moved to ann2snn.cli:main; the old path will be removed in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    from ann2snn.cli import main as ann2snn_main

    return ann2snn_main(*args, **kwargs)
