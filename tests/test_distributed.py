"""torch.distributed: two gloo processes on the CPU give the single-process scales, parameters
and evaluation totals exactly; a failing rank makes every rank raise, naming it; a rank that
does not join ends in the collective timeout, not a hang."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from simulator import distributed
from tests import distributed_worker as worker


def _spawn(tmp_path, scenarios: list[str], timeout_s: float = 60.0) -> list[dict]:
    """Run ``scenarios`` in two spawned processes; their results, by rank."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    try:
        socket.socket().close()
        context = torch.multiprocessing.spawn(
            worker.run,
            args=(2, str(tmp_path / "init"), str(tmp_path), scenarios, timeout_s),
            nprocs=2,
            join=False,
        )
    except (OSError, RuntimeError) as exc:  # no processes or sockets here (a sandbox)
        pytest.skip(f"cannot start 2 processes: {exc}")
    while not context.join(timeout=120):
        pass
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    return _spawn(tmp_path_factory.mktemp("dist"), ["conversions", "failures", "pipeline"])


@pytest.fixture(scope="module")
def one_process() -> dict:
    torch.set_num_threads(1)
    return worker.conversions()


@pytest.mark.parametrize("mode", ["max", "99.9%"])
def test_two_processes_give_the_single_process_scales_parameters_and_counts(two_ranks, one_process, mode):
    alone = one_process[mode]
    for rank in two_ranks:
        got = rank["conversions"][mode]
        assert got["lambdas"] == alone["lambdas"]  # bit for bit (floats compared with ==)
        assert got["calibration_samples"] == alone["calibration_samples"] == worker.CALIBRATION
        assert got["state"].keys() == alone["state"].keys()
        assert all(torch.equal(got["state"][k], alone["state"][k]) for k in alone["state"])
        assert got["samples"] == alone["samples"] == worker.EVALUATION
        assert torch.equal(got["correct"], alone["correct"]) and got["spikes"] == alone["spikes"]
        assert got["early_steps"] == alone["early_steps"] < 6 * worker.EVALUATION
        assert torch.equal(got["early_correct"], alone["early_correct"])
        assert torch.equal(got["one_batch_correct"], alone["one_batch_correct"])


def test_a_rank_that_fails_makes_every_rank_raise_naming_it(two_ranks):
    zero, one = (r["failures"] for r in two_ranks)
    assert zero["gather"] == "RankFailed: rank 1: FileNotFoundError: no such file: /data/rank1/missing.npz"
    assert one["gather"] == "FileNotFoundError: no such file: /data/rank1/missing.npz"
    assert zero["after"] == one["after"] == [0, 1]


def test_a_rank_that_does_not_join_ends_in_the_timeout(tmp_path):
    zero, _ = _spawn(tmp_path, ["timeout"], timeout_s=1.0)
    assert zero["timeout"]["error"] is not None and 0.5 < zero["timeout"]["seconds"] < 2.5


def test_a_single_process_needs_no_group():
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.gather("step", lambda: 7) == [7]
    t = torch.tensor([1, 2])
    assert distributed.all_reduce(t) is t
    with pytest.raises(ValueError, match="op must be one of"):
        distributed.all_reduce(t, op="mean")


def test_batch_shares_take_every_sample_once_when_uneven():
    assert distributed.batch_shares([10, 10, 5], processes=2) == [15, 10]
    assert distributed.batch_shares([3], processes=2) == [3, 0]
    assert sum(distributed.batch_shares([100] * 33 + [7], processes=4)) == 3307
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        distributed.batch_shares([1], processes=0)


def _nir_facts(path) -> tuple:
    import h5py

    """The scales, the reference output and every weight and bias of a .nir file."""
    with h5py.File(path, "r") as f:
        meta, nodes = f["node/metadata"], f["node/nodes"]
        params = {f"{n}/{k}": nodes[n][k][()].tolist() for n in nodes for k in ("weight", "bias") if k in nodes[n]}
        assert len(params) == 8  # 4 Conv/Linear layers
        return meta["lambdas"][()], meta["reference_output"][()].tolist(), params


