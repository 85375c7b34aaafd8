"""--weight-bits in ann2snn convert, the demo and job files: quantised .nir files, bad values."""

import json

import nir
import pytest
from click.testing import CliRunner

from ann2snn.cli import main
from ann2snn.jobfile import JobFileError, read_job
from ann2snn.pipeline import demo_job
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def test_convert_with_weight_bits_writes_integer_weights(checkpoints, tmp_path):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "4"]
    result = CliRunner().invoke(main, [*args, "--weight-bits", "8", "--out", str(tmp_path), *FAST])
    assert result.exit_code == 0, result.output
    graph = nir.read(tmp_path / "plain_p99.9_T4.nir")
    assert int(graph.metadata["weight_bits"]) == 8
    conv = graph.nodes["network.4"]
    assert abs(conv.weight).max() <= 127 and (conv.weight == conv.weight.round()).all()
    assert any(isinstance(n, nir.SumPool2d) for n in graph.nodes.values())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["weight_bits"] == 8 and summary["rows"][0]["round_trip"] == "equal"


@pytest.mark.parametrize("value", ["0", "1", "17", "abc"])
def test_bad_weight_bits_is_a_usage_error(checkpoints, tmp_path, value):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--weight-bits", value])
    assert result.exit_code == 2 and "'--weight-bits'" in result.output, result.output
    demo = CliRunner().invoke(main, ["demo", "--weight-bits", value])
    assert demo.exit_code == 2 and "'--weight-bits'" in demo.output


def test_job_file_weight_bits(tmp_path):
    path = tmp_path / "job.toml"
    body = f'modes = ["max"]\nT = [4]\n[[models]]\nname = "a"\nmodel = "{FACTORY}"\nno_weights = true\n'
    path.write_text("weight_bits = 6\n" + body)
    assert read_job(path).weight_bits == 6
    path.write_text("weight_bits = 1\n" + body)
    with pytest.raises(JobFileError, match="weight_bits must be an integer from 2 to 16"):
        read_job(path)
    path.write_text('weight_bits = "8"\n' + body)
    with pytest.raises(JobFileError, match="'weight_bits' = '8' has the wrong type"):
        read_job(path)


def test_demo_job_weight_bits():
    assert demo_job(weight_bits=4).weight_bits == 4 and demo_job().weight_bits is None
    assert "weight_bits" not in demo_job().settings() and demo_job(weight_bits=4).settings()["weight_bits"] == 4
