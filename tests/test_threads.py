"""Threads that convert and simulate at once (torch.fx patches ``nn.Module.__call__`` process-wide
while it traces; a single-step run keeps its state in the model's IF layers)."""

import threading

import pytest
import torch
from torch import nn

import converter
from simulator import simulate


def _ann() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 10),
    ).eval()


def _in_threads(*jobs) -> list[str]:
    """Run each ``(function, repeats)`` in its own thread; the errors they raised."""
    errors: list[str] = []

    def repeat(fn, n):
        for _ in range(n):
            try:
                fn()
            except Exception as exc:  # collected: the test asserts there are none
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=repeat, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("execution", ["single", "multi"])
def test_converting_in_one_thread_while_another_simulates(execution):
    # before: "NameError: module is not installed as a submodule" in both threads (the simulation's
    # module calls went into the other thread's trace), and some simulations returned wrong outputs
    x = torch.rand(8, 1, 8, 8)
    snn = converter.convert(_ann(), "max", [x])
    ref = simulate(snn, x, T=6, execution=execution).outputs
    wrong = []

    def sim():
        out = simulate(snn, x, T=6, execution=execution).outputs
        if not torch.allclose(out, ref, atol=1e-5):
            wrong.append(float((out - ref).abs().max()))

    def convert():
        converted = converter.convert(_ann(), "max", [x])
        assert len([n for n in converted.graph.nodes if n.op == "call_module"]) == len(
            [n for n in snn.graph.nodes if n.op == "call_module"]
        )

    errors = _in_threads((sim, 60), (convert, 30))
    assert errors == [] and wrong == []


def test_two_threads_simulating_one_model_step_by_step_take_turns():
    # single-step execution keeps the potentials in the model's IF layers: two runs at once
    # advanced the same potentials (wrong outputs in both)
    x = torch.rand(8, 1, 8, 8)
    snn = converter.convert(_ann(), "max", [x])
    ref = simulate(snn, x, T=6, execution="single").outputs
    wrong = []

    def sim():
        out = simulate(snn, x, T=6, execution="single").outputs
        if not torch.allclose(out, ref, atol=1e-5):
            wrong.append(float((out - ref).abs().max()))

    assert _in_threads((sim, 40), (sim, 40)) == [] and wrong == []


def test_a_multi_step_run_beside_a_single_step_run_of_one_model():
    # a multi-step run writes its final states into the model's IF layers at the end; that used to
    # land in the middle of a single-step run of the same model (wrong outputs there), and two
    # multi-step runs on other inputs could return each other's spike counts
    torch.manual_seed(0)
    x1, x2 = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    snn = converter.convert(_ann(), "max", [x1])
    ref = simulate(snn, x1, T=6, execution="single").outputs
    counts = {i: simulate(snn, x, T=6).spike_counts for i, x in enumerate((x1, x2))}
    wrong = []

    def single():
        out = simulate(snn, x1, T=6, execution="single").outputs
        if not torch.allclose(out, ref, atol=1e-5):
            wrong.append("single-step outputs")

    def multi(i, x):
        got = simulate(snn, x, T=6).spike_counts
        if any(not torch.equal(got[k], counts[i][k]) for k in counts[i]):
            wrong.append(f"spike counts of run {i}")

    errors = _in_threads((single, 30), (lambda: multi(0, x1), 60), (lambda: multi(1, x2), 60))
    assert errors == [] and wrong == []
