"""Residual adds and concatenations — normalisation across joins and NIR round trips."""

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from converter import Converter
from exporters import compare_spike_counts, export_nir, import_nir
from simulator import Scale, simulate

T_LONG = 1000


def _loader(x):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)


def _normalised_rate_error(ann, snn, x, T=T_LONG):
    with torch.no_grad():
        target = ann(x) / snn.meta["ann2snn"]["output_scale"]
    rate = simulate(snn, x, T, time_chunk=250).outputs.mean(0)
    return (rate - target).abs().max().item()


class ResidualBlock(nn.Module):
    """``h = relu(conv0(x)); y = relu(conv_b(relu(conv_a(h))) + h)`` with the branch about 5× the skip."""

    def __init__(self, add: str):
        super().__init__()
        torch.manual_seed(11)
        self.add = add
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.conv0(x))
        branch = self.conv_b(F.relu(self.conv_a(h)))
        if self.add == "+":
            y = branch + h
        elif self.add == "torch.add":
            y = torch.add(branch, h)
        else:
            branch += h
            y = branch
        return F.relu(y)


def _branch_over_skip(ann, x):
    """Largest branch value over largest skip value at the join."""
    with torch.no_grad():
        h = F.relu(ann.conv0(x))
        branch = ann.conv_b(F.relu(ann.conv_a(h)))
    return (branch.max() / h.max()).item()


def _block(add, x, ratio=5.0):
    """A :class:`ResidualBlock` whose branch is ``ratio`` times the skip on ``x``."""
    ann = ResidualBlock(add).eval()
    factor = ratio / _branch_over_skip(ann, x)
    with torch.no_grad():
        ann.conv_b.weight.mul_(factor)
        ann.conv_b.bias.mul_(factor)
    return ann


@pytest.fixture(scope="module")
def inputs():
    return torch.rand(48, 1, 6, 6, generator=torch.Generator().manual_seed(12))


@pytest.mark.parametrize("add", ["+", "torch.add", "+="])
def test_residual_block_matches_ann_within_001_at_T1000(add, inputs, tmp_path):
    ann = _block(add, inputs)
    assert _branch_over_skip(ann, inputs) == pytest.approx(5.0, rel=1e-4)
    snn = Converter(mode="max", dataloader=_loader(inputs), readout="spike_count")(ann)
    lambdas = snn.meta["ann2snn"]["lambdas"]
    # the skip carries spikes of scale λ_h into a join at scale λ_y: one explicit factor λ_h / λ_y
    scales = [m for m in snn.modules() if isinstance(m, Scale)]
    assert len(scales) == 1
    lam_h, lam_y = lambdas["if_relu"], lambdas["if_relu_2"]
    assert scales[0].scale.item() == pytest.approx(lam_h / lam_y, rel=1e-6) and lam_y / lam_h > 4
    err = _normalised_rate_error(ann, snn, inputs)
    assert err <= 0.01, f"SNN rate vs ANN/output_scale: {err:.4f} at T={T_LONG}"

    path = export_nir(snn, tmp_path / "res.nir", T=T_LONG)
    graph = nir.read(path)
    (scale_node,) = [n for n in graph.nodes.values() if isinstance(n, nir.Scale)]
    assert np.allclose(scale_node.scale, lam_h / lam_y, rtol=1e-6) and scale_node.scale.shape == (4, 6, 6)
    back = import_nir(path)
    assert _normalised_rate_error(ann, back, inputs) == pytest.approx(err, abs=0)
    report = compare_spike_counts(snn, back, inputs, 200)
    assert report.equal and report.layers == 3


def test_residual_without_reconciliation_would_be_wrong(inputs):
    """The Scale factor matters: removing it changes the SNN's answer by far more than 0.01."""
    ann = _block("+", inputs)
    snn = Converter(mode="max", dataloader=_loader(inputs), readout="spike_count")(ann)
    good = _normalised_rate_error(ann, snn, inputs, T=300)
    for m in snn.modules():
        if isinstance(m, Scale):
            m.scale.fill_(1.0)
    bad = _normalised_rate_error(ann, snn, inputs, T=300)
    assert good <= 0.01 < 0.05 <= bad


class DownsampleBlock(nn.Module):
    """A block whose shortcut is a 1×1 conv (its factor folds into that conv: no Scale node)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(13)
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv_a = nn.Conv2d(4, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(6, 6, 3, padding=1)
        self.short = nn.Conv2d(4, 6, 1)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        h = F.relu(self.conv0(x))
        y = F.relu(self.conv_b(F.relu(self.conv_a(h))) + self.short(h))
        return F.relu(self.fc(F.avg_pool2d(y, 2).flatten(1)))


def test_projection_shortcut_factor_is_folded_into_weights(inputs, tmp_path):
    ann = DownsampleBlock().eval()
    snn = Converter(mode="max", dataloader=_loader(inputs), readout="spike_count")(ann)
    assert not any(isinstance(m, Scale) for m in snn.modules())
    assert _normalised_rate_error(ann, snn, inputs) <= 0.01
    back = import_nir(export_nir(snn, tmp_path / "down.nir", T=100))
    assert compare_spike_counts(snn, back, inputs, 100).equal


class Inception(nn.Module):
    """Two parallel branches concatenated on channels, at different scales."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(14)
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 3, 1)
        self.right = nn.Conv2d(4, 5, 3, padding=1)
        with torch.no_grad():
            self.right.weight.mul_(5.0)
        self.fc = nn.Linear(8 * 6 * 6, 6)

    def forward(self, x):
        h = F.relu(self.conv0(x))
        y = torch.cat([F.relu(self.left(h)), torch.relu(self.right(h))], dim=1)
        return F.relu(self.fc(torch.flatten(y, 1)))


def test_concat_net_matches_ann_and_reloads_from_nir_with_identical_spike_counts(inputs, tmp_path):
    ann = Inception().eval()
    snn = Converter(mode="max", dataloader=_loader(inputs), readout="spike_count")(ann)
    assert _normalised_rate_error(ann, snn, inputs) <= 0.01
    path = export_nir(snn, tmp_path / "cat.nir", T=64)
    graph = nir.read(path, type_check=True)
    embeds = sorted(k for k in graph.nodes if "_embed" in k)
    assert embeds == ["cat_embed0", "cat_embed1"]
    assert graph.nodes["cat_embed1"].weight.shape == (8, 5, 1, 1)
    assert graph.nodes["cat_embed1"].weight[3:, :, 0, 0].tolist() == np.eye(5).tolist()
    back = import_nir(path)
    report = compare_spike_counts(snn, back, inputs, 64)
    assert report.equal and report.max_count_diff == 0 and report.layers == 4


def test_concat_on_a_spatial_axis_is_refused_by_export_naming_the_node(inputs, tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            h = F.relu(self.conv(x))
            return torch.cat([h, h], dim=3)

    snn = Converter(mode="max", dataloader=_loader(inputs), readout="spike_count")(Net().eval())
    assert simulate(snn, inputs[:2], 4).outputs.shape == (4, 2, 2, 6, 12)
    from exporters import ExportError

    with pytest.raises(ExportError, match=r"'cat' \(torch.cat on axis 3\)"):
        export_nir(snn, tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()
