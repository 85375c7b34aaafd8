"""QCFS fine-tune step (converter.qcfs): the activation, its conversion with the trained λ, the
checkpoint round trip through the plain network class, and the errors."""

import pytest
import torch
from torch import nn

from ann2snn.models import ModelLoadError, ModelSpec, load_model
from converter import Converter
from converter.qcfs import QCFS, initial_thresholds, qcfs_model, qcfs_to_clamp, with_qcfs_layers
from simulator import simulate


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_qcfs_values_and_straight_through_gradient():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.linspace(-1, 3, 401, requires_grad=True)
    y = act(x)
    expected = 2.0 * torch.clamp(torch.floor(x.detach() * 4 / 2.0 + 0.5) / 4, 0, 1)
    assert torch.equal(y.detach(), expected)
    assert sorted(set(y.detach().tolist())) == [0.0, 0.5, 1.0, 1.5, 2.0]  # L + 1 values
    y.sum().backward()
    # the floor passes the gradient straight through: d/dx = 1 inside the clip range, 0 outside
    inside = (x.detach() * 2 + 0.5 >= 0) & (x.detach() * 2 + 0.5 < 5)
    assert torch.equal(x.grad, inside.float())
    assert act.threshold.grad is not None and act.threshold.grad.abs() > 0


def test_one_hidden_layer_converts_exactly_at_T_equal_L():
    """Constant input current: an IF layer with V[0] = V_th/2 emits exactly the QCFS level over T = L
    steps, so a Linear-QCFS-Linear net's membrane readout at T = L is the QCFS ANN's output."""
    torch.manual_seed(1)
    ann = mlp()
    x = torch.randn(300, 6)
    q = qcfs_model(ann, 4, initial_thresholds(ann, x)).eval()
    snn = Converter(mode="max", dataloader=[x], v_init=0.5, readout="membrane")(q)
    with torch.no_grad():
        want = q(x)
    got = simulate(snn, x, T=4).output_rates()[-1]
    assert torch.allclose(got, want, atol=1e-5)
    # the plain ReLU net at T = 4 is far off (the levels are what makes it exact)
    plain = Converter(mode="max", dataloader=[x], v_init=0.5, readout="membrane")(ann)
    with torch.no_grad():
        assert (simulate(plain, x, T=4).output_rates()[-1] - ann(x)).abs().max() > 0.05


@pytest.mark.parametrize("mode", ["max", "50%", 0.5])
def test_trained_threshold_is_the_scale_whatever_the_mode(mode):
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 2)
    )
    x = torch.rand(64, 1, 4, 4)
    q = qcfs_model(net, 3, {"1": 0.37, "4": 0.21})
    snn = Converter(mode=mode, dataloader=[x], channel_wise=True)(q)
    meta = snn.meta["ann2snn"]
    assert meta["lambdas"] == {"if_1": pytest.approx(0.37), "if_4": pytest.approx(0.21)}
    assert meta["channel_wise_layers"] == []  # the trained scale is one per layer
    # a mixed net: the plain ReLU keeps the mode's scale
    mixed = qcfs_model(net, 3, {"1": 0.37})
    mixed.get_submodule("4").threshold.data.fill_(1e6)  # λ above every activation: the mode decides
    meta = Converter(mode="max", dataloader=[x])(qcfs_to_plain(mixed, "4")).meta["ann2snn"]
    assert meta["lambdas"]["if_1"] == pytest.approx(0.37) and meta["lambdas"]["if_4"] != pytest.approx(0.21)


def qcfs_to_plain(model: nn.Module, path: str) -> nn.Module:
    setattr(model, path, nn.ReLU())
    return model


def test_tracing_leaves_the_model_alone_and_marks_the_levels():
    q = qcfs_model(mlp(), 5, {"1": 0.8})
    found = qcfs_to_clamp(q)
    assert found == {"1": (pytest.approx(0.8), 5)}
    assert isinstance(q[1], nn.Hardtanh) and q[1].max_val == pytest.approx(0.8) and q[1].qcfs_levels == 5
    fresh = qcfs_model(mlp(), 5)
    Converter(mode="max", dataloader=[torch.randn(10, 6)])(fresh)
    assert isinstance(fresh[1], QCFS)  # the converter works on a copy


