"""Channel-wise scales at residual joins: IF(branch + shortcut) layers and identity shortcuts (issue 14)."""

import nir
import pytest
import torch
from torch.fx.passes.shape_prop import ShapeProp

from converter import Converter
from converter.channelwise import channel_normalize
from converter.fold_bn import fold_batchnorm
from converter.normalize import normalize
from converter.trace import trace
from examples.cifar10 import ResNet20
from exporters import compare_spike_counts, export_nir, import_nir
from simulator import Scale, simulate
from tests.nets import randomize_bn

X = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(31))


def _resnet():
    torch.manual_seed(32)
    return randomize_bn(ResNet20(widths=(4, 6, 8), blocks=2))


# step 0.0: equal λ, no layer-wise Scale on the skip edges; first=1: the stem stays layer-wise
@pytest.mark.parametrize(("step", "first"), [(0.3, 0), (0.0, 0), (0.0, 1)])
def test_per_channel_factors_through_joins_keep_the_normalised_function(step, first):
    # layer scales and random per-channel ratios: every factor must cancel exactly
    gm = fold_batchnorm(trace(_resnet(), X[:1]))
    relus = [n.name for n in gm.graph.nodes if "relu" in n.name]
    normalised, _, _ = normalize(gm, {r: 1.0 + step * i for i, r in enumerate(relus)})
    assert sum(isinstance(m, Scale) for m in normalised.modules()) == (4 if step else 0)
    ShapeProp(normalised).propagate(X[:1])
    shapes = {n.name: n.meta["tensor_meta"].shape for n in normalised.graph.nodes}
    g = torch.Generator().manual_seed(33)
    ratios = {r: 0.1 + 0.9 * torch.rand(shapes[r][1], generator=g) for r in relus[first:]}
    channel_wise, done = channel_normalize(normalised, ratios, (3, 16, 16))
    assert done == relus[first:]  # the stem, every block's inner ReLU and every ReLU after an add
    with torch.no_grad():
        expected, got = normalised(X), channel_wise(X)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
    per_channel = [m for m in channel_wise.modules() if isinstance(m, Scale) and m.scale.numel() > 1]
    assert len(per_channel) == 4  # the four identity shortcuts (two blocks have projections)


def test_resnet_converts_channel_wise_everywhere_and_reloads_with_identical_spikes(tmp_path):
    ann = _resnet()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X), batch_size=16)
    snn = Converter(mode="max", dataloader=loader, channel_wise=True)(ann)
    meta = snn.meta["ann2snn"]
    assert meta["channel_wise_layers"] == list(meta["if_layers"])  # 13 of 13 (6 after adds)
    with torch.no_grad():
        target = ann(X)
    rate = simulate(snn, X, 2000, time_chunk=500).output_rates()[-1]
    assert (rate - target).abs().max().item() <= 0.05 * (target.max() - target.min()).item()
    path = export_nir(snn, tmp_path / "cw_resnet.nir", T=16)
    graph = nir.read(path)
    scales = [n for n in graph.nodes.values() if isinstance(n, nir.Scale)]
    assert scales and all(len({float(v) for v in s.scale[:, 0, 0]}) > 1 for s in scales)  # per channel
    report = compare_spike_counts(snn, import_nir(path), X[:8], 16)
    assert report.equal and report.layers == 13
