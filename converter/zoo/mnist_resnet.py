"""Deprecated alias of :mod:`ann2snn.zoo.mnist_resnet` (the small MNIST residual network).

Importing ``converter.zoo.mnist_resnet`` gives the module ``ann2snn.zoo.mnist_resnet`` itself (so pickles and
``converter.zoo.mnist_resnet:Factory`` specs keep working) and warns; the alias goes in the next release.
"""

import importlib
import sys
import warnings

warnings.warn(
    "converter.zoo.mnist_resnet moved to ann2snn.zoo.mnist_resnet; the old path will be removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("ann2snn.zoo.mnist_resnet")
