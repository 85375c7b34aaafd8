"""converter.fold_sum_pools: a sum/average pool folded into the Conv2d or Linear after it gives
identical spikes (integer and float SNNs), refusals name the pool, and convert --target loihi2
writes a file without pools that fits."""

import json

import nir
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from ann2snn.cli import main
from converter import PoolFoldError, fold_pool_into_conv, fold_pool_into_linear, fold_sum_pools, quantize
from exporters.targets import check_file
from simulator import IFNeuron, simulate
from simulator.graph import trace_snn
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "pool"),
    [
        ((12, 12), 3, 1, 0, (2, 2)),
        ((13, 11), 3, 2, 0, (2, 2)),
        ((12, 9), (2, 3), 1, 1, (3, 3)),
        ((8, 12), 1, 1, 0, (4, 2)),
    ],
)
def test_fold_pool_into_conv_equals_pool_then_conv(size, kernel, stride, padding, pool):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (3, 2, *size), generator=g).double()  # spikes
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = torch.randint(-63, 64, (4, 2, kh, kw), generator=g).double()
    pads = (padding, padding)
    reference = F.conv2d(F.avg_pool2d(x, pool, divisor_override=1), w, stride=stride, padding=pads)
    folded, s, p = fold_pool_into_conv(w, (stride, stride), pads, pool)
    assert folded.shape == (4, 2, kh * pool[0], kw * pool[1]) and s == (stride * pool[0], stride * pool[1])
    assert torch.equal(F.conv2d(x, folded, stride=s, padding=p), reference)  # integers: exactly


def test_fold_pool_into_linear_equals_pool_flatten_linear():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (5, 3, 7, 5), generator=g).double()  # 7x5 by 2x2: the last row and column dropped
    w = torch.randint(-63, 64, (4, 3 * 3 * 2), generator=g).double()
    reference = F.avg_pool2d(x, 2, divisor_override=1).flatten(1) @ w.T
    folded = fold_pool_into_linear(w, (3, 7, 5), (2, 2))
    assert folded.shape == (4, 3 * 7 * 5) and torch.equal(x.flatten(1) @ folded.T, reference)
    assert float(folded.reshape(4, 3, 7, 5)[:, :, 6, :].abs().sum()) == 0.0  # the dropped row reads nothing
    with pytest.raises(ValueError, match="the Linear takes 18 inputs, the pool gives 3 x 2 x 2 = 12"):
        fold_pool_into_linear(w, (3, 5, 5), (2, 2))


def _snn(pool: nn.Module, second: nn.Module | None = None, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        IFNeuron(1.0, v_init=0.5),
        pool,
        nn.Conv2d(4, 6, 3) if second is None else second,
        IFNeuron(1.0, v_init=0.5),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5),
        IFNeuron(1.0, v_init=0.5),
    )


def _spikes(gm, x, T=12):
    return simulate(gm, x, T, record=True, warn_silent=False).spikes


@pytest.mark.parametrize("integer", [False, True])
def test_folded_snn_gives_identical_spikes(integer):
    x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    gm = trace_snn(_snn(nn.AvgPool2d(2)))
    for layer in (gm.get_submodule("0"), gm.get_submodule("3"), gm.get_submodule("7")):
        layer.weight.data.mul_(3.0)  # enough current to spike in every layer
    if integer:
        gm = quantize(gm, 7, 18, calibration=x, calibration_T=12)
    folded = fold_sum_pools(gm, input_shape=(1, 16, 16))
    assert not any(isinstance(m, nn.AvgPool2d) for m in folded.modules())
    assert tuple(folded.get_submodule("3").weight.shape) == (6, 4, 6, 6)  # 3x3 after 2x2: 6x6, stride 2
    assert folded.get_submodule("3").stride == (2, 2)
    assert tuple(folded.get_submodule("7").weight.shape) == (
        5,
        6 * 5 * 5,
    )  # 5x5 pooled to 2x2, 1 row dropped
    assert folded.meta["ann2snn"]["folded_pools"] == {
        "2": {"into": "3", "kernel": [2, 2], "divisor": 1.0 if integer else 4.0},
        "5": {"into": "7", "kernel": [2, 2], "divisor": 1.0 if integer else 4.0},
    }
    ours, theirs = _spikes(gm, x), _spikes(folded, x)
    assert set(ours) == set(theirs)
    for name in ours:
        assert ours[name].sum() > 0 and torch.equal(ours[name], theirs[name]), name
    assert any(isinstance(m, nn.AvgPool2d) for m in gm.modules())  # the input is not changed


