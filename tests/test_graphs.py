"""Real-world graphs — every ReLU form, shared modules, reshapes, Dropout, Softmax,
capped ReLUs, and loud failures for what cannot be converted."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from converter import Converter, NotTraceableError, UnsupportedLayerError
from simulator import IFNeuron, simulate


def _loader(x, batch_size=16):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch_size)


def _convert(ann, x, mode="max"):
    return Converter(mode=mode, dataloader=_loader(x), readout="spike_count")(ann)


def _normalised_error(ann, snn, x, T=1000):
    """max |ANN / output_scale - SNN rate| (outputs in units of the output layer's scale)."""
    with torch.no_grad():
        target = ann(x) / snn.meta["ann2snn"]["output_scale"]
    rate = simulate(snn, x, T, time_chunk=250).outputs.mean(0)
    return (rate - target).abs().max().item()


def _if_layers(snn):
    return [m for m in snn.modules() if isinstance(m, IFNeuron)]


class AllReluForms(nn.Module):
    """Each ReLU form used exactly once, on Linear layers with biases."""

    FORMS = 7

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fcs = nn.ModuleList(nn.Linear(6, 6) for _ in range(self.FORMS))
        self.act = nn.ReLU()
        self.act_inplace = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.act(self.fcs[0](x))
        x = self.act_inplace(self.fcs[1](x))
        x = F.relu(self.fcs[2](x))
        x = F.relu(self.fcs[3](x), inplace=True)
        x = torch.relu(self.fcs[4](x))
        x = self.fcs[5](x).relu()
        return self.fcs[6](x).relu_()


def test_each_relu_form_gives_one_if_layer_and_rate_equivalence():
    x = torch.rand(64, 6)
    ann = AllReluForms().eval()
    snn = _convert(ann, x)
    assert len(_if_layers(snn)) == AllReluForms.FORMS
    assert not any(isinstance(m, nn.ReLU) for m in snn.modules())
    assert all(n.op in ("placeholder", "output", "call_module") for n in snn.graph.nodes)
    err = _normalised_error(ann, snn, x)
    # 7 layers each exact to 1/T = 0.001; the transients add up to a few 1/T
    assert err <= 0.01, f"rate error {err:.4f} at T=1000"


class SharedRelu(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        with torch.no_grad():
            self.fc2.weight.mul_(6.0)  # the second call site's activations are several times larger
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def test_shared_relu_gives_two_if_layers_with_their_own_scales():
    x = torch.rand(64, 4)
    ann = SharedRelu().eval()
    snn = _convert(ann, x)
    with torch.no_grad():
        first = F.relu(ann.fc1(x))
        second = F.relu(ann.fc2(first))
    lambdas = list(snn.meta["ann2snn"]["lambdas"].values())
    assert len(_if_layers(snn)) == 2 and len(lambdas) == 2
    assert lambdas[0] == pytest.approx(first.max().item(), rel=1e-6)
    assert lambdas[1] == pytest.approx(second.max().item(), rel=1e-6)
    assert lambdas[1] / lambdas[0] > 2.0
    assert _normalised_error(ann, snn, x) <= 0.01
    layers = _if_layers(snn)
    simulate(snn, x[:3], 5)
    assert layers[0].v is not layers[1].v and layers[0].v.shape == layers[1].v.shape == (3, 8)


@pytest.mark.parametrize("flatten", ["module", "torch.flatten", "view_size", "reshape_minus1", "x.flatten"])
def test_flatten_forms_keep_the_batch_axis(flatten):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(7)
            self.conv, self.fc, self.flat = nn.Conv2d(1, 4, 3), nn.Linear(4 * 4 * 4, 5), nn.Flatten()

        def forward(self, x):
            h = F.relu(self.conv(x))
            if flatten == "module":
                h = self.flat(h)
            elif flatten == "torch.flatten":
                h = torch.flatten(h, 1)
            elif flatten == "view_size":
                h = h.view(h.size(0), -1)
            elif flatten == "reshape_minus1":
                h = h.reshape(-1, 64)
            else:
                h = h.flatten(1)
            return F.relu(self.fc(h))

    x = torch.rand(32, 1, 6, 6)
    ann = Net().eval()
    snn = _convert(ann, x)
    assert _normalised_error(ann, snn, x) <= 0.01


@pytest.mark.parametrize(
    "shape_code,what",
    [
        ("fixed", "leading dimension is fixed at 16"),
        ("merge", "merges the batch axis"),
        ("doubles", "turns a batch of 16 into 32"),
    ],
)
def test_reshape_that_breaks_the_batch_axis_is_refused(shape_code, what):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            h = F.relu(self.fc(x))
            if shape_code == "fixed":
                return h.view(16, -1)
            if shape_code == "merge":
                return h.view(-1)
            return h.reshape(-1, 4)

    with pytest.raises(UnsupportedLayerError, match=what) as info:
        _convert(Net(), torch.rand(32, 8))
    assert "x.view(x.size(0), -1)" in str(info.value)


def test_identity_and_train_mode_dropout_are_removed_identically_twice():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(8)
            self.fc1, self.drop, self.fc2, self.idt = nn.Linear(5, 9), nn.Dropout(0.5), nn.Linear(9, 4), nn.Identity()

        def forward(self, x):
            h = self.drop(F.relu(self.fc1(x)))
            h = F.dropout(h, 0.3, training=self.training)
            return F.relu(self.fc2(self.idt(h)))

    ann = Net().train()
    x = torch.rand(48, 5)
    first, second = _convert(ann, x), _convert(ann, x)
    assert ann.training
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(isinstance(m, (nn.Dropout, nn.Identity)) for m in first.modules())
    assert not any("dropout" in str(n.target) for n in first.graph.nodes)
    assert _normalised_error(ann.eval(), first, x) <= 0.01


@pytest.mark.parametrize("softmax", [nn.Softmax(dim=1), nn.LogSoftmax(dim=1)])
def test_trailing_softmax_is_dropped_with_a_warning(softmax):
    torch.manual_seed(9)
    ann = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), softmax).eval()
    x = torch.rand(32, 6)
    with pytest.warns(UserWarning, match=rf"trailing '4' \({type(softmax).__name__}\)"):
        snn = _convert(ann, x)
    assert _normalised_error(ann[:4], snn, x) <= 0.01


