"""Deprecated alias of :mod:`ann2snn.zoo` (sample models and the embedded default data).

``converter.zoo`` re-exports ``ann2snn.zoo``'s names and its submodules ``mnist``,
``mnist_cnn`` and ``mnist_resnet`` are the ``ann2snn.zoo`` modules themselves (so pickles and
``converter.zoo.mnist_cnn:MnistCNN`` specs keep working); importing it warns. The alias goes
in the next release.
"""

import warnings

from ann2snn.zoo import *  # noqa: F403
from ann2snn.zoo import __all__  # noqa: F401

warnings.warn(
    "converter.zoo moved to ann2snn.zoo; the old path will be removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
