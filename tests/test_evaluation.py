"""evaluate / Evaluation: one loop over batches, exact mergeable totals; deprecated names warn."""

import warnings

import pytest
import torch
from torch import nn

from simulator import Evaluation, IFNeuron, Integrator, accuracy_per_t, evaluate, readout, readout_kind, simulate


def _net(membrane: bool = False) -> nn.Module:
    torch.manual_seed(3)
    last = Integrator() if membrane else IFNeuron(0.6)
    return nn.Sequential(
        nn.Linear(6, 12), IFNeuron(0.5), nn.Linear(12, 8), IFNeuron(0.7, v_init=0.5), nn.Linear(8, 4), last
    )


def _batches(n: int = 30, size: int = 7, labels: bool = True):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)
    return [(x[i : i + size], y[i : i + size] if labels else None) for i in range(0, n, size)]


@pytest.mark.parametrize("membrane", [False, True])
def test_evaluate_sums_what_simulate_gives_batch_by_batch(membrane):
    net, batches, T = _net(membrane), _batches(), 12
    seen = []
    result = evaluate(net, batches, T, progress=seen.append, time_chunk=5)
    assert seen == [7, 7, 7, 7, 2] and result.samples == 30 and result.T == T
    correct = torch.zeros(T, dtype=torch.int64)
    spikes: dict[str, int] = {}
    for x, y in batches:
        sim = simulate(net, x, T, time_chunk=5)
        correct += sim.correct_per_t(y)
        for name, counts in sim.spike_counts.items():
            spikes[name] = spikes.get(name, 0) + int(counts.sum())
    assert torch.equal(result.correct, correct) and result.spikes == spikes
    assert result.neurons == ({"1": 12, "3": 8} if membrane else {"1": 12, "3": 8, "5": 4})
    assert result.steps == 30 * T and result.mean_steps == T
    assert result.rates["1"] == spikes["1"] / (30 * 12 * T)
    assert result.accuracy == result.accuracy_per_t[-1].item()


def test_accuracy_per_t_is_evaluate_and_the_former_loop():
    net, batches, T = _net(True), _batches(), 10
    curve = accuracy_per_t(net, batches, T)
    assert torch.equal(curve, evaluate(net, batches, T).accuracy_per_t)
    former = torch.zeros(T, dtype=torch.float64)  # the loop accuracy_per_t had before evaluate
    for x, y in batches:
        former += simulate(net, x, T).correct_per_t(y).cpu()
    assert curve.dtype == torch.float64 and torch.equal(curve, 100.0 * former / 30)


@pytest.mark.parametrize("early_exit", [None, 2])
def test_merge_of_two_halves_equals_one_pass_exactly(early_exit):
    net, batches, T = _net(True), _batches(), 16
    whole = evaluate(net, batches, T, early_exit=early_exit)
    merged = evaluate(net, batches[:2], T, early_exit=early_exit).merge(
        evaluate(net, batches[2:], T, early_exit=early_exit)
    )
    assert merged.samples == whole.samples and torch.equal(merged.correct, whole.correct)
    assert merged.spikes == whole.spikes and merged.neurons == whole.neurons and merged.steps == whole.steps
    assert torch.equal(merged.accuracy_per_t, whole.accuracy_per_t)
    if early_exit:
        assert whole.steps < 30 * T


def test_unlabelled_batches_give_totals_without_accuracy():
    net, T = _net(), 8
    result = evaluate(net, _batches(labels=False), T)
    assert result.correct is None and result.accuracy_per_t is None and result.accuracy is None
    assert result.samples == 30 and sum(result.spikes.values()) > 0
    with pytest.raises(ValueError, match="no labels"):
        accuracy_per_t(net, _batches(labels=False), T)


def test_evaluation_refuses_what_does_not_add_up():
    net = _net()
    labelled, unlabelled = evaluate(net, _batches(), 8), evaluate(net, _batches(labels=False), 8)
    with pytest.raises(ValueError, match="labels"):
        labelled.merge(unlabelled)
    with pytest.raises(ValueError, match="T=8 and T=9"):
        labelled.merge(evaluate(net, _batches(), 9))
    with pytest.raises(ValueError, match="IF layers"):
        labelled.merge(evaluate(_net(True), _batches(), 8))
    with pytest.raises(ValueError, match="labels"):
        evaluate(net, [*_batches()[:1], *_batches(labels=False)[1:]], 8)
    with pytest.raises(ValueError, match="no samples"):
        evaluate(net, [], 8)
    assert isinstance(labelled, Evaluation)


def test_deprecated_names_warn_at_the_caller_and_still_work():
    net, x = _net(), torch.rand(3, 6)
    with pytest.warns(DeprecationWarning, match="execution") as caught:
        old = simulate(net, x, 9, mode="single")
    assert caught[0].filename == __file__
    new = simulate(net, x, 9, execution="single")
    assert torch.equal(old.outputs, new.outputs)
    with pytest.raises(TypeError, match="execution only"), pytest.warns(DeprecationWarning):
        simulate(net, x, 9, execution="single", mode="multi")
    with pytest.warns(DeprecationWarning, match="readout_kind") as caught:
        assert readout(_net(True)) == readout_kind(_net(True)) == "membrane"
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(net, x, 9, execution="multi")
        readout_kind(net)


def test_poisson_input_outside_zero_one_is_refused_naming_the_option_and_range():
    import pytest
    import torch

    from simulator import IFNeuron, simulate

    with pytest.raises(ValueError, match=r"encoding='poisson' takes inputs in \[0, 1\].*\[-0.5, 1\]"):
        simulate(IFNeuron(), torch.tensor([[-0.5, 1.0]]), 4, encoding="poisson")
    with pytest.raises(ValueError, match=r"\[0, 1.5\]"):
        simulate(IFNeuron(), torch.tensor([[0.0, 1.5]]), 4, encoding="poisson")
    assert simulate(IFNeuron(), torch.tensor([[-0.5, 1.5]]), 4).outputs.sum().item() == 4.0  # constant: any value


def test_silent_layers_are_named_once_over_the_whole_input():
    import warnings

    import pytest
    import torch
    from torch import nn

    from simulator import IFNeuron, classify, evaluate, simulate

    net = nn.Sequential(IFNeuron(v_threshold=1.0), IFNeuron(v_threshold=100.0))
    x = torch.full((3, 2), 0.5)
    with pytest.warns(UserWarning, match=r"IF layer\(s\) '1' emitted no spike on any of 3 sample\(s\) in T=8"):
        simulate(net, x, 8)
    batches = [(x, torch.zeros(3, dtype=torch.long)), (x, torch.zeros(3, dtype=torch.long))]
    with pytest.warns(UserWarning, match="'1' emitted no spike on any of 6 sample") as warned:
        evaluate(net, batches, 8)
    assert len([w for w in warned if "emitted no spike" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match="'1' emitted no spike on any of 6 sample"):
        classify(net, batches, 8, early_exit=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(nn.Sequential(IFNeuron()), x, 8)  # every layer fires: no warning
        simulate(net, x, 8, warn_silent=False)
