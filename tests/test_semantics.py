"""Reader rules (what Norse-like and Sinabs-like readers do with a file), the pure-NIR recurrent
encoding of reset by subtraction, and ``dt``."""

import nir
import numpy as np
import pytest
import torch
from torch import nn

from exporters import compare_spike_counts, export_nir, import_nir
from exporters.nir_import import NIRImportError
from simulator import IFNeuron, Integrator, simulate
from simulator.neuron import IFParams, if_scan, if_step


def _params(**kw):
    return IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0), **kw)


def test_multi_spike_with_clamp_by_hand():
    # Sinabs' rule: floor(V / V_th) spikes when V >= V_th, subtract them all, clamp at -V_th
    x = torch.tensor([[2.5, -3.0, 0.4, 1.0]]).expand(4, 4)
    spikes, v = if_scan(x, torch.zeros(4), _params(spike_rule="multi", v_min=-1.0))
    assert spikes.T.tolist() == [[2, 3, 2, 3], [0, 0, 0, 0], [0, 0, 1, 0], [1, 1, 1, 1]]
    assert v.tolist() == pytest.approx([0.0, -1.0, 0.6, 0.0])
    # without the clamp the negative input keeps going down; binary spikes cap the count at 1 a step
    assert if_scan(x, torch.zeros(4), _params(spike_rule="multi"))[1][1].item() == -12.0
    assert if_scan(x, torch.zeros(4), _params())[0][:, 0].tolist() == [1, 1, 1, 1]


def test_clamp_applies_after_the_reset():
    s, v = if_step(torch.tensor([-0.5]), torch.tensor([-0.8]), _params(v_min=-1.0))
    assert s.item() == 0 and v.item() == -1.0


@pytest.mark.parametrize("execution", ["multi", "single"])
def test_multi_spike_layer_in_both_executors(execution):
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), IFNeuron(spike_rule="multi", v_min=-1.0), nn.Linear(6, 3), IFNeuron())
    for p in model.parameters():
        p.data = torch.rand(p.shape, generator=g) * 1.5 - 0.3
    x = torch.rand(8, 5, generator=g)
    ref = simulate(model.double(), x.double(), 12, execution="single")
    got = simulate(model.double(), x.double(), 12, execution=execution, record=True)
    first = got.spike_counts["1"]
    assert torch.equal(first, ref.spike_counts["1"]) and first.max() >= 2  # several spikes in a step happen
    assert torch.equal(got.outputs, ref.outputs)
    assert got.spikes["1"].dtype == torch.uint8 and torch.equal(got.spikes["1"].sum(0).double(), first)


def _small_snn():
    g = torch.Generator().manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 8), IFNeuron(v_init=0.5), nn.Linear(8, 4), IFNeuron(v_init=0.5))
    for p in model.parameters():
        p.data = torch.rand(p.shape, generator=g) * 0.8 - 0.2
    return model


def test_reader_rules_override_the_file(tmp_path):
    model = _small_snn()
    path = export_nir(model, tmp_path / "m.nir", input_shape=(6,))
    x = torch.rand(16, 6, generator=torch.Generator().manual_seed(1)).double()
    nir_like = nn.Sequential(
        *[IFNeuron(m.v_threshold, reset="zero", spike_rule=">") if isinstance(m, IFNeuron) else m for m in model]
    )
    sinabs_like = nn.Sequential(
        *[IFNeuron(m.v_threshold, spike_rule="multi", v_min=-1.0) if isinstance(m, IFNeuron) else m for m in model]
    )
    for semantics, reference in (("file", model), ("nir", nir_like), ("sinabs", sinabs_like)):
        assert compare_spike_counts(reference.double(), import_nir(path, semantics).double(), x, 20).equal, semantics
    assert not compare_spike_counts(model.double(), import_nir(path, "nir").double(), x, 20).equal
    custom = import_nir(path, {"reset": "zero", "spike_rule": ">="})
    assert {(m.reset, m.spike_rule, m.v_init) for m in custom.modules() if isinstance(m, IFNeuron)} == {
        ("zero", ">=", 0.5)
    }


@pytest.mark.parametrize(
    "bad, match",
    [
        ("norse2", "semantics must be one of"),
        ({"resett": "zero"}, "unknown key"),
        ({"reset": "foo"}, "'reset' = 'foo'"),
    ],
)
def test_bad_reader_rules_are_refused(tmp_path, bad, match):
    path = export_nir(_small_snn(), tmp_path / "m.nir", input_shape=(6,))
    with pytest.raises(ValueError, match=match):
        import_nir(path, bad)


