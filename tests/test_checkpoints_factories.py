"""Lightning checkpoints (the ``model.`` prefix) and factory arguments (--model-arg, job files)."""

import json

import pytest
import torch
from click.testing import CliRunner

from ann2snn.cli import main
from ann2snn.jobfile import JobFileError, read_job
from ann2snn.models import ModelLoadError, ModelSpec, fit_prefix, load_model, parse_model_arg
from ann2snn.zoo import load_mnist_cnn
from tests.cli_fixtures import FACTORY

NET = """
import torch

def make(width=4, act="relu", bias=True):
    layers = [torch.nn.Flatten(), torch.nn.Linear(784, width, bias=bias), torch.nn.ReLU(), torch.nn.Linear(width, 10)]
    make.calls.append({"width": width, "act": act, "bias": bias})
    return torch.nn.Sequential(*layers)

make.calls = []

def positional(width, depth):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, width * depth))
"""


def lightning_checkpoint(state: dict, extra: dict | None = None) -> dict:
    """What ``Trainer.save_checkpoint`` writes for a LightningModule holding the net as ``self.model``."""
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {**{f"model.{k}": v for k, v in state.items()}, **(extra or {})},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"width": 32},
    }


def test_a_lightning_checkpoint_loads_the_same_weights(tmp_path):
    state = load_mnist_cnn().state_dict()
    torch.save(lightning_checkpoint(state), tmp_path / "epoch=3.ckpt")
    model = load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "epoch=3.ckpt"))
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("inner", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_a_wrapped_network_inside_a_lightning_module_loads(tmp_path, inner):
    state = load_mnist_cnn().state_dict()
    torch.save(lightning_checkpoint({inner + k: v for k, v in state.items()}), tmp_path / "w.ckpt")
    model = load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "w.ckpt"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_lightning_keys_beside_others_load_when_the_stripped_keys_fit(tmp_path):
    state = load_mnist_cnn().state_dict()
    torch.save(lightning_checkpoint(state, {"criterion.pos_weight": torch.ones(10)}), tmp_path / "c.ckpt")
    with pytest.warns(UserWarning, match=r"left out 1 other key\(s\) that are not the model's: criterion.pos_weight"):
        model = load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "c.ckpt"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_the_prefix_is_kept_when_stripping_does_not_fit():
    own = ["model.weight", "model.bias"]  # a network whose submodule is really called "model"
    state = {"model.weight": torch.zeros(1), "model.bias": torch.zeros(1)}
    assert fit_prefix(state, own, "w.pt") is state
    mixed = {"model.weight": torch.zeros(1), "head.bias": torch.zeros(1)}
    assert fit_prefix(mixed, ["weight", "bias"], "w.pt") is mixed  # neither all prefixed nor a fit


def test_a_partly_prefixed_checkpoint_that_does_not_fit_lists_the_keys(tmp_path):
    state = load_mnist_cnn().state_dict()
    state.pop("network.13.bias")  # the stripped keys are not the model's: nothing is stripped or dropped
    torch.save({**{f"model.{k}": v for k, v in state.items()}, "head.bias": torch.zeros(3)}, tmp_path / "m.pt")
    with pytest.raises(ModelLoadError, match=r"unexpected keys: model.network.0.weight, .*head.bias"):
        load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "m.pt"))


