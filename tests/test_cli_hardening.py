"""Wrong inputs to the application layer give clear errors or warnings, and nothing is replaced or
lost silently: factories without weights, names, settings conflicts, data that does not fit,
calibration on evaluation data, pickles saved by scripts, Ctrl-C."""

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ann2snn.cli import main
from ann2snn.models import ModelLoadError, ModelSpec, load_model
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


def convert(*args):
    return CliRunner().invoke(main, ["convert", *args])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))["plain"]


def test_a_factory_without_weights_is_refused_unless_no_weights(tmp_path):
    args = ["--model", FACTORY, "--mode", "max", "--T", "2", "--out", str(tmp_path), "--json", *FAST]
    refused = convert(*args)
    assert refused.exit_code == 2 and "--weights" in refused.output and "--no-weights" in refused.output
    assert not tmp_path.exists() or not list(tmp_path.glob("*.nir"))
    accepted = convert(*args, "--no-weights")
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["rows"][0]["model"] == "MnistCNN"
    with pytest.raises(ModelLoadError, match="without weights"):
        ModelSpec(factory=FACTORY)


def test_names_are_one_per_weights_file(weights, tmp_path):
    common = ["--model", FACTORY, "--mode", "max", "--T", "2", "--out", str(tmp_path), "--json", *FAST]
    two = convert(*common, "--weights", str(weights), "--weights", str(weights), "--name", "a", "--name", "b")
    assert two.exit_code == 0, two.output
    assert [r["model"] for r in json.loads(two.stdout)["rows"]] == ["a", "b"]
    assert (tmp_path / "a_max_T2.nir").is_file() and (tmp_path / "b_max_T2.nir").is_file()
    mismatch = convert(*common, "--weights", str(weights), "--name", "a", "--name", "b")
    assert mismatch.exit_code == 2 and "--name" in mismatch.output and "2 --name for 1 model" in mismatch.output
    bad = convert(*common, "--weights", str(weights), "--name", "a/b")
    assert bad.exit_code == 2 and "'a/b'" in bad.output


def test_a_percentile_written_without_percent_sign_gets_a_hint():
    result = convert("--model", FACTORY, "--mode", "99.9")
    assert result.exit_code == 2 and "'99.9%'" in result.output


def test_a_data_folder_without_idx_files_is_a_usage_error(tmp_path):
    result = convert("--model", FACTORY, "--no-weights", "--data", str(tmp_path))
    assert result.exit_code == 2 and "--data" in result.output and "no MNIST IDX test files" in result.output


def test_calibrating_on_evaluation_data_and_a_short_calibration_set_are_warned(weights, tmp_path):
    x = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(20) % 10)
    args = ["--model", FACTORY, "--weights", str(weights), "--data", str(tmp_path / "data.npz"), "--mode", "max"]
    result = convert(*args, "--T", "2", "--out", str(tmp_path / "out"), *FAST)
    assert result.exit_code == 0, result.output
    assert "warning: calibrating on the first inputs of" in result.stderr
    assert "warning: calib_size 50 is more than the 20 calibration samples" in result.stderr


def test_simulate_with_data_of_the_wrong_size_names_the_shapes(weights, tmp_path):
    convert("--model", FACTORY, "--weights", str(weights), "--mode", "max", "--T", "2", "--out", str(tmp_path), *FAST)
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 32, 32), dtype=np.float32))
    result = CliRunner().invoke(
        main, ["simulate", str(tmp_path / "plain_max_T2.nir"), "--data", str(tmp_path / "rgb.npy")]
    )
    assert result.exit_code == 1 and "calibration" not in result.output
    assert "(3, 32, 32) (3072 values)" in result.output and "(1, 28, 28) (784 values)" in result.output


def test_a_model_pickled_by_a_script_loads_from_the_pickle_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mymodels_for_test.py").write_text(
        "import torch\n\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n        return torch.relu(self.fc(x))\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    import mymodels_for_test

    torch.save(mymodels_for_test.Net(), folder / "net.pt")
    monkeypatch.undo()  # the module and its folder are gone, as in a new process started elsewhere
    del sys.modules["mymodels_for_test"]
    monkeypatch.chdir(tmp_path)
    model = load_model(ModelSpec(pickled=folder / "net.pt", trust_pickle=True))
    assert type(model).__name__ == "Net" and str(folder) not in sys.path
    sys.modules.pop("mymodels_for_test", None)


def test_ctrl_c_exits_130_and_says_that_a_rerun_resumes(weights, tmp_path, monkeypatch):
    from ann2snn import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Runner, "convert_model", interrupted)
    result = convert("--model", FACTORY, "--weights", str(weights), "--out", str(tmp_path), *FAST)
    assert result.exit_code == 130 and "run the same command again to resume" in result.stderr


def test_an_input_shape_without_the_channel_axis_is_explained(weights, tmp_path):
    args = ["--model", FACTORY, "--weights", str(weights), "--input-shape", "28,28", "--mode", "max", "--T", "2"]
    result = convert(*args, "--out", str(tmp_path), "--json", *FAST)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["rows"][0]["error"]
    assert "samples of shape (28, 28)" in error and "--input-shape C,H,W" in error


def test_a_closed_stdout_pipe_ends_a_command_quietly_with_status_141():
    import subprocess

    script = (
        "import click\n"
        "from ann2snn.cli.errors import library_errors\n"
        "@click.command()\n"
        "@library_errors\n"
        "def cmd():\n"
        "    print('first line', flush=True)\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "cmd()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 141, done.stderr
    assert done.stderr == "" and done.stdout == "first line\n"


def test_images_of_another_channel_count_get_a_hint_that_reshaping_cannot_fix_it():
    from ann2snn.pipeline import check_model_input
    from ann2snn.zoo.cifar10 import vgg

    with pytest.raises(ValueError, match=r"model vgg cannot take samples of shape \(1, 28, 28\)") as e:
        check_model_input(vgg().eval(), torch.rand(2, 1, 28, 28), "vgg")
    assert "images are 1 x 28 x 28" in str(e.value) and "only reshapes samples stored flat" in str(e.value)
    assert "e.g. 1,28,28" not in str(e.value)
