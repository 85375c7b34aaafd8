"""Deprecated alias of :mod:`ann2snn.zoo.mnist` (the MNIST IDX reader and the embedded default data).

Importing ``converter.zoo.mnist`` gives the module ``ann2snn.zoo.mnist`` itself (so pickles and
``converter.zoo.mnist:Factory`` specs keep working) and warns; the alias goes in the next release.
"""

import importlib
import sys
import warnings

warnings.warn(
    "converter.zoo.mnist moved to ann2snn.zoo.mnist; the old path will be removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("ann2snn.zoo.mnist")
