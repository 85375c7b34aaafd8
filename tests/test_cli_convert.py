import json

import pytest
import torch
from click.testing import CliRunner

from ann2snn.cli import main
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def convert(*args):
    return CliRunner().invoke(main, ["convert", *args])


def test_three_checkpoints_two_convert_the_corrupt_one_is_reported(checkpoints, tmp_path):
    result = convert(
        "--model",
        FACTORY,
        "--weights",
        str(checkpoints["plain"]),
        "--weights",
        str(checkpoints["dataparallel"]),
        "--weights",
        str(checkpoints["corrupt"]),
        "--mode",
        "max",
        "--T",
        "5",
        "--out",
        str(tmp_path),
        *FAST,
    )
    assert result.exit_code == 1, result.output
    assert "FAILED corrupt (max T=5)" in result.output and "truncated or corrupt" in result.output
    assert sorted(p.name for p in tmp_path.glob("*.nir")) == ["dataparallel_max_T5.nir", "plain_max_T5.nir"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["model"]: r for r in summary["rows"]}
    assert len(summary["rows"]) == 3 and summary["failed"] == 1
    assert rows["plain"]["status"] == rows["dataparallel"]["status"] == "converted"
    assert rows["plain"]["round_trip"] == "equal" and rows["plain"]["round_trip_max_diff"] == 0
    # the DataParallel copy holds the same weights: the same accuracies to the last digit
    assert rows["plain"]["snn_accuracy"] == rows["dataparallel"]["snn_accuracy"]
    assert rows["plain"]["ann_accuracy"] >= 90
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["file"] is None
    assert "corrupt.pt" in rows["corrupt"]["error"]
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("model,mode,T,ann_accuracy,snn_accuracy,conversion_s")


def test_rerun_skips_finished_combinations_unless_force(checkpoints, tmp_path):
    args = [
        "--model",
        FACTORY,
        "--weights",
        str(checkpoints["plain"]),
        "--mode",
        "max",
        "--T",
        "2",
        "--T",
        "3",
        "--out",
        str(tmp_path),
        "--json",
        *FAST,
    ]
    first = convert(*args)
    assert first.exit_code == 0, first.output
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nir")}
    assert len(stamps) == 2
    second = convert(*args)
    assert second.exit_code == 0, second.output
    rows = json.loads(second.stdout)["rows"]
    assert [r["status"] for r in rows] == ["reused", "reused"]
    assert [r["snn_accuracy"] for r in rows] == [r["snn_accuracy"] for r in json.loads(first.stdout)["rows"]]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.nir")} == stamps
    third = convert(*args, "--force")
    assert [r["status"] for r in json.loads(third.stdout)["rows"]] == ["converted", "converted"]


def test_changed_settings_do_not_replace_a_finished_combination_without_force(checkpoints, tmp_path):
    args = [
        "--model",
        FACTORY,
        "--weights",
        str(checkpoints["plain"]),
        "--mode",
        "max",
        "--T",
        "3",
        "--out",
        str(tmp_path),
        "--json",
        *FAST,
    ]
    assert convert(*args).exit_code == 0
    nir_file = tmp_path / "plain_max_T3.nir"
    before = nir_file.read_bytes()
    refused = convert(*args, "--v-init", "0.25")
    assert refused.exit_code == 1
    row = json.loads(refused.stdout)["rows"][0]
    assert row["status"] == "failed" and "v_init: 0.5 -> 0.25" in row["error"] and "--force" in row["error"]
    assert nir_file.read_bytes() == before
    forced = convert(*args, "--v-init", "0.25", "--force")
    assert json.loads(forced.stdout)["rows"][0]["status"] == "converted" and nir_file.read_bytes() != before


def test_pickled_model_is_refused_without_the_flag_and_loaded_with_it(checkpoints, tmp_path):
    refused = convert("--model", str(checkpoints["whole"]), "--out", str(tmp_path), *FAST)
    assert refused.exit_code == 2
    assert "--trust-pickle" in refused.output and "arbitrary code" in refused.output
    assert not list(tmp_path.iterdir())
    loaded = convert(
        "--model",
        str(checkpoints["whole"]),
        "--trust-pickle",
        "--mode",
        "max",
        "--T",
        "3",
        "--out",
        str(tmp_path),
        *FAST,
    )
    assert loaded.exit_code == 0, loaded.output
    assert (tmp_path / "whole_max_T3.nir").is_file()


