"""Multi-step execution: same spikes as single-step, recording, early exit, hoisting."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ann2snn.zoo import load_embedded, load_mnist_cnn
from converter import Converter
from simulator import IFNeuron, IFParams, IFState, classify, if_advance, if_scan_bool, if_step, simulate
from simulator.spike_ops import SPIKE_OPS, Spikes


@pytest.fixture(scope="module")
def seed_snn():
    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").subset(300).loader(300))(load_mnist_cnn())
    return snn, load_embedded("test").subset(40)


class Residual(nn.Module):
    """IF outputs added (residual), concatenated, pooled; a skip from the constant input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.skip, self.conv3 = nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.if1, self.if2 = IFNeuron(0.5), IFNeuron(torch.rand(4, 1, 1) + 0.3)
        self.if3, self.if4 = IFNeuron(0.7, v_init=0.5), IFNeuron(0.4, spike_rule=">")

    def forward(self, x):
        a = self.if1(self.conv1(x))
        b = self.if2(self.conv2(a))
        c = self.if3(self.conv3(a + b) + self.skip(x))
        d = F.avg_pool2d(torch.cat([a, c], 1), 2)
        return self.if4(self.fc(torch.flatten(d, 1)))


def _fraction_differing(a, b) -> float:
    diff = sum(int((a.spike_counts[k] != b.spike_counts[k]).sum()) for k in a.spike_counts)
    return diff / sum(c.numel() for c in a.spike_counts.values())


def _identical(a, b) -> bool:
    return (
        a.spike_counts.keys() == b.spike_counts.keys()
        and all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)
        and torch.equal(a.outputs, b.outputs)
    )


def test_seed_cnn_multi_and_single_step_identical_in_float64(seed_snn):
    snn, data = seed_snn
    snn64, x = snn.double(), data.images[:8].double()
    try:
        multi, single = simulate(snn64, x, 20, time_chunk=8), simulate(snn64, x, 20, execution="single")
    finally:
        snn.float()
    assert len(multi.spike_counts) == 3  # three IF layers; the fourth ReLU is the membrane readout
    assert _identical(multi, single)
    assert multi.readout == "membrane" and torch.equal(multi.outputs, single.outputs)


def _states(net) -> dict:
    return {name: m.state for name, m in net.named_modules() if isinstance(m, IFNeuron)}


@pytest.mark.parametrize("early_exit", [None, 3])
def test_both_executions_leave_the_same_if_state_on_every_layer(early_exit):
    net = Residual().double()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    multi = simulate(net, x, 17, time_chunk=5, early_exit=early_exit)
    multi_states = _states(net)
    single = simulate(net, x, 17, execution="single")
    single_states = _states(net)
    assert multi_states.keys() == single_states.keys() == multi.spike_counts.keys()
    for name, state in multi_states.items():
        assert isinstance(state, IFState) and isinstance(single_states[name], IFState)
        assert state.count.dtype == torch.int32 and state.v.shape == state.count.shape == (6, *state.v.shape[1:])
        assert torch.equal(state.count.to(state.v.dtype), multi.spike_counts[name])
        if early_exit is None:  # with early exit only the samples still running are equal
            assert torch.equal(state.v, single_states[name].v)
            assert torch.equal(state.count, single_states[name].count)
    assert early_exit is None or (multi.steps_used < 17).any()
    if early_exit is None:
        assert _identical(multi, single)


def test_after_early_exit_each_sample_keeps_its_state_at_the_end_of_its_exit_chunk():
    net = Residual().double()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    early = simulate(net, x, 17, time_chunk=5, early_exit=3)
    states = _states(net)
    assert (early.steps_used < 17).any()
    for b, used in enumerate(early.steps_used.tolist()):
        end = min(17, -(-used // 5) * 5)  # the end of the chunk in which the sample exited
        simulate(net, x[b : b + 1], end, time_chunk=5)
        for name, state in _states(net).items():
            assert torch.equal(states[name].v[b], state.v[0]) and torch.equal(states[name].count[b], state.count[0])


def test_forward_chunk_by_chunk_is_if_advance_from_the_initial_state():
    layer = IFNeuron(torch.tensor([0.5, 0.9, 1.3]), v_init=0.25)
    x = torch.rand(11, 4, 3, generator=torch.Generator().manual_seed(4))  # [T, B, 3]
    state = layer.initial_state(x[0])
    assert torch.equal(state.v, (0.25 * layer.v_threshold).expand(4, 3)) and not state.count.any()
    spikes, state = if_advance(x, state, layer.params())
    for steps in ((4, 1, 6), (11,)):  # forward with the time axis folded into the batch
        layer.reset_state()
        got, t0 = [], 0
        for n in steps:
            layer.steps = n
            got.append(layer(x[t0 : t0 + n].reshape(n * 4, 3)).reshape(n, 4, 3))
            t0 += n
        assert torch.equal(torch.cat(got), spikes.float())
        assert torch.equal(layer.state.v, state.v) and torch.equal(layer.state.count, state.count)
        assert torch.equal(layer.v, state.v) and torch.equal(layer.spike_count, state.count.float())


def test_if_advance_does_not_modify_the_state_passed_in():
    p = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0))
    before = IFState(torch.full((2,), 0.5), torch.zeros(2, dtype=torch.int32))
    _, after = if_advance(torch.tensor([0.75, 0.25]), before, p, steps=3)
    assert before.v.tolist() == [0.5, 0.5] and before.count.tolist() == [0, 0]
    assert after.count.tolist() == [2, 1] and after.v.tolist() == pytest.approx([0.75, 0.25])
    multi = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0), spike_rule="multi")
    spikes, after = if_advance(
        torch.tensor([2.5]), IFState(torch.zeros(1), torch.zeros(1, dtype=torch.int32)), multi, 2
    )
    assert spikes.flatten().tolist() == [2.0, 3.0] and after.count.tolist() == [5] and after.v.tolist() == [0.0]


