"""Global average pooling, the input-normalisation fold and a ResNet-20-shaped net (issue 14)."""

import nir
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from converter import Converter
from converter.input_affine import InputAffineError
from converter.trace import UnsupportedLayerError, trace
from examples.cifar10 import ResNet20
from exporters import compare_spike_counts, export_nir, import_nir
from simulator import simulate
from tests.nets import randomize_bn


def _loader(x):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)


@pytest.fixture(scope="module")
def images():
    return torch.rand(24, 3, 8, 8, generator=torch.Generator().manual_seed(14))


class PoolNet(nn.Module):
    """conv3x3 → ReLU → global average pool (in one of four forms) → identity Linear."""

    def __init__(self, form: str):
        super().__init__()
        torch.manual_seed(15)
        self.form = form
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(4))
            self.fc.bias.zero_()

    def forward(self, x):
        h = F.relu(self.conv(x))
        if self.form == "module":
            h = self.pool(h).flatten(1)
        elif self.form == "function":
            h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        elif self.form == "mean":
            h = h.mean((2, 3))
        else:
            h = torch.mean(h, dim=(-2, -1), keepdim=True).flatten(1)
        return self.fc(h)


@pytest.mark.parametrize("form", ["module", "function", "mean", "torch.mean keepdim"])
def test_global_pool_becomes_avgpool_of_the_feature_map(form, images):
    gm = trace(PoolNet(form).eval(), images)
    pools = [m for m in gm.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 1 and pools[0].kernel_size == (8, 8) and pools[0].stride == (8, 8)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in gm.modules())
    with torch.no_grad():
        assert torch.allclose(gm(images), PoolNet(form).eval()(images), atol=1e-6)


@pytest.mark.parametrize("T", [8, 32])
def test_global_pool_rate_matches_the_ann_within_1_over_T(T, images):
    ann = PoolNet("mean").eval()
    snn = Converter(dataloader=_loader(images))(ann)
    with torch.no_grad():
        target = ann(images) / snn.meta["ann2snn"]["output_scale"]
    rate = simulate(snn, images, T).outputs[-1] / T  # membrane readout: V[T] = the summed input
    err = (rate - target).abs()
    assert err.max().item() <= 1 / T
    assert err.max().item() > 0  # rate coding is not exact at this T: the bound is what is tested


def test_pool_output_size_that_does_not_divide_is_refused(images):
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(3)

        def forward(self, x):
            return self.pool(F.relu(self.conv(x))).flatten(1)

    with pytest.raises(
        UnsupportedLayerError, match=r"'pool' \(AdaptiveAvgPool2d\(3\)\).*\[3, 3\] does not divide .*\[8, 8\]"
    ):
        trace(Bad().eval(), images)


class Normalised(nn.Module):
    """``(x - mean) / std`` per channel, then a convolution with ``padding``."""

    def __init__(self, padding: int):
        super().__init__()
        torch.manual_seed(16)
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(3, 1, 1))
        self.conv = nn.Conv2d(3, 6, 3, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv((x - self.mean) / self.std))).mean((2, 3)))


def test_input_normalisation_is_folded_into_the_first_convolution(images):
    ann = randomize_bn(Normalised(padding=0))
    gm = trace(ann, images)
    assert [n.op for n in gm.graph.nodes][:2] == ["placeholder", "call_module"]  # x goes straight to conv
    with torch.no_grad():
        assert (gm(images) - ann(images)).abs().max().item() < 1e-5
    snn = Converter(dataloader=_loader(images))(ann)  # the SNN takes raw pixels
    with torch.no_grad():
        target = ann(images) / snn.meta["ann2snn"]["output_scale"]
    assert (simulate(snn, images, 256).outputs[-1] / 256 - target).abs().max().item() < 0.02


def test_input_normalisation_before_a_zero_padded_convolution_is_refused(images):
    with pytest.raises(
        InputAffineError, match=r"cannot fold .*'conv' \(Conv2d\).*pads with zeros \(padding=\(1, 1\)\).*borders"
    ):
        trace(Normalised(padding=1).eval(), images)


def test_input_normalisation_feeding_two_layers_is_refused(images):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = x * 2.0
            return self.a(y) + self.b(y)

    with pytest.raises(InputAffineError, match="can only be folded into one Conv1d, Conv2d or Linear"):
        trace(Two().eval(), images)


def test_resnet20_shaped_net_converts_exports_and_reloads_with_identical_spikes(tmp_path):
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(17))
    torch.manual_seed(18)
    ann = randomize_bn(ResNet20(widths=(4, 6, 8), blocks=2))
    snn = Converter(dataloader=_loader(x))(ann)
    # the two projection shortcuts (1x1 conv + BN) are folded: no BatchNorm is left
    assert not any(isinstance(m, nn.BatchNorm2d) for m in snn.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in snn.modules()) == 2
    (pool,) = [m for m in snn.modules() if isinstance(m, nn.AvgPool2d)]
    assert pool.kernel_size == (4, 4)
    path = export_nir(snn, tmp_path / "resnet.nir", T=16)
    assert any(isinstance(n, nir.AvgPool2d) and list(n.kernel_size) == [4, 4] for n in nir.read(path).nodes.values())
    back = import_nir(path)
    report = compare_spike_counts(snn, back, x, 16)
    assert report.equal and report.layers == 13