def test_functional_softmax_inside_the_network_is_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(F.softmax(self.fc1(x), dim=1))

    with pytest.raises(UnsupportedLayerError, match=r"'softmax' \(function softmax\).*only allowed as the last"):
        _convert(Net(), torch.rand(8, 4))


@pytest.mark.parametrize("capped", ["ReLU6", "F.relu6", "clamp", "x.clamp", "Hardtanh"])
def test_relu6_and_clamp_become_if_layers_with_scale_capped_at_c(capped):
    cap = 6.0 if "6" in capped else 2.0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(10)
            self.fc1, self.fc2 = nn.Linear(4, 16), nn.Linear(16, 3)
            with torch.no_grad():
                self.fc1.weight.mul_(3 * cap)  # drive many units well past the cap
            self.act = nn.ReLU6() if capped == "ReLU6" else nn.Hardtanh(0.0, cap)

        def forward(self, x):
            h = self.fc1(x)
            if capped in ("ReLU6", "Hardtanh"):
                h = self.act(h)
            elif capped == "F.relu6":
                h = F.relu6(h)
            elif capped == "clamp":
                h = torch.clamp(h, 0, cap)
            else:
                h = h.clamp(min=0, max=cap)
            return F.relu(self.fc2(h))

    ann = Net().eval()
    x = torch.rand(64, 4)
    with torch.no_grad():
        assert (ann.fc1(x) > cap).float().mean() > 0.2
    snn = _convert(ann, x)
    lambdas = list(snn.meta["ann2snn"]["lambdas"].values())
    assert lambdas[0] == cap and len(_if_layers(snn)) == 2
    assert _normalised_error(ann, snn, x) <= 0.01


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