def test_run_job_on_two_ranks_equals_one_process_and_rank_0_alone_writes(two_ranks, tmp_path):
    from ann2snn.pipeline import run_job

    torch.set_num_threads(1)
    alone = run_job(worker.pipeline_job(tmp_path), quiet=True).to_dict()
    zero, one = (r["pipeline"] for r in two_ranks)
    assert zero["summary"]["rows"] == one["summary"]["rows"]  # every rank returns rank 0's summary
    got, want = zero["summary"]["rows"][0], alone["rows"][0]
    assert got["status"] == want["status"] == "converted" and got["round_trip"] == "equal"
    assert got["accuracy_per_t"] == want["accuracy_per_t"] and got["ann_accuracy"] == want["ann_accuracy"]
    assert _nir_facts(got["file"]) == _nir_facts(want["file"])
    settings = zero["summary"]["settings"]
    assert (settings["world_size"], alone["settings"]["world_size"]) == (2, 1)
    assert settings["evaluation_samples_per_rank"] == [15, 10] and settings["calibration_samples_per_rank"] == [50, 0]
    assert one["files"] == []  # rank 1 wrote nothing


def test_a_rank_whose_data_source_is_missing_ends_the_run_naming_rank_and_path(two_ranks):
    zero, one = (r["pipeline"]["missing"] for r in two_ranks)
    assert zero.startswith("RankFailed: rank 1: ValueError: cannot read ") and "missing.npz" in zero
    assert one.startswith("ValueError: cannot read ") and "missing.npz" in one


def test_world_size_without_the_other_variables_is_refused(monkeypatch):
    from click.testing import CliRunner

    from ann2snn.cli import main
    from ann2snn.distributed import init_from_env, launch_world_size

    with pytest.raises(ValueError) as caught:
        launch_world_size({"WORLD_SIZE": "2", "RANK": "0"})
    assert str(caught.value).startswith(
        "WORLD_SIZE=2 is set but LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not: start the processes with torchrun"
    )
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' is not an integer"):
        launch_world_size({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match=r"RANK=2 is outside \[0, WORLD_SIZE=2\)"):
        launch_world_size({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"})
    assert launch_world_size({}) == launch_world_size({"WORLD_SIZE": "1"}) == 1
    assert init_from_env({}) == 1 and not dist.is_initialized()  # a single process sets nothing up
    result = CliRunner().invoke(
        main, ["convert", "--model", "ann2snn.zoo.mnist_cnn:MnistCNN", "--no-weights"], env={"WORLD_SIZE": "2"}
    )
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("Error: ValueError: WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not")
    )


def test_cli_errors_name_the_rank_under_a_launcher(tmp_path):
    from click.testing import CliRunner

    from ann2snn.cli import main

    missing = tmp_path / "node2" / "mnist"
    result = CliRunner().invoke(
        main,
        ["convert", "--model", "ann2snn.zoo.mnist_cnn:MnistCNN", "--data", str(missing)],
        env={"WORLD_SIZE": "2", "RANK": "1"},
    )
    assert result.exit_code == 2
    assert f"Error: Invalid value for '--data': rank 1: '{missing}' is not 'mnist'" in result.output


def test_torchrun_runs_convert_with_rank_0_alone_printing(tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests.cli_fixtures import FACTORY, FAST

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed beside this Python")
    root = Path(__file__).resolve().parents[1]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [torchrun, "--nproc_per_node=2", f"--master_port={port}", "-m", "ann2snn.cli", "convert"]
    command += ["--model", FACTORY, "--no-weights", "--mode", "max", "--T", "3", *FAST, "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run([*command, "--out", str(tmp_path)], cwd=root, env=env, capture_output=True, text=True)
    # a failed rank's own message comes first in stderr, torchrun's report of it last: show both
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1500:]
    summary = json.loads(done.stdout)  # one JSON document: rank 1 printed nothing
    assert summary["settings"]["world_size"] == 2 and summary["converted"] == 1
    assert summary["settings"]["evaluation_samples_per_rank"] == [10, 0]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".csv", ".json", ".json", ".nir"]