def test_a_network_under_another_prefix_is_named_in_the_error(tmp_path):
    state = load_mnist_cnn().state_dict()  # a LightningModule holding the network as self.net, and an EMA copy
    keys = {f"net.{k}": v for k, v in state.items()} | {f"ema._orig_mod.{k}": v for k, v in state.items()}
    torch.save({"state_dict": {**keys, "loss.weight": torch.ones(10)}}, tmp_path / "net.ckpt")
    with pytest.raises(ModelLoadError) as error:
        load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "net.ckpt"))
    assert str(error.value).startswith(
        f"weights {tmp_path / 'net.ckpt'} do not fit MnistCNN: the keys under 'ema.' and 'net.' are exactly the "
        "model's (a LightningModule holding the network as self.ema or self.net?): save that network's own "
        "state_dict, or strip the prefix from the keys; missing keys: network.0.weight"
    )
    torch.save({"state_dict": {"net.x": torch.ones(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ModelLoadError) as error:
        load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "other.ckpt"))
    assert "exactly the model's" not in str(error.value)  # no hint where no prefix fits


def test_model_args_are_parsed_as_literals_else_strings():
    assert parse_model_arg("width=32") == ("width", 32)
    assert parse_model_arg("p = 0.5") == ("p", 0.5)
    assert parse_model_arg("bias=False") == ("bias", False)
    assert parse_model_arg("sizes=(1, 2)") == ("sizes", (1, 2))
    assert parse_model_arg("act=relu") == ("act", "relu")
    assert parse_model_arg("name='a=b'") == ("name", "a=b")
    with pytest.raises(ValueError, match=r"'width' is not NAME=VALUE"):
        parse_model_arg("width")
    with pytest.raises(ValueError, match=r"'2x' is not a Python identifier"):
        parse_model_arg("2x=3")


def test_factory_arguments_reach_the_factory(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    model = load_model(ModelSpec(factory=f"{tmp_path}/net.py:make", no_weights=True, kwargs={"width": 6, "act": "x"}))
    assert model[1].out_features == 6
    positional = load_model(ModelSpec(factory=f"{tmp_path}/net.py:positional", no_weights=True, args=(3, 2)))
    assert positional[1].out_features == 6
    with pytest.raises(ModelLoadError, match=r"factory .*net.py:make failed: TypeError: .*'widht'"):
        load_model(ModelSpec(factory=f"{tmp_path}/net.py:make", no_weights=True, kwargs={"widht": 6}))
    with pytest.raises(ModelLoadError, match="not built by a factory: drop the factory arguments"):
        ModelSpec(pickled=tmp_path / "m.pt", trust_pickle=True, kwargs={"width": 6})
    spec = ModelSpec(factory=f"{tmp_path}/net.py:make", no_weights=True, kwargs={"width": 6})
    assert spec.fingerprint()["kwargs"] == {"width": "6"}  # other arguments, other results: not reused


def test_job_file_args_and_kwargs(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "job.toml").write_text(
        'modes = ["max"]\nT = [4]\n[[models]]\nmodel = "net.py:make"\nno_weights = true\n'
        'kwargs = { width = 5, act = "tanh" }\n[[models]]\nname = "p"\nmodel = "net.py:positional"\n'
        "no_weights = true\nargs = [2, 4]\n"
    )
    job = read_job(tmp_path / "job.toml")
    assert dict(job.models[0].spec.kwargs) == {"width": 5, "act": "tanh"}
    assert job.models[1].spec.args == (2, 4)
    assert load_model(job.models[0].spec)[1].out_features == 5
    assert load_model(job.models[1].spec)[1].out_features == 8
    (tmp_path / "bad.toml").write_text('modes = ["max"]\nT = [4]\n[[models]]\nmodel = "net.py:make"\nkwargs = 3\n')
    expected = r"models\[0\]: 'kwargs' = 3 has the wrong type: expected a table \{ \.\.\. \}, got an integer"
    with pytest.raises(JobFileError, match=expected):
        read_job(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text('modes = ["max"]\nT = [4]\n[[models]]\nmodel = "net.py:make"\nargs = "x"\n')
    with pytest.raises(
        JobFileError, match=r"'args' = 'x' has the wrong type: expected an array \[\.\.\.\], got a string"
    ):
        read_job(tmp_path / "bad.toml")


def test_cli_model_arg_reaches_the_factory_and_its_weights_fit(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    torch.manual_seed(0)
    ns: dict = {}
    exec(NET, ns)
    torch.save(ns["make"](width=6).state_dict(), tmp_path / "w6.pt")
    base = ["convert", "--model", f"{tmp_path}/net.py:make", "--weights", str(tmp_path / "w6.pt")]
    fast = ["--mode", "max", "--T", "4", "--limit", "10", "--calib-size", "50", "--check-samples", "2", "--quiet"]
    result = CliRunner().invoke(main, [*base, "--model-arg", "width=6", *fast, "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"][0]["status"] == "converted"
    # without the argument the factory builds width 4 and the weights do not fit
    result = CliRunner().invoke(main, [*base, *fast, "--out", str(tmp_path / "o4")])
    assert result.exit_code == 1
    assert "1.weight (6, 784) vs model (4, 784)" in result.output
    # a re-run with only another --model-arg names what changed, not "other weights"
    again = [*base, "--model-arg", "width=6", "--model-arg", "bias=True", *fast, "--out", str(tmp_path / "o"), "--json"]
    result = CliRunner().invoke(main, again)
    error = json.loads(result.stdout)["rows"][0]["error"]
    assert "(model: factory arguments (--model-arg) {'width': '6'} -> {'width': '6', 'bias': 'True'})" in error, error
    assert "other weights" not in error


@pytest.mark.parametrize(
    ("arg", "message"),
    [("width", "'width' is not NAME=VALUE"), ("=3", "'' is not a Python identifier")],
)
def test_cli_model_arg_without_a_name_is_a_usage_error(arg, message):
    result = CliRunner().invoke(main, ["convert", "--model", FACTORY, "--no-weights", "--model-arg", arg])
    assert result.exit_code == 2
    assert "Invalid value for '--model-arg'" in result.output and message in result.output


def test_cli_model_arg_given_twice_or_with_a_pickle(tmp_path):
    result = CliRunner().invoke(
        main, ["convert", "--model", FACTORY, "--no-weights", "--model-arg", "a=1", "--model-arg", "a=2"]
    )
    assert result.exit_code == 2 and "'a' is given twice ('a=2')" in result.output
    torch.save(load_mnist_cnn(), tmp_path / "whole.pt")
    result = CliRunner().invoke(
        main, ["convert", "--model", str(tmp_path / "whole.pt"), "--trust-pickle", "--model-arg", "a=1"]
    )
    assert result.exit_code == 2 and "--model-arg goes with --model package.module:factory" in result.output