@pytest.mark.parametrize(
    "layer",
    [
        nn.LeakyReLU(),
        nn.GELU(),
        nn.SiLU(),
        nn.Sigmoid(),
        nn.Tanh(),
        nn.ELU(),
        nn.MaxPool2d(2),
        nn.Softmax2d(),
        nn.Hardtanh(-1, 1),
    ],
)
def test_rejected_module_is_named_by_path_and_type(layer):
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.Conv2d(2, 2, 1), layer), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(UnsupportedLayerError, match=rf"cannot convert '1\.1' \({type(layer).__name__}\)"):
        _convert(ann, torch.rand(8, 1, 6, 6))


def test_maxpool_error_suggests_avgpool2d():
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(UnsupportedLayerError, match=r"'2' \(MaxPool2d\).*use AvgPool2d"):
        _convert(ann, torch.rand(8, 1, 6, 6))


@pytest.mark.parametrize(
    "fn,name", [(F.gelu, "gelu"), (F.leaky_relu, "leaky_relu"), (torch.tanh, "tanh"), (F.max_pool2d, "max_pool2d")]
)
def test_rejected_function_is_named_with_its_module(fn, name):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return fn(self.conv(x), 2) if fn is F.max_pool2d else fn(self.conv(x))

    ann = nn.Sequential(nn.Identity(), Block())
    with pytest.raises(UnsupportedLayerError, match=rf"'{name}' \(function {name}\) in '1' \(Block\)"):
        _convert(ann, torch.rand(8, 1, 6, 6))


def test_custom_activation_module_is_named_by_path_and_type():
    ann = nn.Sequential(nn.Linear(3, 3), Swish(), nn.Linear(3, 2))
    with pytest.raises(UnsupportedLayerError, match=r"in '1' \(Swish\)"):
        _convert(ann, torch.rand(8, 3))


def test_scalar_add_is_refused_by_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return F.relu(self.fc(x) + 1.0)

    with pytest.raises(UnsupportedLayerError, match=r"'add' \(function add\)"):
        _convert(Net(), torch.rand(8, 3))


def test_control_flow_names_the_line_and_the_remedy():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # the offending line
                return x
            return -x

    with pytest.raises(NotTraceableError) as info:
        _convert(Branchy(), torch.rand(4, 2))
    msg = str(info.value)
    assert "Branchy.forward" in msg and "test_graphs.py:" in msg and "if x.sum() > 0:" in msg
    assert "torch.where" in msg and "Traceback" not in msg


def test_int_shape_arithmetic_names_the_line_and_suggests_flatten():
    class Shapey(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(x.view(int(x.shape[0]), -1))

    with pytest.raises(NotTraceableError) as info:
        _convert(Shapey(), torch.rand(4, 2, 4))
    msg = str(info.value)
    assert "int(x.shape[0])" in msg and "nn.Flatten" in msg


def test_converter_result_has_no_relu_and_matches_capped_math():
    """The IF saturates at one spike per step: a clamp(0, c) unit driven far past c fires every step."""
    ann = nn.Sequential(nn.Linear(1, 1), nn.ReLU6()).eval()
    with torch.no_grad():
        ann[0].weight.fill_(100.0)
        ann[0].bias.zero_()
    x = torch.tensor([[0.01], [0.03], [1.0]])
    snn = _convert(ann, x)
    rate = simulate(snn, x, 100).outputs.mean(0).flatten().tolist()
    assert rate == pytest.approx([1 / 6, 3 / 6, 1.0], abs=1 / 100)
    assert math.isclose(snn.meta["ann2snn"]["output_scale"], 6.0)
