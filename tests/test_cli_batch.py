import json

import pytest
from click.testing import CliRunner

from ann2snn.cli import main
from tests.cli_fixtures import FACTORY, write_checkpoints

JOB = f"""
data = "mnist"
modes = ["max"]
T = [4]
limit = 10
calib_size = 50
check_samples = 2
batch_size = 10
out = "runs/job"

[[models]]
name = "plain"
model = "{FACTORY}"
weights = "checkpoints/plain.pt"

[[models]]
name = "dp"
model = "{FACTORY}"
weights = "checkpoints/dataparallel.pt"

[[models]]
name = "broken"
model = "{FACTORY}"
weights = "checkpoints/corrupt.pt"
"""


@pytest.fixture
def job_file(tmp_path):
    write_checkpoints(tmp_path / "checkpoints")
    path = tmp_path / "job.toml"
    path.write_text(JOB)
    return path


def batch(*args):
    return CliRunner().invoke(main, ["batch", *args])


def test_job_file_runs_every_model_and_reports_the_broken_one(job_file):
    result = batch(str(job_file), "--quiet")
    assert result.exit_code == 1, result.output
    out = job_file.parent / "runs" / "job"  # relative to the job file, not the working directory
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["model"], r["status"]) for r in summary["rows"]] == [
        ("plain", "converted"),
        ("dp", "converted"),
        ("broken", "failed"),
    ]
    assert summary["settings"]["evaluation_samples"] == 10 and summary["settings"]["calibration_samples"] == 50
    assert sorted(p.name for p in out.glob("*.nir")) == ["dp_max_T4.nir", "plain_max_T4.nir"]
    assert "FAILED broken" in result.output and "1 of 3 combinations failed" in result.output
    rerun = batch(str(job_file), "--json", "--quiet")
    assert [r["status"] for r in json.loads(rerun.stdout)["rows"]] == ["reused", "reused", "failed"]
    assert rerun.exit_code == 1


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t.replace('modes = ["max"]', 'modes = ["max", "2/1"]'), "2/1"),
        (
            lambda t: t.replace('weights = "checkpoints/plain.pt"', 'weigths = "checkpoints/plain.pt"'),
            "models[0]: unknown key 'weigths'",
        ),
        (lambda t: t.replace("checkpoints/dataparallel.pt", "checkpoints/gone.pt"), "gone.pt"),
        (lambda t: t.replace("T = [4]", "T = [0]"), "'T'"),
        (lambda t: t.replace('data = "mnist"', "data = [1"), "not valid TOML"),
    ],
)
def test_bad_job_files_are_usage_errors_naming_the_problem(job_file, edit, words):
    job_file.write_text(edit(JOB))
    result = batch(str(job_file))
    assert result.exit_code == 2, result.output
    assert "JOB_FILE" in result.output and words in result.output


def test_pickled_model_in_a_job_needs_trust_pickle(job_file):
    text = JOB.split("[[models]]")[0] + '[[models]]\nmodel = "checkpoints/whole.pt"\n'
    job_file.write_text(text)
    refused = batch(str(job_file), "--json", "--quiet")
    assert refused.exit_code == 1
    assert "--trust-pickle" in json.loads(refused.stdout)["rows"][0]["error"]
    job_file.write_text(text + "trust_pickle = true\n")
    loaded = batch(str(job_file), "--json", "--quiet")
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["rows"][0]["model"] == "whole"
