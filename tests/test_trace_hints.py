"""A refused operation gets the same reason and remedy in module, function and method form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from converter.trace import UnsupportedLayerError, trace


class Call(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _refusal(model: nn.Module) -> str:
    with pytest.raises(UnsupportedLayerError) as info:
        trace(model)
    return str(info.value)


def _reason(message: str) -> str:
    return message.split("): ", 1)[1]


MAX_POOL = "max-pooling of spikes is not the max of rates; use AvgPool2d"
ACTIVATION = "only ReLU, ReLU6 and clamp(0, c) have an integrate-and-fire equivalent"

FORMS = {
    "max_pool2d": (nn.MaxPool2d(2), [lambda x: F.max_pool2d(x, 2), lambda x: torch.max_pool2d(x, 2)], MAX_POOL),
    "max_pool1d": (nn.MaxPool1d(2), [lambda x: F.max_pool1d(x.flatten(2), 2)], MAX_POOL),
    "adaptive_max_pool2d": (nn.AdaptiveMaxPool2d(1), [lambda x: F.adaptive_max_pool2d(x, 1)], MAX_POOL),
    "leaky_relu": (nn.LeakyReLU(), [F.leaky_relu, lambda x: F.leaky_relu(x, 0.1)], ACTIVATION),
    "sigmoid": (nn.Sigmoid(), [torch.sigmoid, F.sigmoid, lambda x: x.sigmoid()], ACTIVATION),
    "tanh": (nn.Tanh(), [torch.tanh, F.tanh, lambda x: x.tanh()], ACTIVATION),
    "gelu": (nn.GELU(), [F.gelu], ACTIVATION),
    "silu": (nn.SiLU(), [F.silu], ACTIVATION),
    "elu": (nn.ELU(), [F.elu], ACTIVATION),
    "selu": (nn.SELU(), [F.selu, torch.selu], ACTIVATION),
    "softplus": (nn.Softplus(), [F.softplus], ACTIVATION),
    "hardswish": (nn.Hardswish(), [F.hardswish], ACTIVATION),
    "mish": (nn.Mish(), [F.mish], ACTIVATION),
    "hardtanh(-1, 1)": (
        nn.Hardtanh(),
        [F.hardtanh, lambda x: torch.clamp(x, -1, 1), lambda x: x.clamp(-1, 1)],
        ACTIVATION,
    ),
}


@pytest.mark.parametrize("name", list(FORMS))
def test_function_and_method_forms_give_the_module_forms_reason(name):
    module, functions, reason = FORMS[name]
    module_message = _refusal(nn.Sequential(nn.Conv2d(1, 2, 3), module))
    assert _reason(module_message) == reason, module_message
    for fn in functions:
        message = _refusal(nn.Sequential(nn.Conv2d(1, 2, 3), Call(fn)))
        assert _reason(message) == reason, message


def test_other_operations_keep_the_generic_message():
    message = _refusal(nn.Sequential(nn.Conv2d(1, 2, 3), Call(torch.exp)))
    assert message.endswith(": not supported"), message