def test_checkpoint_loads_into_the_plain_class(tmp_path):
    torch.manual_seed(3)
    q = qcfs_model(mlp(), 4, {"1": 1.3})
    path = tmp_path / "qcfs.pt"
    torch.save(q.state_dict(), path)
    rebuilt = with_qcfs_layers(mlp(), q.state_dict())
    rebuilt.load_state_dict(q.state_dict())
    assert isinstance(rebuilt[1], QCFS) and int(rebuilt[1].levels) == 4
    assert float(rebuilt[1].threshold.detach()) == pytest.approx(1.3)
    x = torch.randn(20, 6)
    loaded = load_model(ModelSpec(factory="tests.test_qcfs:mlp", weights=path))
    with torch.no_grad():
        assert torch.equal(loaded(x), q.eval()(x))
    plain = mlp()
    assert with_qcfs_layers(plain, plain.state_dict()) is plain  # a ReLU checkpoint: unchanged


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        QCFS(levels=0)
    with pytest.raises(ValueError, match="threshold must be finite and > 0"):
        QCFS(threshold=0.0)
    with pytest.raises(ValueError, match="threshold must be finite and > 0"):
        QCFS(threshold=float("inf"))
    with pytest.raises(ValueError, match=r"layer '1': QCFS threshold must be finite and > 0, got -1.0"):
        qcfs_model(mlp(), 4, {"1": -1.0})
    with pytest.raises(ValueError, match="at least one image"):
        initial_thresholds(mlp(), torch.randn(0, 6))
    functional = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no nn.ReLU module"):
        qcfs_model(functional, 4)
    with pytest.raises(ValueError, match=r"thresholds for \['0'\]"):
        qcfs_model(mlp(), 4, {"0": 1.0})
    with pytest.raises(ValueError, match="percentile"):
        initial_thresholds(mlp(), torch.randn(4, 6), percentile=0)
    bad = qcfs_model(mlp(), 4)
    bad[1].threshold.data.fill_(-1.0)
    with pytest.raises(ValueError, match="QCFS layer '1' has threshold"):
        Converter(mode="max", dataloader=[torch.randn(4, 6)])(bad)
    state = {"0.levels": torch.tensor(4), "0.threshold": torch.tensor(1.0), **mlp().state_dict()}
    with pytest.raises(ValueError, match=r"QCFS layers \['0'\], which are not nn.ReLU"):
        with_qcfs_layers(mlp(), state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match="bad.pt: the checkpoint has QCFS layers"):
        load_model(ModelSpec(factory="tests.test_qcfs:mlp", weights=path))


def test_cli_converts_a_qcfs_checkpoint_with_its_trained_scales(tmp_path):
    """`ann2snn convert --model <plain class> --weights <QCFS fine-tune>`: the QCFS layers are
    rebuilt from the checkpoint and the file's λ are the trained ones (not the mode's)."""
    import nir
    from click.testing import CliRunner

    from ann2snn.cli import main
    from ann2snn.zoo import load_embedded, load_mnist_cnn
    from exporters import graph_metadata
    from tests.cli_fixtures import FACTORY, FAST

    cnn = load_mnist_cnn()
    images = load_embedded("calib").subset(200).images
    q = qcfs_model(cnn, 4, initial_thresholds(cnn, images))
    trained = {path: float(m.threshold.detach()) * 0.9 for path, m in q.named_modules() if isinstance(m, QCFS)}
    for path, lam in trained.items():
        q.get_submodule(path).threshold.data.fill_(lam)
    torch.save(q.state_dict(), tmp_path / "qcfs.pt")
    result = CliRunner().invoke(
        main,
        ["convert", "--model", FACTORY, "--weights", str(tmp_path / "qcfs.pt"), "--mode", "max", "--T", "4"]
        + ["--out", str(tmp_path / "out"), *FAST],
    )
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "out").glob("*.nir")
    lambdas = graph_metadata(nir.read(path))["lambdas"]
    # every IF layer carries its trained λ (the last one, network.14, is the membrane readout's)
    assert sorted(lambdas.values()) == pytest.approx(sorted(trained.values()))
    # the same checkpoint inside a Lightning checkpoint (keys under "model.") loads too
    lightning = {"state_dict": {f"model.{k}": v for k, v in q.state_dict().items()}, "epoch": 3}
    torch.save(lightning, tmp_path / "lightning.pt")
    loaded = load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "lightning.pt"))
    assert sum(isinstance(m, QCFS) for m in loaded.modules()) == len(trained)


class SharedReLU(nn.Module):
    """One nn.ReLU registered under two names (``act`` and ``body.1``)."""

    def __init__(self, act: nn.Module | None = None) -> None:
        super().__init__()
        self.act = act or nn.ReLU()
        self.body = nn.Sequential(nn.Linear(4, 8), self.act, nn.Linear(8, 2))

    def forward(self, x):
        return self.body(x)


def test_a_relu_registered_under_two_names_becomes_one_qcfs():
    torch.manual_seed(4)
    ann = SharedReLU()
    x = torch.randn(50, 4)
    q = qcfs_model(ann, 2, initial_thresholds(ann, x))
    assert isinstance(q.body[1], QCFS) and q.body[1] is q.act
    with torch.no_grad():
        assert not torch.equal(q(x), ann(x))  # quantised: the ReLU on the forward path was replaced
    rebuilt = with_qcfs_layers(SharedReLU(), q.state_dict())
    rebuilt.load_state_dict(q.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), q(x))
    with pytest.raises(ValueError, match=r"registered as \['act', 'body.1'\]"):
        qcfs_model(ann, 2, {"act": 1.0, "body.1": 2.0})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("1.levels", torch.tensor(0), "layer '1': QCFS levels must be an integer >= 1, got 0"),
        ("1.threshold", torch.tensor(-1.0), "layer '1': QCFS threshold must be finite and > 0, got -1.0"),
        ("1.threshold", torch.tensor(float("inf")), "layer '1': QCFS threshold must be finite"),
        ("1.threshold", torch.ones(2), r"layer '1': QCFS levels and threshold must hold one value each"),
    ],
)
def test_bad_checkpoint_values_name_the_layer(tmp_path, key, value, message):
    state = qcfs_model(mlp(), 4, {"1": 1.0}).state_dict()
    state[key] = value
    with pytest.raises(ValueError, match=message):
        with_qcfs_layers(mlp(), state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="bad.pt: " + message):
        load_model(ModelSpec(factory="tests.test_qcfs:mlp", weights=tmp_path / "bad.pt"))
