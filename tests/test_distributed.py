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
    return _spawn(tmp_path_factory.mktemp("dist"), ["conversions", "failures"])


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
