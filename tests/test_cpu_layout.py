"""Channels-last feature maps, spike counts kept in the scan, donated states (the CPU speed path).

The multi-step simulator keeps 2-d feature maps channels-last on the CPU and scans IF layers in
memory order; none of it may change a spike, a potential or a count.
"""

import pytest
import torch
from torch import nn

from simulator import IFNeuron, IFParams, IFState, if_advance, if_scan_bool, simulate, spike_ops
from simulator.spike_ops import Spikes


def _params(channels: int) -> IFParams:
    # per-channel thresholds, so that the flattening order of the threshold matters
    layer = IFNeuron(v_threshold=torch.linspace(0.5, 1.5, channels).reshape(channels, 1, 1), v_init=0.5)
    return layer.params()


@pytest.mark.parametrize("constant", [False, True])
def test_a_channels_last_current_gives_the_same_spikes_potential_and_count(constant):
    torch.manual_seed(0)
    p = _params(6)
    x = torch.rand(5, 3, 6, 4, 7) * 1.5 - 0.2  # [T, B, C, H, W]
    if constant:
        x = x[0]
    v0 = torch.rand(3, 6, 4, 7)
    state = IFState(v0, torch.randint(0, 9, (3, 6, 4, 7), dtype=torch.int32))
    steps = 5 if constant else None
    ref_s, ref = if_advance(x, state, p, steps=steps)
    # the same values, stored channels-last (each [B, C, H, W] slice)
    if constant:
        xc = x.contiguous(memory_format=torch.channels_last)
    else:
        xc = torch.empty_strided(x.shape, _cl_strides(x.shape)).copy_(x)
    assert not xc.is_contiguous() and torch.equal(xc, x)
    s, new = if_advance(xc, state, p, steps=steps)
    assert torch.equal(s, ref_s) and s.shape == ref_s.shape and s.dtype == torch.bool
    assert torch.equal(new.v, ref.v) and torch.equal(new.count, ref.count)
    assert new.v.is_contiguous(memory_format=torch.channels_last)  # scanned in memory order, no copy back
    assert int(ref_s.sum()) > 0 and not torch.equal(ref.count, state.count)  # the case is not empty


def _cl_strides(shape: torch.Size) -> tuple[int, ...]:
    """Strides of ``[T, B, C, H, W]`` whose every ``[B, C, H, W]`` slice is channels-last."""
    t, b, c, h, w = shape
    return (b * c * h * w, c * h * w, 1, w * c, c)


def test_channels_last_view_helper_layout():
    x = torch.empty_strided((5, 3, 6, 4, 7), _cl_strides(torch.Size((5, 3, 6, 4, 7))))
    assert x[0].is_contiguous(memory_format=torch.channels_last) and not x[0].is_contiguous()


def test_donated_state_is_updated_in_place_and_a_kept_one_is_not():
    torch.manual_seed(1)
    p = _params(4)
    x = torch.rand(3, 2, 4, 5, 5)
    state = IFState(torch.rand(2, 4, 5, 5), torch.zeros(2, 4, 5, 5, dtype=torch.int32))
    before = (state.v.clone(), state.count.clone())
    _, kept = if_advance(x, state, p)
    assert torch.equal(state.v, before[0]) and torch.equal(state.count, before[1])
    _, donated = if_advance(x, state, p, donate=True)
    assert torch.equal(donated.v, kept.v) and torch.equal(donated.count, kept.count)
    assert donated.v.data_ptr() == state.v.data_ptr() and donated.count.data_ptr() == state.count.data_ptr()
    # an expanded (shared) potential is never written through, even when donated
    shared = IFState(torch.tensor(0.25).expand(2, 4, 5, 5), torch.zeros(2, 4, 5, 5, dtype=torch.int32))
    _, out = if_advance(x, shared, p, donate=True)
    assert float(shared.v[0, 0, 0, 0]) == 0.25 and torch.equal(out.v, if_advance(x, shared, p)[1].v)


