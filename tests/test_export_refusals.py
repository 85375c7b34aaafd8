"""The exporter refuses, naming the node, every operation it cannot write exactly as NIR.

NIR sums the edges that enter a node with weight 1 and has no constant source, so a constant
summand, ``torch.add``'s ``alpha``, a subtraction, a product or quotient and a constant tensor
operand have no exact encoding; writing the graph without them would change what it computes.
"""

import re

import pytest
import torch
from torch import nn

from exporters import ExportError, compare_spike_counts, export_nir, import_nir, to_nir
from simulator import IFNeuron


class _Net(nn.Module):
    """Two Linear layers ``[B, 4] -> [B, 3]``, a constant buffer ``offset`` ``[3]`` and an IF
    layer applied to ``body(self, x)``."""

    def __init__(self, body):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(4, 3)
        self.register_buffer("offset", torch.full((3,), 0.25))
        self.act = IFNeuron()
        self.body = body

    def forward(self, x):
        return self.act(self.body(self, x))


def _iadd_constant(m, x):
    h = m.fc1(x)
    h += 0.5
    return h


REFUSALS = {
    "constant summand": (lambda m, x: m.fc1(x) + 0.7, "'add' (function add)", "adds the constant 0.7"),
    "constant summand first": (lambda m, x: 0.7 + m.fc1(x), "'add' (function add)", "adds the constant 0.7"),
    "in-place constant summand": (_iadd_constant, "'add' (function add)", "adds the constant 0.5"),
    "method constant summand": (lambda m, x: m.fc1(x).add_(1.0), "'add_' (method add_)", "adds the constant 1.0"),
    "constant tensor summand": (lambda m, x: m.fc1(x) + m.offset, "'add' (function add)", "adds 'offset'"),
    "alpha": (lambda m, x: torch.add(m.fc1(x), m.fc2(x), alpha=2), "'add' (function add)", "alpha=2"),
    "method alpha": (lambda m, x: m.fc1(x).add(m.fc2(x), alpha=0.5), "'add' (method add)", "alpha=0.5"),
    "subtraction": (lambda m, x: m.fc1(x) - m.fc2(x), "'sub' (function sub)", "cannot subtract"),
    "constant subtrahend": (lambda m, x: m.fc1(x) - 0.5, "'sub' (function sub)", "subtracts with the constant 0.5"),
    "scalar product": (lambda m, x: m.fc1(x) * 0.5, "'mul' (function mul)", "multiplies by the constant 0.5"),
    "scalar quotient": (lambda m, x: m.fc1(x) / 2, "'truediv' (function truediv)", "divides by the constant 2"),
    "tensor product": (lambda m, x: m.fc1(x) * m.fc2(x), "'mul' (function mul)", "multiplies two tensors"),
    "constant tensor product": (lambda m, x: m.fc1(x) * m.offset, "'mul' (function mul)", "multiplies by 'offset'"),
    "method product": (lambda m, x: m.fc1(x).mul(3.0), "'mul' (method mul)", "multiplies by the constant 3.0"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_arithmetic_that_nir_cannot_write_is_refused_naming_the_node(case):
    body, node, reason = REFUSALS[case]
    with pytest.raises(ExportError) as info:
        to_nir(_Net(body), input_shape=(4,))
    message = str(info.value)
    assert message.startswith(f"cannot export {node}"), message
    assert reason in message, message


def test_the_constant_summand_before_an_if_layer_is_refused_and_its_bias_form_exports_exactly(tmp_path):
    # IFNeuron()(fc(x) + 0.7) used to be written as IFNeuron()(fc(x)): the reloaded file fired far fewer spikes
    net = _Net(lambda m, x: m.fc1(x) + 0.7)
    with pytest.raises(ExportError, match=r"'add' \(function add\): it adds the constant 0\.7.*bias"):
        export_nir(net, tmp_path / "constant.nir", input_shape=(4,))
    assert list(tmp_path.iterdir()) == []
    folded = _Net(lambda m, x: m.fc1(x))  # the advice: the constant in the bias
    folded.fc1.bias.data += 0.7
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(1))
    report = compare_spike_counts(net, folded, x, 30)
    assert report.equal  # the same network
    reloaded = import_nir(export_nir(folded, tmp_path / "folded.nir", input_shape=(4,)))
    assert compare_spike_counts(net, reloaded, x, 30).equal


def test_a_summand_added_twice_is_refused():
    with pytest.raises(
        ExportError, match=r"'add' \(function add\): it sums the output of NIR node 'fc1' more than once"
    ):
        to_nir(_Net(lambda m, x: m.fc1(x) + m.fc1(x)), input_shape=(4,))


def test_a_concatenated_constant_is_refused():
    def body(m, x):
        return torch.cat([m.fc1(x), m.offset.unsqueeze(0)], dim=1)

    with pytest.raises(
        ExportError, match=r"node 'cat' \(torch.cat\): it joins '\w+', which is not computed from the network input"
    ):
        to_nir(_Net(body), input_shape=(4,))


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act = nn.Linear(4, 3), IFNeuron()

    def forward(self, x, y):
        return self.act(self.fc(x) + self.fc(y))


class _TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act = nn.Linear(4, 3), IFNeuron()

    def forward(self, x):
        h = self.act(self.fc(x))
        return h, h


def test_a_second_input_or_a_second_output_is_refused():
    with pytest.raises(ExportError, match=re.escape("the SNN takes 2 inputs ['x', 'y']")):
        to_nir(_TwoInputs(), input_shape=(4,))
    with pytest.raises(ExportError, match="the SNN returns tuple"):
        to_nir(_TwoOutputs(), input_shape=(4,))


@pytest.mark.parametrize(
    "body",
    [
        lambda m, x: m.fc1(x) + m.fc2(x),
        lambda m, x: torch.add(m.fc1(x), m.fc2(x), alpha=1),
        lambda m, x: m.fc1(x).add(m.fc2(x)).contiguous(),
    ],
    ids=["a + b", "torch.add alpha=1", "a.add(b).contiguous()"],
)
def test_tensor_sums_still_export_exactly(tmp_path, body):
    net = _Net(body)
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(2))
    reloaded = import_nir(export_nir(net, tmp_path / "sum.nir", input_shape=(4,)))
    assert compare_spike_counts(net, reloaded, x, 30).equal