@pytest.mark.parametrize("rule", [">=", "multi", "signed"])
def test_a_state_of_another_batch_size_is_refused_with_the_fix_named(rule):
    p = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0), spike_rule=rule)
    state = IFState(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"potential has shape \(2, 4\) but one step of the input has shape \(3, 4\)"):
        if_advance(torch.rand(5, 3, 4), state, p)
    with pytest.raises(ValueError, match="spike count has shape"):  # V fits, the count does not
        if_advance(torch.rand(5, 2, 4), IFState(state.v, torch.zeros(3, 4, dtype=torch.int32)), p)
    # a potential that broadcasts without growing the batch (one value per neuron) is accepted
    _, after = if_advance(torch.rand(5, 2, 4), IFState(torch.zeros(4), state.count), p)
    assert after.v.shape == (2, 4)
    layer = IFNeuron(spike_rule=rule)
    layer(torch.rand(2, 4))
    with pytest.raises(ValueError, match="reset_state"):
        layer(torch.rand(3, 4))
    layer.reset_state()
    assert layer(torch.rand(3, 4)).shape == (3, 4)


def test_seed_cnn_float32_at_most_1e4_of_spike_counts_differ(seed_snn):
    snn, data = seed_snn
    multi = simulate(snn, data.images[:10], 20, time_chunk=7)
    single = simulate(snn, data.images[:10], 20, execution="single")
    assert _fraction_differing(multi, single) <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_residual_and_concat_graph_multi_equals_single(dtype):
    net = Residual().to(dtype)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
    multi, single = simulate(net, x, 20, time_chunk=8), simulate(net, x, 20, execution="single")
    assert sum(int(c.sum()) for c in multi.spike_counts.values()) > 0
    if dtype == torch.float64:
        assert _identical(multi, single)
    else:
        assert _fraction_differing(multi, single) <= 1e-4


def test_recording_on_and_off_give_identical_results():
    net = Residual()
    x = torch.rand(5, 1, 8, 8)
    off, on = simulate(net, x, 23, time_chunk=6), simulate(net, x, 23, time_chunk=6, record=True)
    assert off.spikes is None and _identical(off, on)
    assert on.spikes.keys() == on.spike_counts.keys()
    for name, train in on.spikes.items():
        assert train.dtype == torch.bool and train.shape == (23, *on.spike_counts[name].shape)
        assert torch.equal(train.sum(0).to(on.spike_counts[name].dtype), on.spike_counts[name])


@pytest.mark.parametrize("execution", ["multi", "single"])
def test_recording_some_layers_gives_their_trains_only_and_unknown_paths_are_refused(execution):
    net = Residual()
    x = torch.rand(5, 1, 8, 8)
    full = simulate(net, x, 11, time_chunk=4, record=True, execution=execution)
    some = sorted(full.spikes)[1:]
    assert some
    part = simulate(net, x, 11, time_chunk=4, record=some, execution=execution)
    assert sorted(part.spikes) == some and len(some) < len(full.spikes) and _identical(full, part)
    assert all(torch.equal(part.spikes[n], full.spikes[n]) for n in some)
    assert simulate(net, x, 3, record=[]).spikes == {}
    with pytest.raises(ValueError, match=r"record: no IF layer 'nope' in the model \(IF layers: "):
        simulate(net, x, 3, record=[some[0], "nope"])
    with pytest.raises(TypeError, match="list of IF layer paths"):
        simulate(net, x, 3, record=some[0])


