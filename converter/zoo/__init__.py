"""Deprecated alias of :mod:`ann2snn.zoo` (sample models and the embedded default data).

``converter.zoo`` re-exports ``ann2snn.zoo``'s names and its submodules ``mnist``,
``mnist_cnn`` and ``mnist_resnet`` are the ``ann2snn.zoo`` modules themselves (so pickles and
``converter.zoo.mnist_cnn:MnistCNN`` specs keep working); importing it warns. The alias goes
in the next release.
"""

import importlib
import sys
import warnings

from ann2snn.zoo import *  # noqa: F403
from ann2snn.zoo import __all__  # noqa: F401


def _moved(old: str, new: str) -> None:
    """Warn that ``old`` moved to ``new`` (``DeprecationWarning``)."""
    warnings.warn(f"{old} moved to {new}; the old path will be removed in the next release", DeprecationWarning, 3)


def alias_module(old: str, new: str) -> None:
    """Make the module ``old`` the module ``new`` itself (so pickles of ``old.Class`` load the
    same class) and warn."""
    _moved(old, new)
    sys.modules[old] = importlib.import_module(new)


_moved("converter.zoo", "ann2snn.zoo")
