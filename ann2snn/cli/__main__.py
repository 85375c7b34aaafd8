"""``python -m ann2snn.cli``: the ``ann2snn`` command, e.g. under ``torchrun -m ann2snn.cli convert ...``."""

from ann2snn.cli.main import main

if __name__ == "__main__":
    main(prog_name="ann2snn")