def test_a_pool_before_a_pool_folds_too():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2), nn.AvgPool2d(2), nn.Conv2d(2, 3, 2), IFNeuron()
    )
    folded = fold_sum_pools(trace_snn(net), input_shape=(1, 18, 18))
    assert tuple(folded.get_submodule("4").weight.shape) == (3, 2, 8, 8) and folded.get_submodule("4").stride == (4, 4)
    x = torch.rand(4, 1, 18, 18, generator=torch.Generator().manual_seed(3)) * 4
    assert torch.equal(_spikes(trace_snn(net), x)["5"], _spikes(folded, x)["5"])


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), IFNeuron()),
            r"pool '1' feeds '2' \(IFNeuron\): only a pool followed by a Conv2d, or by Flatten and a Linear, folds",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(3, 2), nn.Conv2d(2, 2, 3), IFNeuron()),
            r"pool '2': kernel \(3, 3\), stride \(2, 2\), padding \(0, 0\), ceil_mode False: only non-overlapping",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2, padding=1), nn.Conv2d(2, 2, 3), IFNeuron()),
            r"pool '2': kernel \(2, 2\), stride \(2, 2\), padding \(1, 1\)",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, padding=1), IFNeuron()),
            r"pool '2': the next Conv2d '3' is padded \(\(1, 1\)\) and the pool drops input rows or columns "
            r"\(13x13 by 2x2\)",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, dilation=2), IFNeuron()),
            r"pool '2': the next Conv2d '3' has dilation \(2, 2\)",
        ),
    ],
)
def test_unfoldable_pools_are_refused_by_name(net, message):
    with pytest.raises(PoolFoldError, match=message):
        fold_sum_pools(trace_snn(net), input_shape=(1, 15, 15))


def test_a_pool_with_two_consumers_is_refused():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.neuron, self.pool = nn.Conv2d(1, 2, 3), IFNeuron(), nn.AvgPool2d(2)
            self.a, self.b = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            p = self.pool(self.neuron(self.conv(x)))
            return self.a(p) + self.b(p)

    with pytest.raises(PoolFoldError, match=r"pool 'pool' feeds 2 nodes \('a' \(Conv2d\), 'b' \(Conv2d\)\)"):
        fold_sum_pools(trace_snn(Two()), input_shape=(1, 10, 10))
    with pytest.raises(PoolFoldError, match="unknown input shape"):
        fold_sum_pools(trace_snn(Two()))


def test_convert_target_loihi2_folds_the_pools_and_fits(tmp_path):
    checkpoints = write_checkpoints(tmp_path / "checkpoints")
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "4"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*args, "--target", "loihi2", "--target-bias", "keep", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    path = out / "plain_p99.9_T4.nir"
    report = check_file(path, "loihi2")
    assert report.fits, [v.line() for v in report.violations]
    graph = nir.read(path)
    assert not any(isinstance(n, (nir.SumPool2d, nir.AvgPool2d)) for n in graph.nodes.values())
    kernels = [tuple(n.weight.shape[2:]) for n in graph.nodes.values() if isinstance(n, nir.Conv2d)]
    assert kernels == [(3, 3), (6, 6), (6, 6)]
    assert json.loads(str(graph.metadata["folded_pools"]))["network.3"] == {
        "into": "network.4",
        "kernel": [2, 2],
        "divisor": 1.0,
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"][0]["status"] == "converted" and summary["rows"][0]["round_trip"] == "equal"