@pytest.mark.parametrize("steps", [1, 7, 300])
def test_the_count_kept_in_the_scan_equals_the_spikes_summed(steps):
    torch.manual_seed(2)
    p = _params(3)
    x = torch.rand(steps, 2, 3, 40, 40)  # 9,600 neurons: one block; 300 steps: the int32 path
    state = IFState(torch.zeros(2, 3, 40, 40), torch.full((2, 3, 40, 40), 5, dtype=torch.int32))
    s, new = if_advance(x, state, p)
    assert torch.equal(new.count, 5 + s.sum(0, dtype=torch.int32))
    assert int(new.count.max()) > (255 if steps == 300 else 5)
    spikes, v = if_scan_bool(x, state.v, p)
    assert torch.equal(spikes, s) and torch.equal(v, new.v)


def test_spikes_feed_convolutions_channels_last_on_the_cpu():
    spikes = Spikes(torch.rand(4, 3, 5, 5) > 0.5, torch.float32)
    f = spikes.to_float()
    assert f.is_contiguous(memory_format=torch.channels_last) and torch.equal(f, spikes.data.float())
    flat = Spikes(torch.rand(4, 7) > 0.5, torch.float32).to_float()
    assert flat.is_contiguous()


def _cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        IFNeuron(v_init=0.5),
        nn.Conv2d(8, 8, 3, padding=1),
        IFNeuron(v_init=0.5),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 4, 3, padding=1),
        IFNeuron(v_init=0.5),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def test_channels_last_simulation_equals_the_nchw_one_in_float64(monkeypatch):
    net = _cnn().double()
    x = torch.rand(6, 2, 8, 8, dtype=torch.float64) * 2
    fast = simulate(net, x, 9, record=True)
    monkeypatch.setattr(spike_ops, "CHANNELS_LAST_ON_CPU", False)
    plain = simulate(net, x, 9, record=True)
    assert torch.equal(fast.outputs, plain.outputs)
    assert all(torch.equal(fast.spikes[k], plain.spikes[k]) for k in plain.spikes)
    assert sum(int(s.sum()) for s in plain.spikes.values()) > 100


class _ViewNet(nn.Module):
    """``.view(B, -1)`` after a convolution: of spikes (``spikes=True``) or of a float current."""

    def __init__(self, spikes: bool) -> None:
        super().__init__()
        self.spikes = spikes
        self.c1, self.r1 = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.r1(self.c1(x))
        x = self.r2(self.c2(x)) if self.spikes else self.c2(x)
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("spikes", [True, False])
def test_a_view_after_a_convolution_runs_multi_step_as_single_step(spikes):
    # the ANN's maps are contiguous, so .view(B, -1) works there; the simulator's are
    # channels-last, where the same view needs a copy (it used to raise "view size is not compatible")
    import converter

    torch.manual_seed(0)
    x = torch.rand(20, 1, 8, 8)
    snn = converter.convert(_ViewNet(spikes).eval(), "99.9%", [x])
    single = simulate(snn, x, T=8, execution="single").outputs
    multi = simulate(snn, x, T=8).outputs
    assert torch.allclose(multi, single, atol=1e-5) and single.abs().sum() > 0


def test_view_or_reshape_copies_only_where_a_view_is_impossible():
    from simulator.graph import view_or_reshape

    x = torch.rand(2, 3, 4, 5)
    assert view_or_reshape(x, 2, -1).data_ptr() == x.data_ptr()  # a true view where one exists
    cl = x.contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError):
        cl.view(2, -1)
    assert torch.equal(view_or_reshape(cl, 2, -1), x.reshape(2, -1))
    assert torch.equal(view_or_reshape(cl, size=(2, -1)), x.reshape(2, -1))  # the keyword form
    assert torch.equal(view_or_reshape(cl, (2, -1)), x.reshape(2, -1))  # a tuple
