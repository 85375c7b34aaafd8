import pytest
import torch

from ann2snn.models import ModelLoadError, ModelSpec, load_model, read_state_dict, resolve_factory
from ann2snn.zoo import load_mnist_cnn
from tests.cli_fixtures import FACTORY


def test_nested_and_prefixed_checkpoints_load_the_same_weights(tmp_path):
    state = load_mnist_cnn().state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module._orig_mod.{k}": v for k, v in state.items()}}, tmp_path / "c.pt")
    loaded = read_state_dict(tmp_path / "c.pt")
    assert loaded.keys() == state.keys()
    model = load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "c.pt"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert not model.training


def test_shape_mismatch_names_both_shapes(tmp_path):
    state = load_mnist_cnn().state_dict()
    state["network.13.weight"] = torch.zeros(5, 32)
    torch.save(state, tmp_path / "s.pt")
    with pytest.raises(ModelLoadError, match=r"network.13.weight \(5, 32\) vs model \(10, 32\)"):
        load_model(ModelSpec(factory=FACTORY, weights=tmp_path / "s.pt"))


def test_factory_from_a_python_file_and_errors_naming_the_spec(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.ReLU())\n"
        "def not_a_module():\n    return 3\n"
    )
    assert isinstance(load_model(ModelSpec(factory=f"{tmp_path}/net.py:build", no_weights=True)), torch.nn.Sequential)
    with pytest.raises(ModelLoadError, match="returned int, not a torch.nn.Module"):
        load_model(ModelSpec(factory=f"{tmp_path}/net.py:not_a_module", no_weights=True))
    with pytest.raises(ModelLoadError, match="has no attribute 'Nope'"):
        resolve_factory("ann2snn.zoo.mnist_cnn:Nope")


def test_pickled_state_dict_given_as_a_model_says_what_to_do(tmp_path):
    torch.save(load_mnist_cnn().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="holds a state_dict, not a model"):
        load_model(ModelSpec(pickled=tmp_path / "sd.pt", trust_pickle=True))


def test_an_image_given_as_weights_is_not_a_torch_file_rather_than_pickled_objects(tmp_path):
    from PIL import Image

    Image.new("RGB", (2, 2)).save(tmp_path / "w.png")
    with pytest.raises(ModelLoadError, match=r"w\.png: not a torch\.save file.*starts with b'\\x89P'") as e:
        read_state_dict(tmp_path / "w.png")
    assert "pickled objects" not in str(e.value) and "--trust-pickle" not in str(e.value)
    torch.save({"w": torch.ones(1)}, tmp_path / "ok.pt")  # a real one still loads
    assert read_state_dict(tmp_path / "ok.pt")["w"].tolist() == [1.0]
