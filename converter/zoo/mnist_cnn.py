"""Deprecated alias of :mod:`ann2snn.zoo.mnist_cnn` (the seed MNIST CNN).

Importing ``converter.zoo.mnist_cnn`` gives the module ``ann2snn.zoo.mnist_cnn`` itself (so pickles and
``converter.zoo.mnist_cnn:Factory`` specs keep working) and warns; the alias goes in the next release.
"""

import importlib
import sys
import warnings

warnings.warn(
    "converter.zoo.mnist_cnn moved to ann2snn.zoo.mnist_cnn; the old path will be removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("ann2snn.zoo.mnist_cnn")
