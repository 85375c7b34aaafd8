"""The compiled CPU kernels (``simulate(cpu_kernels="compiled")``, :mod:`simulator.compiled`)."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from ann2snn.cli import main
from converter import Converter
from examples.cifar10 import ResNet20
from exporters import export_nir
from simulator import IFNeuron, Scale, compiled, executor, simulate
from simulator.kernels import scan_flat
from tests.nets import randomize_bn

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="the compiled kernels need a C compiler"
)


def _scan_both(x, v0, threshold, strict, count, steps):
    """(torch scan results, compiled scan results, whether the compiled kernel ran)."""
    results = []
    for use in (False, True):
        v, out = v0.clone(), torch.empty(steps, v0.numel(), dtype=torch.bool)
        c = None if count is None else count.clone()
        if use:
            ran = compiled.scan_if(x, v, out, threshold, True, strict, None, c)
        else:
            scan_flat(x, v, out, threshold, torch.tensor(0.0), True, strict, count=c)
        results.append((v, out, c))
    return results[0], results[1], ran


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("constant", [False, True])
def test_compiled_if_scan_is_bitwise_the_torch_scan(strict, per_neuron, constant):
    g = torch.Generator().manual_seed(5)
    m, steps = 70_001, 9  # not a multiple of either kernel's block
    x = torch.randn(1 if constant else steps, m, generator=g) * 0.7
    x[:, :50] = 0.25  # currents that land exactly on the threshold (0.5 + 2 x 0.25 = 1)
    v0 = torch.rand(m, generator=g)
    v0[:50] = 0.5
    threshold = (torch.rand(m, generator=g) + 0.5) if per_neuron else torch.tensor(1.0)
    if per_neuron:
        threshold[:50] = 1.0
    count = torch.randint(0, 5, (m,), dtype=torch.int32, generator=g)
    (v, out, c), (v2, out2, c2), ran = _scan_both(x, v0, threshold, strict, count, steps)
    assert ran
    assert torch.equal(out, out2) and torch.equal(c, c2)
    assert torch.equal(v.view(torch.int32), v2.view(torch.int32))  # bitwise, signed zeros too
    assert 0.05 < out.float().mean() < 0.6  # the test sees spikes and silences
    assert bool(out[1, :50].all()) is not strict and bool(out[1, :50].any()) is not strict  # V = 1.0 at step 2


def test_compiled_if_scan_declines_what_it_does_not_cover():
    x, v, out = torch.rand(2, 8), torch.zeros(8), torch.empty(2, 8, dtype=torch.bool)
    th = torch.tensor(1.0)
    assert not compiled.scan_if(x, v, out, th, False, False, None, None)  # reset to a value
    assert not compiled.scan_if(x, v, out, th, True, False, (-4.0, 3.0), None)  # a clamp
    assert not compiled.scan_if(x.double(), v.double(), out, th.double(), True, False, None, None)
    assert not compiled.scan_if(x, v, out, th, True, False, None, torch.zeros(8, dtype=torch.int64))
    assert torch.equal(v, torch.zeros(8))


def test_table_entries_are_the_sums_of_the_weights_of_the_set_bits():
    w = torch.randn(16, 16, 3, 3, generator=torch.Generator().manual_seed(1))
    tab = compiled.table(w)
    assert tab.shape == (9, 2, 256, 16)
    wk = w.permute(2, 3, 1, 0).reshape(9, 16, 16).double()  # [tap, C_in, C_out]
    for tap, group, pattern in [(0, 0, 0), (4, 1, 255), (8, 0, 0b10100101), (3, 1, 1)]:
        bits = [group * 8 + i for i in range(8) if pattern >> i & 1]
        expected = wk[tap, bits].sum(0) if bits else torch.zeros(16, dtype=torch.float64)
        torch.testing.assert_close(tab[tap, group, pattern].double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "bias"),
    [
        (16, 16, 3, 1, 1, True),
        (8, 32, 3, 2, 1, True),
        (16, 32, 1, 2, 0, False),
        (80, 64, 3, 1, 1, True),  # 10 channel groups, one 64-channel block
        (24, 80, (3, 1), (1, 2), (1, 0), True),  # 80 outputs: a block of 64, then one of 16
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_lookup_convolution_matches_conv2d(c_in, c_out, kernel, stride, padding, bias, channels_last):
    torch.manual_seed(2)
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias)
    spikes = torch.rand(6, c_in, 11, 9) < 0.3
    if channels_last:
        spikes = spikes.contiguous(memory_format=torch.channels_last)
    out = compiled.lookup_conv2d(spikes, conv)
    assert out is not None
    with torch.no_grad():
        expected = conv(spikes.float())
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < 1e-5
    assert out.is_contiguous(memory_format=torch.channels_last)
    conv.weight.data.mul_(2)  # new weights: a new table
    with torch.no_grad():
        assert (compiled.lookup_conv2d(spikes, conv) - conv(spikes.float())).abs().max() < 2e-5


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(12, 16, 3),  # C_in not a multiple of 8
        nn.Conv2d(16, 20, 3),  # C_out not a multiple of 16
        nn.Conv2d(16, 16, 3, groups=2),
        nn.Conv2d(16, 16, 3, dilation=2),
        nn.Conv2d(16, 16, 3, padding=1, padding_mode="circular"),
        nn.Conv2d(16, 16, 3, padding="same"),
        nn.Conv2d(128, 128, 3),  # an 18 MiB table
    ],
)
def test_lookup_convolution_declines_layers_it_does_not_cover(conv):
    assert compiled.lookup_conv2d(torch.rand(2, conv.in_channels, 8, 8) < 0.5, conv) is None


def test_lookup_convolution_declines_float64():
    conv = nn.Conv2d(16, 16, 3).double()
    assert compiled.lookup_conv2d(torch.rand(2, 16, 8, 8) < 0.5, conv, torch.float64) is None


@pytest.fixture(scope="module")
def resnet_snn():
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(17))
    torch.manual_seed(18)
    ann = randomize_bn(ResNet20(widths=(16, 16, 32), blocks=1)).eval()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)
    return Converter(dataloader=loader, channel_wise=True)(ann), x


def _counting(monkeypatch, name):
    calls = []
    original = getattr(executor, name)

    def counting(*args):
        out = original(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(executor, name, counting)
    return calls


def test_resnet_shaped_snn_with_compiled_kernels_matches_torch(resnet_snn, monkeypatch):
    snn, x = resnet_snn
    fused, lookups = _counting(monkeypatch, "fused_if"), _counting(monkeypatch, "lookup_conv2d")
    a = simulate(snn, x, 16)
    assert not fused and not lookups  # the default runs no compiled kernel
    b = simulate(snn, x, 16, cpu_kernels="compiled")
    # every IF layer but the first (fed by the analog input) runs fused with its current's
    # convolutions (and its block's shortcut) in every chunk; no convolution is left on its own
    fusable = sum(isinstance(m, IFNeuron) for m in snn.modules()) - 1
    assert all(fused) and len(fused) >= fusable and len(fused) % fusable == 0
    assert not lookups
    assert a.spike_counts.keys() == b.spike_counts.keys()
    for name, count in a.spike_counts.items():
        total = float(count.sum())
        assert total > 0
        assert abs(float(b.spike_counts[name].sum()) - total) <= 0.002 * total + 2, name
    assert (a.outputs - b.outputs).abs().max() < 0.05 * a.outputs.abs().max()
    # the compiled kernels' spikes depend neither on the chunking nor on the batch size (the
    # readout's Linear, run by PyTorch, may round differently for another number of rows)
    for chunk in (1, 3, None):
        c = simulate(snn, x, 16, cpu_kernels="compiled", time_chunk=chunk)
        assert all(torch.equal(c.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts), chunk
        assert (c.outputs - b.outputs).abs().max() < 1e-5
    halves = [simulate(snn, xb, 16, cpu_kernels="compiled") for xb in x.split(8)]
    for k in a.spike_counts:
        assert torch.equal(torch.cat([h.spike_counts[k] for h in halves]), b.spike_counts[k]), k


def test_fused_layers_record_their_trains_and_exit_early(resnet_snn):
    snn, x = resnet_snn
    full = simulate(snn, x, 12, cpu_kernels="compiled", record=True)
    for name, train in full.spikes.items():
        assert train.shape[:2] == (12, 16)
        assert torch.equal(train.sum(0, dtype=torch.int32), full.spike_counts[name].to(torch.int32)), name
    early = simulate(snn, x, 12, cpu_kernels="compiled", early_exit=2)
    assert early.steps_used is not None and int(early.steps_used.min()) < 12


def test_a_current_the_kernels_do_not_cover_runs_as_torch_bitwise(monkeypatch):
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), IFNeuron(v_init=0.5),
        nn.Conv2d(16, 20, 3, padding=1), IFNeuron(v_init=0.5),  # C_out 20: not covered
        nn.Conv2d(20, 16, 3, padding=1), IFNeuron(v_init=0.5),  # C_in 20: not covered
    )  # fmt: skip
    fused = _counting(monkeypatch, "fused_if")
    x = torch.rand(4, 3, 8, 8)
    a = simulate(net, x, 10, warn_silent=False)
    b = simulate(net, x, 10, cpu_kernels="compiled", warn_silent=False)
    assert fused and not any(fused)  # tried and declined
    assert torch.equal(a.outputs, b.outputs)
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)
    assert all(float(c.sum()) > 0 for c in a.spike_counts.values())


def test_compiled_kernels_on_a_net_without_convolutions_are_bitwise_torch():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(20, 300), IFNeuron(v_init=0.5), nn.Linear(300, 10), IFNeuron(spike_rule=">"))
    x = torch.rand(7, 20)
    a = simulate(net, x, 12, warn_silent=False)
    b = simulate(net, x, 12, cpu_kernels="compiled", warn_silent=False)
    assert torch.equal(a.outputs, b.outputs)
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)
    assert float(a.outputs.sum()) > 0


def test_cpu_kernels_errors():
    net = nn.Sequential(nn.Linear(2, 3), IFNeuron())
    with pytest.raises(ValueError, match=r"cpu_kernels must be one of \('torch', 'compiled'\), got 'fast'"):
        simulate(net, torch.rand(1, 2), 4, cpu_kernels="fast")
    with pytest.raises(ValueError, match="multi-step execution"):
        simulate(net, torch.rand(1, 2), 4, cpu_kernels="compiled", execution="single")


def test_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(compiled, "_library", None)
    monkeypatch.setenv("ANN2SNN_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(
        compiled.KernelsUnavailable,
        match=r"\$CC='no-such-cc' is not an executable on the PATH.*cpu_kernels='torch' \(CLI: --cpu-kernels torch\)",
    ):
        simulate(nn.Sequential(nn.Linear(2, 3), IFNeuron()), torch.rand(1, 2), 4, cpu_kernels="compiled")
    assert not list(tmp_path.iterdir())


def test_kernels_are_compiled_into_the_cache_once(monkeypatch, tmp_path):
    monkeypatch.setattr(compiled, "_library", None)
    monkeypatch.setenv("ANN2SNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    compiled.library()
    stamp, built = sorted((tmp_path / "cache").iterdir())  # no temporary file left beside them
    assert built.name.startswith("ann2snn_kernels-") and built.suffix == ".so"
    assert stamp == built.with_suffix(".sha256") and stamp.read_text() == compiled._digest(built)
    monkeypatch.setattr(compiled, "_library", None)
    stamp = built.stat().st_mtime_ns
    compiled.library()
    assert built.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_cli_simulate_with_compiled_kernels(resnet_snn, tmp_path):
    snn, x = resnet_snn
    path = export_nir(snn, tmp_path / "r.nir", T=8)
    data = tmp_path / "d.npz"
    np.savez(data, x=x.numpy(), y=np.arange(16) % 10)
    outs = []
    for kind in ("torch", "compiled"):
        args = ["simulate", str(path), "--data", str(data), "--cpu-kernels", kind, "--quiet"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        outs.append(result.output)
    assert "16 samples" in outs[1] and "accuracy" in outs[1]
    bad = CliRunner().invoke(main, ["simulate", str(path), "--data", str(data), "--cpu-kernels", "fast"])
    assert bad.exit_code == 2 and "'fast' is not one of 'torch', 'compiled'" in bad.output


def test_lookup_matches_functional_conv_on_real_spike_statistics():
    # spikes drawn per channel at ResNet-20-like rates (4-23 %)
    g = torch.Generator().manual_seed(9)
    rates = torch.linspace(0.04, 0.23, 32).reshape(1, 32, 1, 1)
    spikes = torch.rand(20, 32, 16, 16, generator=g) < rates
    conv = nn.Conv2d(32, 64, 3, stride=2, padding=1)
    out = compiled.lookup_conv2d(spikes, conv)
    with torch.no_grad():
        expected = F.conv2d(spikes.float(), conv.weight, conv.bias, stride=2, padding=1)
    assert out is not None and (out - expected).abs().max() < 1e-5


class _Join(nn.Module):
    """conv -> IF -> (conv a + term b) -> IF, ``b`` a convolution or a Scale."""

    def __init__(self, b: nn.Module, bias: bool = True) -> None:
        super().__init__()
        self.c0, self.i0 = nn.Conv2d(3, 16, 3, padding=1), IFNeuron(v_init=0.5)
        self.a, self.b, self.i1 = nn.Conv2d(16, 16, 3, padding=1, bias=bias), b, IFNeuron(v_init=0.5)

    def forward(self, x):
        h = self.i0(self.c0(x))
        return self.i1(self.a(h) + self.b(h))


def _close_counts(a, b, tolerance=0.002):
    for name, count in a.spike_counts.items():
        total = float(count.sum())
        assert total > 0 and abs(float(b.spike_counts[name].sum()) - total) <= tolerance * total + 2, name


@pytest.mark.parametrize("b", [nn.Conv2d(16, 16, 1), Scale(0.7)], ids=["conv", "scale"])
def test_a_float64_default_dtype_does_not_change_the_fused_current(b, monkeypatch):
    torch.manual_seed(0)
    net, x = _Join(b, bias=False), torch.rand(2, 3, 8, 8)  # the first term has no bias: a zero one is made
    fused = _counting(monkeypatch, "fused_if")
    torch.set_default_dtype(torch.float64)
    try:
        a = simulate(net, x, 8, time_chunk=2, warn_silent=False)
        c = simulate(net, x, 8, time_chunk=2, warn_silent=False, cpu_kernels="compiled")
    finally:
        torch.set_default_dtype(torch.float32)
    assert any(fused)
    _close_counts(a, c)


def test_a_scale_of_shape_c_broadcasts_along_w_as_torch_does(monkeypatch):
    torch.manual_seed(1)
    net, x = _Join(Scale(torch.linspace(0.1, 3.0, 16))), torch.rand(2, 3, 16, 16)  # W == C: it broadcasts
    fused = _counting(monkeypatch, "fused_if")
    a = simulate(net, x, 8, warn_silent=False)
    b = simulate(net, x, 8, warn_silent=False, cpu_kernels="compiled")
    assert fused and not fused[-1]  # the join declined: its Scale is not per channel
    _close_counts(a, b)
    with pytest.raises(RuntimeError, match="must match"):
        simulate(net, torch.rand(2, 3, 8, 8), 8, warn_silent=False, cpu_kernels="compiled")  # W = 8: as torch


def test_hooked_layers_run_as_themselves():
    torch.manual_seed(2)
    net, x = _Join(nn.Conv2d(16, 16, 1)), torch.rand(2, 3, 8, 8)
    calls = []
    net.a.register_forward_pre_hook(lambda m, args: calls.append(1) or (torch.zeros_like(args[0]),))
    a = simulate(net, x, 6, warn_silent=False)
    b = simulate(net, x, 6, warn_silent=False, cpu_kernels="compiled")
    assert len(calls) == 2 * 2  # both runs call the hook, in each of their 2 chunks
    _close_counts(a, b)


def test_an_imported_nir_resnet_runs_fused(resnet_snn, tmp_path, monkeypatch):
    from exporters import import_nir

    snn, x = resnet_snn
    back = import_nir(export_nir(snn, tmp_path / "r.nir", T=8))
    fused = _counting(monkeypatch, "fused_if")
    a, b = simulate(back, x, 8), simulate(back, x, 8, cpu_kernels="compiled")
    assert fused and all(fused)  # per-neuron r of ones and per-neuron Scales of equal values are taken
    _close_counts(a, b)


def test_a_damaged_cached_library_is_rebuilt_not_loaded(tmp_path):
    import subprocess
    import sys

    script = (
        "import torch; from torch import nn; from simulator import IFNeuron, simulate\n"
        "net = nn.Sequential(nn.Conv2d(8, 16, 3), IFNeuron(), nn.Conv2d(16, 16, 3), IFNeuron())\n"
        "print(float(simulate(net, torch.rand(2, 8, 9, 9), 4, cpu_kernels='compiled').outputs.sum() >= 0))\n"
    )
    env = {**__import__("os").environ, "ANN2SNN_CACHE": "cache"}
    run = lambda: subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    first = run()  # a relative cache folder: built and loaded from its absolute path
    assert first.returncode == 0, first.stderr
    (built,) = (tmp_path / "cache").glob("*.so")
    with open(built, "r+b") as f:
        f.truncate(4096)  # loading this would kill the process (SIGBUS)
    second = run()
    assert second.returncode == 0, second.stderr
    assert built.stat().st_size > 4096  # rebuilt
