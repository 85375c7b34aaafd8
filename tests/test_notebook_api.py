"""The notebook-facing API: SimulationResult's repr and names, calibration data in any usual form."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from converter import Converter
from converter.record import calibration_batches
from simulator import IFNeuron, simulate
from tests.nets import cnn, inputs


@pytest.fixture(scope="module")
def converted():
    torch.manual_seed(0)
    ann = cnn().eval()
    x = inputs((1, 8, 8), n=300)
    return ann, x, Converter("99.9%", dataloader=x)(ann)


def test_repr_is_a_few_lines_not_tensors(converted):
    _, x, snn = converted
    labels = torch.arange(40) % 3
    result = simulate(snn, x[:40], T=6, labels=labels)
    text = repr(result)
    lines = text.splitlines()
    assert len(lines) == 3 and len(text) < 400, text
    assert lines[0] == "SimulationResult: T=6 steps, batch 40, outputs [6, 40, 10] (membrane readout)"
    assert lines[1].startswith(f"  IF layers ({len(result.spike_counts)}): ")
    assert "tensor(" not in text
    assert lines[1].endswith("; spike trains not recorded (pass record=True)")
    correct = int((result.predictions()[-1] == labels).sum())
    assert lines[2] == f"  accuracy at t=6: {100 * correct / 40:.2f} % ({correct} of 40)"
    recorded = simulate(snn, x[:4], T=3, record=True, early_exit=1)
    assert "spike trains recorded" in repr(recorded) and "early exit: " in repr(recorded)
    assert len(repr(recorded).splitlines()) == 3  # no labels: no accuracy line


def test_accuracy_per_t_is_percent_and_correct_per_t_counts(converted):
    _, x, snn = converted
    labels = torch.arange(40) % 3
    result = simulate(snn, x[:40], T=6, labels=labels)
    counts = result.correct_per_t(labels)
    assert counts.dtype == torch.int64
    assert torch.equal(result.accuracy_per_t(), counts.double() * 100 / 40)
    zeros = torch.zeros(40, dtype=torch.long)  # an explicit argument wins over the stored labels
    assert torch.equal(result.accuracy_per_t(zeros), (result.predictions() == 0).sum(1).double() * 2.5)
    with pytest.raises(ValueError, match=r"accuracy_per_t needs labels: pass them, or simulate\(..., labels=y\)"):
        simulate(snn, x[:4], T=2).accuracy_per_t()
    with pytest.raises(ValueError, match=r"labels must have shape \[B\] = \[4\] \(one per sample\), got \[3\]"):
        simulate(snn, x[:4], T=2, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be an integer tensor of class indices"):
        simulate(snn, x[:4], T=2, labels=torch.zeros(4))


def test_layer_rates_are_spike_counts_over_T_and_rates_is_the_output_mean():
    x = torch.tensor([[0.25, 0.5, 0.0, 1.0]])  # [B=1, 4]: constant currents in V_th per step
    result = simulate(IFNeuron(v_init=0.0), x, T=8)
    assert result.layer_rates()[""].tolist() == [[0.25, 0.5, 0.0, 1.0]]  # exact: 2, 4, 0, 8 spikes in 8 steps
    assert torch.equal(result.rates(), result.output_rates())
    assert result.output_rates()[-1].tolist() == [[0.25, 0.5, 0.0, 1.0]]
    assert result.output_rates()[0].tolist() == [[0.0, 0.0, 0.0, 1.0]]  # t=1: one step's spikes


def test_calibration_data_forms_give_the_same_snn(converted):
    ann, x, snn = converted
    y = torch.arange(len(x)) % 3

    class Plain(Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], y[i]

    forms = {
        "pair": (x, y),
        "TensorDataset": TensorDataset(x, y),
        "DataLoader": DataLoader(TensorDataset(x, y), batch_size=256),
        "Dataset": Plain(),
        "list of batches": [x[:256], x[256:]],
    }
    probe = x[:20]
    reference = simulate(snn, probe, T=5).spike_counts
    for name, data in forms.items():
        other = Converter("99.9%", dataloader=data)(ann)
        assert other.meta["ann2snn"]["lambdas"] == snn.meta["ann2snn"]["lambdas"], name
        assert other.meta["ann2snn"]["calibration_samples"] == 300, name
        counts = simulate(other, probe, T=5).spike_counts
        assert all(torch.equal(counts[k], v) for k, v in reference.items()), name


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (3, TypeError, r"calibration data must be a tensor \[N, \.\.\.\] .*; got int"),
        ("images.npy", TypeError, r"; got str"),
        ({"x": 1}, TypeError, r"; got dict"),
        (torch.tensor(1.0), TypeError, "got a 0-d tensor"),
        (torch.zeros(0, 1, 8, 8), ValueError, r"the tensor holds no samples \(shape\[0\] = 0\)"),
        (TensorDataset(torch.zeros(0, 3)), ValueError, "holds no samples"),
    ],
)
def test_bad_calibration_data_is_refused_at_construction(data, error, message):
    with pytest.raises(error, match=message):
        Converter("max", dataloader=data)


def test_tensor_batches_cover_every_sample_once():
    x = torch.arange(600.0).view(600, 1)
    batches = calibration_batches(x, batch_size=256)
    assert len(batches) == 3 and [len(b) for b in batches] == [256, 256, 88]
    assert torch.equal(torch.cat(list(batches)), x) and torch.equal(torch.cat(list(batches)), x)  # re-iterable
