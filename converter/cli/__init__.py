"""The ``ann2snn`` command line (click): the one place where converter, simulator and
exporters meet. Each command is a few lines over library calls."""

from converter.cli.main import main

__all__ = ["main"]
