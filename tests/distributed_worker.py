"""Code run inside the processes that tests/test_distributed.py starts (torch.multiprocessing,
gloo on the CPU): each scenario returns what the parent compares with a single-process run."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ann2snn.data import DataSource
from ann2snn.models import ModelSpec
from ann2snn.pipeline import Job, ModelEntry, run_job
from converter import Converter
from simulator import distributed, evaluate
from tests.nets import cnn, inputs, randomize_bn

#: Calibration samples in batches of 8: 5 batches (3 for rank 0, 2 for rank 1), the last one short.
CALIBRATION = 37
#: Evaluation samples in batches of 10: 3 batches (2 for rank 0, 1 for rank 1), the last one short.
EVALUATION = 25


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(calibration [37, 1, 8, 8], evaluation [25, 1, 8, 8], labels [25])``, fixed seeds."""
    x = inputs((1, 8, 8), CALIBRATION + EVALUATION)
    labels = torch.randint(0, 10, (EVALUATION,), generator=torch.Generator().manual_seed(5))
    return x[:CALIBRATION], x[CALIBRATION:], labels


def conversions() -> dict:
    """Scales, parameters and evaluation totals of two conversions (max; 99.9% calibrated for T=4)
    of the test CNN, as plain tensors and numbers."""
    calib, x, labels = data()
    batches = [calib[i : i + 8] for i in range(0, CALIBRATION, 8)]
    results = {}
    for name, converter in (
        ("max", Converter("max", dataloader=batches)),
        ("99.9%", Converter("99.9%", dataloader=batches, calibrate_T=4, calibration_samples=20)),
    ):
        snn = converter(randomize_bn(cnn()))
        meta = snn.meta["ann2snn"]
        evaluation = evaluate(snn, [(x[i : i + 10], labels[i : i + 10]) for i in range(0, EVALUATION, 10)], 6)
        early = evaluate(snn, [(x[i : i + 10], labels[i : i + 10]) for i in range(0, EVALUATION, 10)], 6, early_exit=2)
        one_batch = evaluate(snn, [(x, labels)], 6)  # fewer batches than processes
        results[name] = {
            "lambdas": meta["lambdas"],
            "calibration_samples": meta["calibration_samples"],
            "state": {k: v.clone() for k, v in snn.state_dict().items()},
            "correct": evaluation.correct,
            "spikes": evaluation.spikes,
            "samples": evaluation.samples,
            "early_steps": early.steps,
            "early_correct": early.correct,
            "one_batch_correct": one_batch.correct,
        }
    return results


def failures() -> dict:
    """A step that fails on rank 1 only, seen from both ranks."""
    seen = {}

    def fail_on_rank_1() -> int:
        if distributed.rank() == 1:
            raise FileNotFoundError("no such file: /data/rank1/missing.npz")
        return 0

    try:
        distributed.gather("load", fail_on_rank_1)
    except Exception as exc:
        seen["gather"] = f"{type(exc).__name__}: {exc}"
    seen["after"] = distributed.gather("after", distributed.rank)  # the ranks are still in step
    return seen


def timeout() -> dict:
    """Rank 1 does not join a collective: rank 0's ends with an error after the group's timeout."""
    if distributed.rank() == 1:
        time.sleep(2.5)
        return {}
    start = time.perf_counter()
    try:
        distributed.gather("waits", lambda: 0)
    except Exception as exc:
        return {"error": type(exc).__name__, "seconds": time.perf_counter() - start}
    return {"error": None}


def pipeline_job(out: Path, data: DataSource | None = None) -> Job:
    """The seed CNN on 25 embedded test images (3 batches of 10) and 50 calibration images (one
    batch: rank 1 records none), 99.9% calibrated for T=4."""
    from ann2snn.zoo.mnist import embedded_data_dir

    spec = ModelSpec(factory="ann2snn.zoo.mnist_cnn:MnistCNN", weights=embedded_data_dir() / "mnist_cnn.pt")
    return Job(
        models=(ModelEntry("cnn", spec),),
        modes=("99.9%",),
        Ts=(4,),
        out=out,
        data=data or DataSource("mnist"),
        calib_size=50,
        limit=25,
        batch_size=10,
        check_samples=2,
        calibrate=True,
    )


def pipeline(out: Path) -> dict:
    """``run_job`` on every rank, each with its own output folder: rank 0's summary and files."""
    summary = run_job(pipeline_job(out / f"rank{distributed.rank()}"), quiet=True)
    missing, error = out / "missing.npz", None
    try:  # rank 1's data source does not exist
        run_job(pipeline_job(out / "missing", DataSource("npz", missing) if distributed.rank() == 1 else None))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    files = sorted(p.name for p in (out / f"rank{distributed.rank()}").glob("*")) if distributed.rank() else []
    return {"summary": summary.to_dict(), "missing": error, "files": files}


SCENARIOS = {"conversions": conversions, "failures": failures, "timeout": timeout, "pipeline": pipeline}


def run(rank: int, world: int, init_file: str, out: str, scenarios: list[str], timeout_s: float) -> None:
    """One process: join the group, run ``scenarios``, save their results to ``out/rank<r>.pt``."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
    )
    try:
        results = {name: SCENARIOS[name](Path(out)) if name == "pipeline" else SCENARIOS[name]() for name in scenarios}
    finally:
        if scenarios != ["timeout"]:
            dist.destroy_process_group()
    torch.save(results, Path(out) / f"rank{rank}.pt")
    if scenarios == ["timeout"]:  # the group is left broken on purpose: skip gloo's teardown at exit,
        os._exit(0)  # which can abort the process (SIGABRT, seen once in a full run) after the result is saved