@pytest.mark.parametrize("free", [True, False])
def test_a_chunk_value_is_dropped_after_its_last_use_and_results_do_not_change(monkeypatch, free):
    import weakref

    from simulator import executor

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), IFNeuron(), nn.Linear(8, 8), IFNeuron(), nn.Linear(8, 8), IFNeuron())
    x = torch.rand(3, 6, dtype=torch.float64)
    net = net.double()
    alive: list[bool] = []
    refs: list = []
    net[2].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))  # the second Linear's chunk output
    net[4].register_forward_hook(lambda m, i, o: alive.append(refs[-1]() is not None))  # after its IF layer ran
    monkeypatch.setattr(executor, "FREE_AFTER_LAST_USE", free)
    result = simulate(net, x, 9, time_chunk=4)
    assert alive == [not free] * 3  # 3 chunks: 4 + 4 + 1 steps
    monkeypatch.setattr(executor, "FREE_AFTER_LAST_USE", not free)
    assert _identical(result, simulate(net, x, 9, time_chunk=4))
    plan = executor.build_plan(executor.trace_or_none(Residual()), hoist=True)
    freed = [n for nodes in plan.last_uses.values() for n in nodes]
    assert len(freed) == len(set(freed))  # each value dropped once, after its last user in graph order
    order = {n: i for i, n in enumerate(plan.gm.graph.nodes)}
    for user, nodes in plan.last_uses.items():
        assert all(max(order[u] for u in n.users) == order[user] for n in nodes)


def test_two_runs_are_bitwise_identical_in_both_executions():
    net = Residual()
    x = torch.rand(4, 1, 8, 8)
    for execution in ("multi", "single"):
        assert _identical(simulate(net, x, 12, execution=execution), simulate(net, x, 12, execution=execution))
    poisson = [simulate(net, x, 12, encoding="poisson", seed=3) for _ in range(2)]
    assert _identical(*poisson)


def test_constant_part_runs_once_per_simulation():
    net = Residual()
    calls = {"conv1": 0, "skip": 0, "conv2": 0}
    for name in calls:
        getattr(net, name).register_forward_hook(lambda m, i, o, n=name: calls.__setitem__(n, calls[n] + 1))
    simulate(net, torch.rand(3, 1, 8, 8), 40, time_chunk=10)
    assert calls == {"conv1": 1, "skip": 1, "conv2": 4}  # conv2 follows an IF layer: once per chunk