def test_recurrent_profile_is_pure_nir_and_exact(tmp_path):
    model = nn.Sequential(*_small_snn(), nn.Linear(4, 3), Integrator())
    model[3].spike_rule = ">"
    path = export_nir(model, tmp_path / "rec.nir", input_shape=(6,), T=10, profile="recurrent")
    graph = nir.read(path, type_check=True)
    assert not any(isinstance(n, nir.IF) for n in graph.nodes.values())
    sub = graph.nodes["1"]
    assert isinstance(sub, nir.NIRGraph) and ("feedback", "integrator") in sub.edges
    threshold, scale = sub.nodes["threshold"].threshold, sub.nodes["feedback"].scale
    np.testing.assert_allclose(threshold, 0.5 * model[1].v_threshold.numpy() * np.ones(8))  # V_th - V[0]
    np.testing.assert_allclose(scale, -np.ones(8))
    x = torch.rand(16, 6, generator=torch.Generator().manual_seed(1))
    back = import_nir(path)
    assert [n for n, m in back.named_modules() if isinstance(m, IFNeuron)] == ["1", "3"]
    assert compare_spike_counts(model, back, x, 25).equal
    assert [m.spike_rule for m in back.modules() if isinstance(m, IFNeuron)] == [">=", ">"]
    # the encoding needs no metadata: reader rules leave it alone
    assert compare_spike_counts(model, import_nir(path, "nir"), x, 25).equal


def _recurrent_by_hand(tmp_path, feedback=-1.0, name="hand.nir"):
    sh = np.array([2])
    nodes = {
        "input": nir.Input(input_type={"input": sh}),
        "i": nir.I(r=np.ones(2, np.float32)),
        "th": nir.Threshold(threshold=np.array([1.0, 1.0], np.float32)),
        "fb": nir.Scale(scale=np.full(2, feedback, np.float32)),
        "output": nir.Output(output_type={"output": sh}),
    }
    edges = [("input", "i"), ("i", "th"), ("th", "fb"), ("fb", "i"), ("th", "output")]
    nir.write(tmp_path / name, nir.NIRGraph(nodes=nodes, edges=edges))
    return tmp_path / name


def test_a_hand_built_subtraction_cycle_steps_like_a_reader_with_one_step_delay(tmp_path):
    back = import_nir(_recurrent_by_hand(tmp_path))
    x = torch.tensor([[0.5, 1.0]])
    # U[t] = U[t-1] + I - s[t-1]; s = U > 1 (no metadata: NIR's strict rule), U[0] = 0
    u, s, spikes = torch.zeros(2), torch.zeros(2), []
    for _ in range(8):
        u = u + x[0] - s
        s = (u > 1.0).float()
        spikes.append(s)
    assert torch.equal(simulate(back, x, 8).outputs[:, 0], torch.stack(spikes))
    assert simulate(back, x, 8).outputs.sum().item() == 3 + 7


def test_other_cycles_are_refused_naming_their_nodes(tmp_path):
    with pytest.raises(NIRImportError, match=r"cycle through \['fb', 'i', 'th'\]"):
        import_nir(_recurrent_by_hand(tmp_path, feedback=+1.0))


def test_recurrent_profile_refuses_reset_to_zero_by_name(tmp_path):
    from exporters.profiles import ProfileError

    model = nn.Sequential(nn.Linear(2, 2), IFNeuron(reset="zero"))
    with pytest.raises(ProfileError, match="IF node '1'.*reset='zero'"):
        export_nir(model, tmp_path / "z.nir", input_shape=(2,), profile="recurrent")
    assert not (tmp_path / "z.nir").exists()


def test_dt_scales_the_current_per_step(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2), IFNeuron(), nn.Linear(2, 2), Integrator())
    for p in model.parameters():
        p.data.fill_(0.25)
    path = export_nir(model, tmp_path / "dt.nir", input_shape=(3,))
    x = torch.ones(1, 3)
    half = simulate(import_nir(path, dt=0.5), x, 40)
    slow = nn.Sequential(*model[:1], IFNeuron(r=0.5), model[2], Integrator(r=0.5))
    assert torch.equal(half.outputs, simulate(slow, x, 40).outputs)
    with pytest.raises(ValueError, match="dt must be > 0"):
        import_nir(path, dt=0.0)


def test_reference_vector_does_not_depend_on_time_chunking(tmp_path):
    from ann2snn.zoo import load_embedded, load_mnist_cnn
    from converter import Converter

    snn = Converter(mode="99.9%", dataloader=load_embedded("calib").subset(100).loader(100))(load_mnist_cnn())
    path = export_nir(snn, tmp_path / "cnn.nir", T=30)
    meta = import_nir(path).meta["ann2snn"]
    x, expected = torch.as_tensor(meta["reference_input"]), torch.as_tensor(meta["reference_output"])
    assert expected.dtype == torch.float64
    for chunk in (1, 3, 7, None):  # float32 would differ in the last bits between chunkings
        assert torch.equal(simulate(import_nir(path).double(), x.double(), 30, time_chunk=chunk).outputs, expected)
