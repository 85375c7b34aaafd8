"""The main job from Python (ann2snn.pipeline), without the command line."""

import json

import pytest

from ann2snn.pipeline import Job, demo_job, run_job


def test_demo_job_from_python_matches_its_summary_files(tmp_path):
    job = demo_job(modes=("99.9%",), T=4, limit=50, out=tmp_path, check_samples=5)
    summary = run_job(job, quiet=True)
    (row,) = summary.rows
    assert (row.model, row.mode, row.T, row.status, row.round_trip) == ("mnist_cnn", "99.9%", 4, "converted", "equal")
    assert len(row.accuracy_per_t) == 4 and row.snn_accuracy == row.accuracy_per_t[-1]
    assert 90.0 <= row.ann_accuracy <= 100.0 and row.snn_accuracy > 50.0
    assert summary.counts() == {"converted": 1, "reused": 0, "failed": 0}
    assert summary.settings["evaluation_samples"] == 50 and summary.settings["calibration_samples"] == 4000
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary.to_dict()))
    assert (tmp_path / "mnist_cnn_p99.9_T4.nir").is_file()
    again = run_job(job, quiet=True)  # same settings: reused, not redone
    assert again.counts()["reused"] == 1 and again.rows[0].snn_accuracy == pytest.approx(row.snn_accuracy, abs=1e-4)


def test_a_job_without_models_is_refused():
    with pytest.raises(ValueError, match="at least one model"):
        Job(models=(), modes=("max",), Ts=(4,), out=None)
