"""--state-bits and --encoding in ann2snn convert, the demo and job files; report with spike input."""

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


def _convert(checkpoints, tmp_path, *options):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "4"]
    return CliRunner().invoke(main, [*args, *options, "--out", str(tmp_path), *FAST])


def test_convert_state_bits_and_rate_encoding(checkpoints, tmp_path):
    result = _convert(checkpoints, tmp_path, "--weight-bits", "8", "--state-bits", "16", "--encoding", "rate")
    assert result.exit_code == 0, result.output
    graph = nir.read(tmp_path / "plain_p99.9_T4.nir")
    assert str(graph.metadata["input_encoding"]) == "rate" and int(graph.metadata["state_bits"]) == 16
    assert bool(graph.nodes["input"].metadata["events"])
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert ifs and all(int(n.metadata["state_bits"]) == 16 and bool(n.metadata["integer"]) for n in ifs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["state_bits"] == 16 and summary["settings"]["encoding"] == "rate"
    assert summary["rows"][0]["round_trip"] == "equal"


def test_state_bits_needs_weight_bits(checkpoints, tmp_path):
    result = _convert(checkpoints, tmp_path, "--state-bits", "16")
    assert result.exit_code == 2
    assert "state_bits=16 needs weight_bits" in result.output


def test_state_bits_too_narrow_names_layer(checkpoints, tmp_path):
    result = _convert(checkpoints, tmp_path, "--weight-bits", "8", "--state-bits", "3")
    assert result.exit_code == 1
    assert "QuantizationError: IF layer 'if_network_2': its integer threshold" in result.output
    assert "needs 8 state bits" in result.output


@pytest.mark.parametrize(("option", "value"), [("--state-bits", "1"), ("--state-bits", "33"), ("--encoding", "morse")])
def test_bad_values_are_usage_errors(checkpoints, tmp_path, option, value):
    result = _convert(checkpoints, tmp_path, "--weight-bits", "8", option, value)
    assert result.exit_code == 2 and f"'{option}'" in result.output, result.output
    demo = CliRunner().invoke(main, ["demo", "--weight-bits", "8", option, value])
    assert demo.exit_code == 2 and f"'{option}'" in demo.output


def test_job_file_state_bits_and_encoding(tmp_path):
    path = tmp_path / "job.toml"
    body = f'modes = ["max"]\nT = [4]\n[[models]]\nname = "a"\nmodel = "{FACTORY}"\nno_weights = true\n'
    path.write_text('weight_bits = 8\nstate_bits = 12\nencoding = "rate"\n' + body)
    job = read_job(path)
    assert (job.state_bits, job.encoding) == (12, "rate")
    path.write_text('encoding = "morse"\n' + body)
    with pytest.raises(JobFileError, match=r"encoding must be one of \('constant', 'rate', 'poisson'\), got 'morse'"):
        read_job(path)
    path.write_text("state_bits = 12\n" + body)
    with pytest.raises(JobFileError, match="state_bits=12 needs weight_bits"):
        read_job(path)


def test_demo_job_defaults_unchanged():
    settings = demo_job().settings()
    assert "state_bits" not in settings and "encoding" not in settings
    assert demo_job(weight_bits=8, state_bits=16, encoding="rate").settings()["encoding"] == "rate"
