"""The ``ann2snn`` command line (click): each command is a few lines over :mod:`ann2snn.pipeline`
and the library packages; library errors become one-line messages here, at the edge."""

from ann2snn.cli.main import main

__all__ = ["main"]
