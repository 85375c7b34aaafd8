"""ANN → SNN conversion (torch.fx passes) built on :mod:`simulator`.

One file per pass: :mod:`~converter.trace`, :mod:`~converter.fold_bn`,
:mod:`~converter.record`, :mod:`~converter.normalize`, :mod:`~converter.replace`,
:mod:`~converter.quantize` and :mod:`~converter.fold_pools` (for chips without pools);
:class:`Converter` chains them. The package imports only :mod:`simulator` (and torch); the
command line, the pipeline and the sample models are the application layer, :mod:`ann2snn`.
"""

from converter.converter import Converter, convert
from converter.diagnostics import FidelityReport, LayerFidelity, layer_fidelity
from converter.fold_bn import fold_batchnorm, fold_bn_into_next, fold_bn_weights
from converter.fold_pools import PoolFoldError, fold_pool_into_conv, fold_pool_into_linear, fold_sum_pools
from converter.modes import Mode, parse_mode
from converter.quantize import QuantizationError, quantize
from converter.statistics import ActivationStats
from converter.trace import NotTraceableError, UnsupportedLayerError, trace

__all__ = [
    "ActivationStats",
    "Converter",
    "FidelityReport",
    "LayerFidelity",
    "Mode",
    "NotTraceableError",
    "PoolFoldError",
    "QuantizationError",
    "UnsupportedLayerError",
    "convert",
    "fold_batchnorm",
    "fold_bn_into_next",
    "fold_bn_weights",
    "fold_pool_into_conv",
    "fold_pool_into_linear",
    "fold_sum_pools",
    "layer_fidelity",
    "parse_mode",
    "quantize",
    "trace",
]
