"""Runs under ``torchrun``: the process group from the launcher's environment, and the local
rank's GPU.

``torchrun --nproc_per_node=N -m ann2snn.cli convert ...`` starts N processes and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each;
:func:`init_from_env` (called by :func:`ann2snn.pipeline.run_job`) joins them into one gloo
process group. Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is set up: a single
process stays the default. The collectives are small CPU tensors (histograms, counts), so gloo
serves CPU and GPU runs alike; the model is not trained, so NCCL would gain nothing.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from simulator import distributed

#: What ``torchrun`` sets in every process; all of them are needed.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Seconds a collective waits for the other ranks before it fails (``ANN2SNN_DIST_TIMEOUT``).
DEFAULT_TIMEOUT = 600.0


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"{name}={env[name]!r} is not an integer (set by torchrun)") from None


def launch_world_size(env: Mapping[str, str] | None = None) -> int:
    """The number of processes a launcher started (``WORLD_SIZE``; 1 when it is not set).

    Raises:
        ValueError: ``WORLD_SIZE`` set but not an integer >= 1, or set (> 1) without the other
            variables of :data:`LAUNCH_VARIABLES` (naming the missing ones), or ``RANK`` outside
            ``[0, WORLD_SIZE)``.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return 1
    world = _integer(env, "WORLD_SIZE")
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world}: expected the number of processes, >= 1")
    missing = [name for name in LAUNCH_VARIABLES if name not in env]
    if world > 1 and missing:
        raise ValueError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: start the "
            f"processes with torchrun (torchrun --nproc_per_node={world} -m ann2snn.cli ...), which sets "
            f"{', '.join(LAUNCH_VARIABLES)}, or unset WORLD_SIZE for a single process"
        )
    if world > 1 and not 0 <= _integer(env, "RANK") < world:
        raise ValueError(f"RANK={env['RANK']} is outside [0, WORLD_SIZE={world})")
    return world


def timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    """The collectives' timeout: ``ANN2SNN_DIST_TIMEOUT`` seconds, default :data:`DEFAULT_TIMEOUT`.

    Raises:
        ValueError: a value that is not a positive number.
    """
    env = os.environ if env is None else env
    text = env.get("ANN2SNN_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"ANN2SNN_DIST_TIMEOUT={text!r}: expected seconds, a positive number")
    return value


def init_from_env(env: Mapping[str, str] | None = None) -> int:
    """Join the processes a launcher started into one gloo process group (once); the world size.

    A group that is already initialised (the caller made one) is used as it is; without
    ``WORLD_SIZE``, or with ``WORLD_SIZE=1``, nothing is done and 1 is returned.

    Raises:
        ValueError: the environment is incomplete or wrong (:func:`launch_world_size`,
            :func:`timeout_seconds`).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    world = launch_world_size(env)
    if world == 1:
        return 1
    timeout = timeout_seconds(env)
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=timeout))
    # the group this made is destroyed before the interpreter exits: left to the C++ destructors
    # at exit, gloo's threads sometimes aborted a rank ("terminate called without an active
    # exception", SIGABRT, seen in tests/test_distributed.py under load)
    atexit.register(_destroy_group)
    return world


def _destroy_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: str, env: Mapping[str, str] | None = None) -> str:
    """The device this rank runs on: ``"cuda"`` becomes the local rank's GPU (``cuda:LOCAL_RANK``,
    made the current device) under a launcher; any other device (``cpu``, ``cuda:N``, ``mps``) is
    used as given.

    Raises:
        ValueError: ``LOCAL_RANK`` names a GPU this machine does not have.
    """
    env = os.environ if env is None else env
    if device != "cuda" or not distributed.is_distributed() or "LOCAL_RANK" not in env:
        return device
    local = _integer(env, "LOCAL_RANK")
    if local >= torch.cuda.device_count():
        raise ValueError(
            f"rank {distributed.rank()}: LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} CUDA "
            "device(s): start at most that many processes per node (--nproc_per_node)"
        )
    torch.cuda.set_device(local)
    return f"cuda:{local}"