def test_a_whole_model_given_as_weights_points_to_trust_pickle(checkpoints, tmp_path):
    result = convert(
        "--model", FACTORY, "--weights", str(checkpoints["whole"]), "--out", str(tmp_path), "--json", *FAST
    )
    assert result.exit_code == 1
    error = json.loads(result.stdout)["rows"][0]["error"]
    assert "not a plain state_dict" in error and "--trust-pickle" in error


def test_npz_with_flat_inputs_and_npy_without_labels(checkpoints, tmp_path):
    import numpy as np

    from ann2snn.zoo import load_embedded

    test = load_embedded("test").subset(20)
    np.savez(tmp_path / "data.npz", x=test.images.reshape(20, 784).numpy(), y=test.labels.numpy())
    np.save(tmp_path / "inputs.npy", test.images.numpy())
    common = ["--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "max", "--T", "3", "--json", *FAST]
    with_labels = convert(
        *common, "--data", str(tmp_path / "data.npz"), "--input-shape", "1,28,28", "--out", str(tmp_path / "npz")
    )
    assert with_labels.exit_code == 0, with_labels.output
    assert json.loads(with_labels.stdout)["rows"][0]["ann_accuracy"] >= 90
    no_labels = convert(*common, "--data", str(tmp_path / "inputs.npy"), "--out", str(tmp_path / "npy"))
    assert no_labels.exit_code == 0, no_labels.output
    row = json.loads(no_labels.stdout)["rows"][0]
    assert row["snn_accuracy"] is None and row["ann_accuracy"] is None and row["round_trip"] == "equal"


def test_flat_inputs_without_input_shape_fail_with_a_one_line_error(tmp_path):
    import numpy as np

    np.save(tmp_path / "flat.npy", np.zeros((4, 784), dtype=np.float32))
    result = convert(
        "--model",
        FACTORY,
        "--no-weights",
        "--data",
        str(tmp_path / "flat.npy"),
        "--mode",
        "max",
        "--T",
        "2",
        "--out",
        str(tmp_path / "out"),
        *FAST,
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "FAILED MnistCNN" in result.output
    assert "cannot take samples of shape (784,)" in result.output and "--input-shape" in result.output


@pytest.mark.parametrize(
    ("args", "option", "words"),
    [
        (["--mode", "150%"], "--mode", "150%"),
        (["--weights", "missing.pt"], "--weights", "missing.pt"),
        (["--data", "nowhere"], "--data", "nowhere"),
        (["--input-shape", "1,-28"], "--input-shape", "1,-28"),
        (["--T", "0"], "--T", "0"),
        (["--device", "tpu"], "--device", "tpu"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(args, option, words):
    result = convert("--model", FACTORY, *args)
    assert result.exit_code == 2, result.output
    assert option in result.output and words in result.output


def test_bad_factory_is_a_usage_error_naming_the_module():
    result = convert("--model", "no_such_package.models:Net")
    assert result.exit_code == 2
    assert "--model" in result.output and "no_such_package" in result.output


def test_weights_with_missing_and_unexpected_keys_are_listed(checkpoints, tmp_path):
    import torch

    state = torch.load(checkpoints["plain"], weights_only=True)
    state["head.extra"] = state.pop("network.13.bias")
    torch.save(state, tmp_path / "renamed.pt")
    result = convert(
        "--model", FACTORY, "--weights", str(tmp_path / "renamed.pt"), "--out", str(tmp_path / "o"), "--json", *FAST
    )
    error = json.loads(result.stdout)["rows"][0]["error"]
    assert "missing keys: network.13.bias" in error and "unexpected keys: head.extra" in error


def test_idx_folder_calibrates_on_its_training_split(shared_mnist, tmp_path):
    result = convert(
        "--model",
        "ann2snn.zoo:load_mnist_cnn",
        "--no-weights",
        "--data",
        str(shared_mnist),
        "--mode",
        "max",
        "--T",
        "2",
        "--out",
        str(tmp_path),
        "--json",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["settings"]["calibration_source"] == f"the training split of {shared_mnist}"
    assert summary["rows"][0]["model"] == "load_mnist_cnn" and summary["rows"][0]["ann_accuracy"] >= 90


def test_the_same_mode_twice_is_a_usage_error():
    result = convert("--model", FACTORY, "--no-weights", "--mode", "1/2", "--mode", "0.5")
    assert result.exit_code == 2 and "'1/2' and '0.5' are the same" in result.output


def test_calibrate_converts_once_per_T(checkpoints, tmp_path):
    args = [
        "--model",
        FACTORY,
        "--weights",
        str(checkpoints["plain"]),
        "--mode",
        "99.9%",
        "--T",
        "2",
        "--T",
        "3",
        "--calibrate",
        "--channel-wise",
        "--out",
        str(tmp_path),
        "--json",
        *FAST,
    ]
    result = convert(*args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["T"], r["simulated_T"], r["round_trip"]) for r in rows] == [(2, 2, "equal"), (3, 3, "equal")]


def test_calibrate_weights_implies_calibrate_and_is_recorded(checkpoints, tmp_path):
    args = [
        "--model",
        FACTORY,
        "--weights",
        str(checkpoints["plain"]),
        "--mode",
        "99.9%",
        "--T",
        "2",
        "--calibrate-weights",
        "--out",
        str(tmp_path),
        "--json",
        *FAST,
    ]
    result = convert(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["settings"]["calibrate"] is True and summary["settings"]["calibrate_weights"] is True
    assert [(r["T"], r["round_trip"]) for r in summary["rows"]] == [(2, "equal")]


def test_portable_export_profile(checkpoints, tmp_path):
    import nir

    args = [
        "--model",
        FACTORY,
        "--weights",
        str(checkpoints["plain"]),
        "--mode",
        "99.9%",
        "--T",
        "3",
        "--export-profile",
        "portable",
        "--out",
        str(tmp_path),
        "--json",
        *FAST,
    ]
    result = convert(*args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    kinds = {type(n).__name__ for n in nir.read(row["file"]).nodes.values()}
    assert "SumPool2d" in kinds and "AvgPool2d" not in kinds
    bad = convert(*args[: -len(FAST) - 1], "--export-profile", "tiny")
    assert bad.exit_code == 2 and "--export-profile" in bad.output


def test_calibrate_samples_reaches_the_converter_and_the_settings(checkpoints, tmp_path):
    from ann2snn.jobfile import JobFileError, read_job

    args = ["--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "2"]
    result = convert(*args, "--calibrate", "--calibrate-samples", "20", "--out", str(tmp_path), "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["calibrate_samples"] == 20
    bad = convert(*args, "--calibrate", "--calibrate-samples", "0", "--out", str(tmp_path / "bad"), *FAST)
    assert bad.exit_code == 2 and "--calibrate-samples" in bad.output
    alone = convert(*args, "--calibrate-samples", "20", "--out", str(tmp_path / "alone"), *FAST)
    assert alone.exit_code == 2 and "calibrate_samples=20 needs calibrate" in alone.output
    # more than the calibration data: the count it fits on is recorded (FAST: --calib-size 50)
    more = convert(*args, "--calibrate", "--calibrate-samples", "900", "--out", str(tmp_path / "more"), "--json", *FAST)
    assert json.loads(more.stdout)["settings"]["calibrate_samples"] == 50
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        f'modes = ["max"]\nT = [2]\ncalibrate = true\ncalibrate_samples = 7\n[[models]]\nmodel = "{FACTORY}"\n'
        "no_weights = true\n"
    )
    job = read_job(job_file)
    assert job.calibrate_samples == 7 and job.settings()["calibrate_samples"] == 7
    assert job.converter("max", [torch.zeros(1, 1, 28, 28)], None, calibrate_T=2).calibration_samples == 7
    assert "calibrate_samples" not in type(job)(job.models, job.modes, job.Ts, job.out, calibrate=True).settings()
    job_file.write_text(job_file.read_text().replace("calibrate_samples = 7", 'calibrate_samples = "7"'))
    with pytest.raises(JobFileError, match="calibrate_samples"):
        read_job(job_file)
