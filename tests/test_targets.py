"""exporters.targets: Sinabs' memory formula by hand, the core mapping, unknown targets."""

import numpy as np
import pytest

from exporters.targets import check, target
from exporters.targets.base import Layer
from exporters.targets.speck2f import fitting_cores, map_cores, memory


def _layer(c_in, c_out, k, hw, bias=True):
    w = np.ones((c_out, c_in, k, k))
    return Layer(
        "conv",
        "if",
        "IF",
        (k, k),
        (1, 1),
        c_in,
        c_out,
        hw,
        w,
        np.ones(c_out) if bias else None,
        np.ones(c_out),
        "subtract",
        [],
        [],
        1,
    )


def test_memory_equals_sinabs_formula_by_hand():
    # kernel = c * 2^(ceil(log2 9) + ceil(log2 4)) = 2 * 2^(4 + 2) = 128; neuron = 4 * 2^(3 + 3) = 256
    assert memory(_layer(2, 4, 3, (5, 5))) == {"kernel": 128, "neuron": 256, "bias": 4}
    # seed CNN's second conv: 32 * 2^(4 + 5) = 16384; 32 * 2^(4 + 4) = 8192
    assert memory(_layer(32, 32, 3, (11, 11), bias=False)) == {"kernel": 16384, "neuron": 8192, "bias": 0}


def test_core_mapping_is_a_matching():
    need = {"kernel": 40000, "neuron": 100, "bias": 0}  # only cores 5 and 6 hold 40000 weights
    assert fitting_cores(need) == [5, 6]
    assert map_cores([[5, 6], [5, 6], [5, 6]]) == [5, 6, None]


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown target 'foo': known targets are int8, loihi2, speck2f, spinnaker2"):
        target("foo")
    with pytest.raises(ValueError, match="known targets"):
        check(None, "bar")
