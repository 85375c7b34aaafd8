"""Small process-group helpers for runs under ``torch.distributed`` (``torchrun``): who am I,
which batches are mine, and collectives that never leave a rank waiting for a rank that failed.

Nothing here starts a process group: a single process (no group, or a group of one) is the
default, every helper then answers for one process (rank 0 of 1) and no collective runs. The
launcher's environment is read by the application layer (:mod:`ann2snn.distributed`).

Sharding is by batch index, round robin: with ``W`` processes, rank ``r`` takes the batches
``i`` with ``i % W == r`` (:func:`owns`). Every batch is taken by exactly one rank, whatever the
number of batches, and each sample stays in the batch it has in a single-process run, so the
per-sample results (and the exact integer totals merged from them) equal that run's.

Failures: a rank whose part raises would leave the others blocked in the next collective.
:func:`gather` and :func:`agree` first exchange every rank's status (one small
``all_gather_object``), so that every rank raises when any rank failed: the failing rank its own
error, the others :class:`RankFailed` naming the failing rank and its error. A rank that dies
without a word is caught by the collectives' timeout (set when the group is created) or by
``torchrun``, which ends the other workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

R = TypeVar("R")


class RankFailed(RuntimeError):
    """Another rank failed in a step all ranks take together; ``rank`` is the failing rank and the
    message is ``rank N: <its error>``."""

    def __init__(self, rank: int, error: str) -> None:
        super().__init__(f"rank {rank}: {error}")
        self.rank = rank


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of processes sharing the work (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in ``[0, world_size())`` (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0, the rank that prints and writes files (and in a single process)."""
    return rank() == 0


def owns(index: int) -> bool:
    """Whether batch ``index`` (0-based, in data order) is this rank's: ``index % world_size() == rank()``."""
    return index % world_size() == rank()


def batch_shares(batch_sizes: list[int], processes: int | None = None) -> list[int]:
    """Samples each rank takes when batches of ``batch_sizes`` (in order) are shared round robin
    by ``processes`` ranks (default: :func:`world_size`); the shares add up to ``sum(batch_sizes)``.

    Example:
        >>> batch_shares([100] * 100 + [1], processes=2)  # 10,001 samples in batches of 100
        [5001, 5000]
    """
    processes = world_size() if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    return [sum(batch_sizes[r::processes]) for r in range(processes)]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class OutOfStep(RuntimeError):
    """The ranks reached different collective steps (a rank skipped one): the run cannot go on."""


def _exchange(step: str, error: BaseException | None, result: Any) -> list[Any]:
    """Every rank's ``result``, after checking that all ranks are at ``step`` and none failed."""
    objects: list[Any] = [None] * world_size()
    dist.all_gather_object(objects, (step, None if error is None else _describe(error), result))
    steps = {obj[0] for obj in objects}
    if len(steps) > 1:
        where = ", ".join(f"rank {r} at {obj[0]!r}" for r, obj in enumerate(objects))
        raise OutOfStep(f"the ranks are out of step ({where}): a rank skipped a collective step")
    if error is not None:
        raise error
    failed = [(r, obj[1]) for r, obj in enumerate(objects) if obj[1] is not None]
    if failed:
        raise RankFailed(*failed[0])
    return [obj[2] for obj in objects]


def agree(step: str, error: BaseException | None) -> None:
    """Exchange every rank's status at ``step``; raise on every rank when any rank failed.

    Called by every rank at the same point, with the exception its part raised (or None).

    Raises:
        The local ``error`` on a rank that failed; :class:`RankFailed` naming the lowest failing
        rank and its error on the others; :class:`OutOfStep` when the ranks called this at
        different steps. Nothing in a single process but ``error`` itself.
    """
    if not is_distributed():
        if error is not None:
            raise error
        return
    _exchange(step, error, None)


def gather(step: str, fn: Callable[[], R]) -> list[R]:
    """Run ``fn`` on this rank and return every rank's result, in rank order (``[fn()]`` in a
    single process). The results travel pickled: keep them small (counts, not histograms).

    Raises:
        As :func:`agree`: ``fn``'s own exception, or :class:`RankFailed` when another rank's ``fn``
        raised.
    """
    if not is_distributed():
        return [fn()]
    try:
        result, error = fn(), None
    except Exception as exc:
        result, error = None, exc
    return _exchange(step, error, result)


def checked(step: str, fn: Callable[[], R]) -> R:
    """Run ``fn`` on this rank and return its result once every rank has run its own without
    error (:func:`agree`); the results are not exchanged."""
    if not is_distributed():
        return fn()
    try:
        result, error = fn(), None
    except Exception as exc:
        result, error = None, exc
    _exchange(step, error, None)
    return result  # type: ignore[return-value]  # fn returned on every rank


def broadcast_object(obj: R, src: int = 0) -> R:
    """Rank ``src``'s ``obj`` on every rank (pickled; ``obj`` itself in a single process)."""
    if not is_distributed():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _collective_device() -> torch.device:
    """Where collective tensors must be: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over all ranks (``"sum"`` or ``"max"``), a new tensor on ``tensor``'s
    device; ``tensor`` itself in a single process. Integer sums and maxima are exact, so the
    result does not depend on how the data was split.

    Raises:
        ValueError: an unknown ``op``.
    """
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"op must be one of {sorted(ops)}, got {op!r}")
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_collective_device(), copy=True).contiguous()
    dist.all_reduce(work, op=ops[op])
    return work.to(tensor.device)


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s, in place (nothing
    in a single process), so that all ranks hold one model even where a fit is not bit-for-bit
    reproducible (e.g. GPU kernels with atomic additions)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            work = tensor.detach().to(_collective_device(), copy=True).contiguous()
            dist.broadcast(work, src=src)
            tensor.copy_(work.to(tensor.device))
