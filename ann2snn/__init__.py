"""ann2snn's application layer: the one package that imports all three libraries.

- :mod:`ann2snn.pipeline`: the main job as a Python API (models × modes × T → convert with
  :mod:`converter`, simulate with :mod:`simulator`, export and reload with :mod:`exporters`,
  summarise); :func:`~ann2snn.pipeline.run_job`, :func:`~ann2snn.pipeline.demo_job`.
- :mod:`ann2snn.data` (calibration and evaluation data), :mod:`ann2snn.models` (load an ANN
  from a factory and weights, or a trusted pickle), :mod:`ann2snn.jobfile` (TOML job files),
  :mod:`ann2snn.nirinfo` (describe and evaluate a ``.nir`` file), :mod:`ann2snn.plots`.
- :mod:`ann2snn.zoo`: the sample models and the embedded default data (MNIST).
- :mod:`ann2snn.cli`: the ``ann2snn`` command (click), each command a few lines over the above.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ann2snn")  # stated once, in pyproject.toml
except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
    __version__ = "unknown"