def test_batch_size_used_in_the_graph_falls_back_and_stays_exact():
    class Sized(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(3, 6), IFNeuron()

        def forward(self, x):
            return self.act(self.fc(x)).view(x.size(0), 2, 3).flatten(1)  # x.size(0): the batch of the input

    net, x = Sized(), torch.rand(4, 3)
    assert _identical(simulate(net, x, 9, time_chunk=4), simulate(net, x, 9, execution="single"))


def test_untraceable_model_runs_as_a_whole():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(3, 4), IFNeuron()

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                x = x * 0.9
            return self.act(self.fc(x))

    net, x = Branchy(), torch.rand(4, 3)
    result = simulate(net, x, 12, time_chunk=5)
    assert _identical(result, simulate(net, x, 12, execution="single"))
    with pytest.raises(ValueError, match="early_exit"):
        simulate(net, x, 12, early_exit=3)


def test_early_exit_accuracy_equals_accuracy_recomputed_from_predictions(seed_snn):
    snn, data = seed_snn
    result = classify(snn, data.loader(20), 30, early_exit=5, time_chunk=5)
    assert result.accuracy == pytest.approx(100.0 * float((result.predictions == result.labels).double().mean()))
    assert 1 <= result.steps_used.min() and result.steps_used.max() <= 30 and result.mean_steps < 30
    sim = simulate(snn, data.images[:20], 30, early_exit=5, time_chunk=5)
    assert torch.equal(sim.predictions()[-1], result.predictions[:20])
    assert torch.equal(sim.steps_used, result.steps_used[:20])
    assert classify(snn, data.subset(10).loader(10), 30, early_exit=None).mean_steps == 30


def test_early_exit_longer_than_T_changes_nothing():
    net, x = Residual(), torch.rand(5, 1, 8, 8)
    assert _identical(simulate(net, x, 12, early_exit=13), simulate(net, x, 12))


def test_bad_simulate_options_are_refused():
    with pytest.raises(ValueError, match="execution"):
        simulate(IFNeuron(), torch.ones(1, 1), 3, execution="parallel")
    with pytest.raises(ValueError, match="early_exit"):
        simulate(IFNeuron(), torch.ones(1, 1), 3, early_exit=0)
    with pytest.raises(ValueError, match="early_exit"):
        simulate(IFNeuron(), torch.ones(1, 1), 3, execution="single", early_exit=2)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 12),
    reset=st.sampled_from(["subtract", "zero"]),
    rule=st.sampled_from([">=", ">"]),
    constant=st.booleans(),
    per_neuron=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_scan_is_bitwise_repeated_if_step(steps, reset, rule, constant, per_neuron, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 5)
    th = torch.rand(shape[1:], generator=g) + 0.2 if per_neuron else torch.tensor(0.6)
    p = IFParams(th, torch.tensor(-0.1), torch.rand(shape[1:], generator=g) + 0.5, reset, rule)
    x = torch.rand((steps, *shape), generator=g) * 1.5 - 0.25
    if constant:
        x = x[:1].expand(steps, *shape)
    v0 = torch.rand(shape, generator=g)
    spikes, v = if_scan_bool(x[0] if constant else x, v0, p, steps=steps if constant else None)
    ref_v, ref = v0, []
    for t in range(steps):
        s, ref_v = if_step(x[t], ref_v, p)
        ref.append(s)
    assert torch.equal(spikes.to(x.dtype), torch.stack(ref)) and torch.equal(v, ref_v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
def test_pooling_on_bool_spikes_is_bitwise_avg_pool(dtype, kernel):
    spikes = torch.rand(4, 3, 17, 16, generator=torch.Generator().manual_seed(kernel)) < 0.4
    ref = F.avg_pool2d(spikes.to(dtype), kernel)
    assert torch.equal(SPIKE_OPS[F.avg_pool2d](Spikes(spikes, dtype), None, (kernel,), {}), ref)
    assert torch.equal(SPIKE_OPS[nn.AvgPool2d](Spikes(spikes, dtype), nn.AvgPool2d(kernel), (), {}), ref)


def test_early_exit_with_recording_keeps_counts_and_trains_consistent():
    net, x = Residual(), torch.rand(6, 1, 8, 8)
    result = simulate(net, x, 24, time_chunk=4, early_exit=2, record=True)
    assert result.steps_used.min() < 24
    for name, train in result.spikes.items():
        assert train.shape[:2] == (24, 6)
        assert torch.equal(train.sum(0).to(result.spike_counts[name].dtype), result.spike_counts[name])
    after_exit = torch.arange(1, 25).view(-1, 1) > result.steps_used.view(1, -1)
    assert not result.outputs[after_exit].any()


def test_early_exit_with_membrane_readout_holds_the_exit_potential(seed_snn):
    snn, data = seed_snn
    x, labels = data.images[:40], data.labels[:40]
    full = simulate(snn, x, 30)
    early = simulate(snn, x, 30, early_exit=5)
    assert early.readout == "membrane" and (early.steps_used < 30).any()
    for b in range(len(labels)):
        e = int(early.steps_used[b])
        assert torch.equal(early.outputs[e - 1 :, b], early.outputs[e - 1, b].expand_as(early.outputs[e - 1 :, b]))
        assert torch.equal(early.outputs[:e, b], full.outputs[:e, b])
    assert torch.equal(early.predictions()[-1], early.predictions()[early.steps_used - 1, torch.arange(40)])


@pytest.mark.parametrize("execution", ["multi", "single"])
def test_an_if_layer_called_twice_is_refused_naming_it_and_its_nodes(execution):
    # one IFNeuron holds one potential; two calls would both advance it (the counts then depended
    # on time_chunk). The converter gives each call of a reused nn.ReLU its own IF layer.
    from simulator import IFNeuron

    class Reused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.neuron = nn.Linear(4, 4), nn.Linear(4, 4), IFNeuron()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.neuron(self.b(self.neuron(self.a(x))))

    refused = r"IFNeuron 'neuron' is called at 2 places in the graph \(nodes neuron, neuron_1\)"
    with pytest.raises(ValueError, match=refused):
        simulate(Reused(), torch.rand(3, 4), T=4, execution=execution)


def test_a_reused_relu_converts_to_one_if_layer_per_call():
    import converter

    class ReusedReLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.relu, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.relu(self.b(self.relu(self.a(x)))))

    torch.manual_seed(0)
    x = torch.rand(50, 4)
    snn = converter.convert(ReusedReLU().eval(), "max", [x])
    from simulator import if_layers

    assert len(if_layers(snn)) == 2
    chunked = simulate(snn, x, T=16, time_chunk=None).outputs
    stepped = simulate(snn, x, T=16, time_chunk=1).outputs
    assert torch.allclose(chunked, stepped, atol=1e-5)


def test_an_if_layer_called_twice_in_a_forward_fx_cannot_trace_is_refused():
    from simulator import IFNeuron

    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.neuron = nn.Linear(4, 4), nn.Linear(4, 4), IFNeuron()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > -1e9:  # data-dependent control flow: fx cannot trace it
                x = x + 0
            return self.neuron(self.b(self.neuron(self.a(x))))

    for kwargs in ({"time_chunk": None}, {"time_chunk": 1}, {"execution": "single"}):
        with pytest.raises(ValueError, match="IFNeuron 'neuron' was called 2 times in one forward"):
            simulate(Untraceable(), torch.rand(3, 4), T=4, **kwargs)
