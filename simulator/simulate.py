"""The time loop: run an SNN for T steps on constant, rate-coded or Poisson-coded input.

With ``execution="multi"`` all stateless layers run once per chunk of time steps on
``[chunk * B, ...]`` tensors (time folded into the batch axis, time-major; layers fed only by a
constant input run once per simulation) and each IF layer scans the chunk's steps in one call,
keeping its state between chunks (:mod:`simulator.executor`), so the result does not depend on
the chunk size. ``execution="single"`` calls the model once per step. Early exit:
:mod:`simulator.early_exit`. Over a data set: :mod:`simulator.evaluation`.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from simulator import compiled
from simulator.early_exit import StablePrediction, hold_after_exit, mask_after_exit
from simulator.executor import (
    GraphRunner,
    ModuleRunner,
    NotHoistable,
    Recording,
    build_plan,
    check_single_use,
    trace_or_none,
)
from simulator.integrator import Integrator
from simulator.neuron import IFNeuron

#: Key of the dict in ``GraphModule.meta`` where conversion facts are stored.
META_KEY = "ann2snn"
ENCODINGS = ("constant", "rate", "poisson")
EXECUTIONS = ("multi", "single")
#: The kernels multi-step execution may run on the CPU (:func:`simulate`'s ``cpu_kernels``).
CPU_KERNELS = ("torch", "compiled")


def if_layers(model: nn.Module) -> dict[str, IFNeuron]:
    """The model's IF layers by module path, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, IFNeuron)}


def stateful_layers(model: nn.Module) -> list[IFNeuron | Integrator]:
    """Every module that keeps state over time steps (IF layers and integrators)."""
    return [m for m in model.modules() if isinstance(m, (IFNeuron, Integrator))]


def reset_states(model: nn.Module) -> None:
    """Reset every IF layer's and integrator's membrane potential and spike counts."""
    for layer in stateful_layers(model):
        layer.reset_state()


def readout_kind(model: nn.Module) -> str:
    """``"membrane"`` if the model's output comes from an :class:`Integrator`, else
    ``"spike_count"`` (outputs are summed over time to classify).

    Example:
        >>> from simulator import IFNeuron, Integrator
        >>> readout_kind(nn.Sequential(nn.Linear(2, 3), Integrator())), readout_kind(IFNeuron())
        ('membrane', 'spike_count')
    """
    last = None
    graph = getattr(model, "graph", None)
    if graph is not None:
        out = next(n for n in graph.nodes if n.op == "output").args[0]
        if getattr(out, "op", None) == "call_module":
            last = model.get_submodule(out.target)
    else:
        last = list(model.modules())[-1]
    return "membrane" if isinstance(last, Integrator) else "spike_count"


def readout(model: nn.Module) -> str:
    """Deprecated alias of :func:`readout_kind` (the name clashed with :mod:`converter.readout`)."""
    warnings.warn("simulator.readout() is now simulator.readout_kind()", DeprecationWarning, stacklevel=2)
    return readout_kind(model)


def output_scale(model: nn.Module) -> float:
    """The factor that turns the SNN's output rate into the ANN's output units (1 if unknown)."""
    meta = getattr(model, "meta", None) or {}
    return float(meta.get(META_KEY, {}).get("output_scale", 1.0))


@dataclass
class SimulationResult:
    """What :func:`simulate` returns.

    Attributes:
        outputs: ``[T, B, ...]`` the network's output at each time step: spikes 0/1 of the
            output IF layer, an analog current if the network ends in a linear layer, or, with
            a membrane readout, the readout's potential V[t] (the current summed over steps
            1..t). With early exit, a sample's outputs after its exit step are 0 (so the summed
            output stays what it was at the exit), except under a membrane readout, where they
            hold the potential of the exit step; either way its prediction stays.
        spike_counts: per IF layer path, ``[B, ...]`` spikes emitted over the steps simulated
            (all T, or up to the end of the time chunk in which the sample exited early), in
            the potential's dtype.
        output_scale: multiply a rate by this to get the ANN's output units.
        readout: ``"spike_count"`` (outputs are per-step spikes or currents, summed over time
            to classify) or ``"membrane"`` (outputs are the output layer's potential V[t]).
        spikes: with ``record=True``, per IF layer path, the full spike train ``[T, B, ...]``
            as ``bool`` (``uint8`` spikes per step for a ``spike_rule="multi"`` layer, ``int8``
            1/0/-1 for a ``"signed"`` one); else ``None``.
        steps_used: ``[B]`` int64, the step at which each sample's prediction was taken
            (``T`` unless it exited early).
        labels: ``[B]`` integer class labels given to :func:`simulate` (``labels=``), or
            ``None``; :meth:`accuracy_per_t` and the ``repr`` use them.

    In a notebook the ``repr`` is a few lines (T, batch, output shape, IF layers, accuracy at T
    when there are labels), not the tensors.

    Example:
        >>> from simulator import IFNeuron
        >>> r = simulate(IFNeuron(), torch.tensor([[0.25, 0.5]]), T=8)  # x: [B=1, 2]
        >>> r.layer_rates()[""].tolist()  # the model is the IF layer (path ""): rate = x
        [[0.25, 0.5]]
    """

    outputs: torch.Tensor
    spike_counts: dict[str, torch.Tensor]
    output_scale: float = 1.0
    readout: str = "spike_count"
    spikes: dict[str, torch.Tensor] | None = None
    steps_used: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    @property
    def T(self) -> int:
        """Time steps simulated (the length of the time axis of ``outputs``)."""
        return int(self.outputs.shape[0])

    @property
    def batch(self) -> int:
        """Samples simulated (``B``)."""
        return int(self.outputs.shape[1])

    def __repr__(self) -> str:
        shape = ", ".join(str(n) for n in self.outputs.shape)
        lines = [f"SimulationResult: T={self.T} steps, batch {self.batch}, outputs [{shape}] ({self.readout} readout)"]
        layers = [f"{name or '(the model)'} {list(c.shape[1:])}" for name, c in self.spike_counts.items()]
        shown = ", ".join(layers[:6])
        more = f" and {len(layers) - 6} more" if len(layers) > 6 else ""
        recorded = "recorded" if self.spikes is not None else "not recorded (pass record=True)"
        lines.append(f"  IF layers ({len(layers)}): {shown}{more}; spike trains {recorded}")
        if self.steps_used is not None:
            lines.append(f"  early exit: {self.mean_steps():.2f} of {self.T} steps per sample on average")
        if self.labels is not None:
            correct = int(self.correct_per_t(self.labels)[-1])
            lines.append(f"  accuracy at t={self.T}: {100.0 * correct / self.batch:.2f} % ({correct} of {self.batch})")
        return "\n".join(lines)

    def cumulative(self) -> torch.Tensor:
        """``[T, B, ...]`` output summed over steps 1..t (spike counts for a spiking output);
        with membrane readout the outputs themselves (the potential is already a sum)."""
        return self.outputs if self.readout == "membrane" else self.outputs.cumsum(0)

    def output_rates(self) -> torch.Tensor:
        """``[T, B, ...]`` the network's output averaged over steps 1..t, times ``output_scale``:
        the ANN's output (logits) as the SNN estimates it at each t. Not the IF layers' firing
        rates: see :meth:`layer_rates`."""
        t = torch.arange(1, self.T + 1, device=self.outputs.device, dtype=self.outputs.dtype)
        return self.cumulative() / t.view(-1, *([1] * (self.outputs.dim() - 1))) * self.output_scale

    def rates(self) -> torch.Tensor:
        """The older name of :meth:`output_rates` (the output's running mean in ANN units, ``[T, B, ...]``);
        kept working."""
        return self.output_rates()

    def layer_rates(self) -> dict[str, torch.Tensor]:
        """Firing rate of every IF layer, by layer path: ``[B, ...]`` spikes per neuron per time
        step (dimensionless, in [0, 1] for one spike per step), its spike count over ``T``.

        With early exit a sample's count stops at the chunk in which it exited, so its rates
        are then lower bounds.
        """
        return {name: counts / self.T for name, counts in self.spike_counts.items()}

    def predictions(self) -> torch.Tensor:
        """``[T, B]`` predicted class at each t: argmax of the cumulative output or of the
        membrane potential (ties go to the lowest class index, as ``torch.argmax`` does)."""
        return self.cumulative().flatten(2).argmax(-1)

    def correct_per_t(self, labels: torch.Tensor) -> torch.Tensor:
        """``[T]`` int64: the *number* of correct predictions at each t for integer ``labels``
        ``[B]`` (a count, not a percentage: see :meth:`accuracy_per_t`)."""
        return (self.predictions() == labels.to(self.outputs.device).view(1, -1)).sum(1)

    def accuracy_per_t(self, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``[T]`` float64: accuracy at each t in percent, for integer ``labels`` ``[B]`` (default:
        the labels given to :func:`simulate`).

        Raises:
            ValueError: no labels here or in the result; labels not of shape ``[B]``.
        """
        labels = self.labels if labels is None else labels
        if labels is None:
            raise ValueError("accuracy_per_t needs labels: pass them, or simulate(..., labels=y)")
        check_labels(labels, self.batch)
        return self.correct_per_t(labels).double() * (100.0 / self.batch)

    def mean_steps(self) -> float:
        """Mean number of time steps used per sample (``T`` without early exit)."""
        if self.steps_used is None:
            return float(self.T)
        return float(self.steps_used.double().mean())


def rate_spikes(x: torch.Tensor, steps: int, t0: int = 0) -> torch.Tensor:
    """The regular spike trains of IF encoders driven by ``x`` (the ``"rate"`` encoding).

    Each input value ``x`` in [0, 1] is the constant current of an IF neuron with threshold 1,
    ``V[0] = 1/2`` and reset by subtraction (:mod:`simulator.neuron`), whose spikes are the
    network's input events. Its potential after step ``t`` is ``1/2 + t x - n[t]`` in [0, 1), so
    it has emitted exactly ``n[t] = floor(t x + 1/2)`` spikes; this is computed in float64 from
    that closed form (exact, whatever T), so the spike at step ``t`` is ``n[t] - n[t-1]``: a
    deterministic train with ``round(T x)`` spikes in T steps (rate ``x`` to within ``1/(2T)``;
    the deterministic "rate" input of Rueckauer et al. 2017, Front. Neurosci. 11:682, made
    regular by an IF encoder as in Sengupta et al. 2019, Front. Neurosci. 13:95).

    Args:
        x: input ``[B, ...]`` in [0, 1] (not checked here: :func:`simulate` checks it).
        steps: time steps of this chunk.
        t0: steps already simulated (the chunk covers steps ``t0 + 1 .. t0 + steps``).

    Returns:
        ``[steps, B, ...]`` spikes 0./1. in ``x``'s dtype.

    Example:
        >>> rate_spikes(torch.tensor([0.25, 0.5, 1.0]), steps=4).T.tolist()  # x: [B=3]
        [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    """
    t = torch.arange(t0, t0 + steps + 1, dtype=torch.float64, device=x.device).view(-1, *([1] * x.dim()))
    counts = torch.floor(t * x.double() + 0.5)
    return (counts[1:] - counts[:-1]).to(x.dtype)


class Encoder:
    """The input of :func:`simulate`, chunk by chunk: ``encoder(x, steps)`` gives the currents of
    the next ``steps`` steps, ``[steps * B, ...]`` time-major (it counts the steps it has given).

    ``"constant"``: the analog input ``x`` at every step. ``"rate"``: :func:`rate_spikes`.
    ``"poisson"``: a Bernoulli spike with probability ``x`` at every step, drawn with
    ``generator``. ``x`` may lose rows between chunks (early exit); the step count is shared.
    """

    def __init__(self, encoding: str, generator: torch.Generator | None = None) -> None:
        self.encoding, self.generator, self.t = encoding, generator, 0

    def __call__(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        t0, self.t = self.t, self.t + steps
        if self.encoding == "rate":
            return rate_spikes(x, steps, t0).reshape(steps * x.shape[0], *x.shape[1:])
        return encode(x, steps, self.encoding, self.generator)


def encode(x: torch.Tensor, steps: int, encoding: str, generator: torch.Generator | None) -> torch.Tensor:
    """Input currents for ``steps`` time steps, ``[steps * B, ...]`` time-major.

    ``"constant"``: the analog input ``x`` at every step. ``"poisson"``: a Bernoulli spike with
    probability ``x`` (in [0, 1], checked by :func:`simulate`) at every step, drawn with
    ``generator``. ``"rate"``: the first ``steps`` steps of :func:`rate_spikes` (use
    :class:`Encoder` to continue a train over chunks).
    """
    if encoding == "rate":
        return rate_spikes(x, steps).reshape(steps * x.shape[0], *x.shape[1:])
    repeated = x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * x.shape[0], *x.shape[1:])
    if encoding == "constant":
        return repeated
    return torch.bernoulli(repeated, generator=generator)


def model_encoding(model: nn.Module) -> str:
    """The input encoding the model was converted for (``meta['ann2snn']['input_encoding']``,
    set by ``Converter(encoding=...)`` and by the NIR import), ``"constant"`` if none."""
    meta = getattr(model, "meta", None) or {}
    return str(meta.get(META_KEY, {}).get("input_encoding", "constant"))


#: ``time_chunk`` where ``"auto"`` does not size it: Poisson input (its draws are per chunk, so
#: the chunks stay those of earlier versions), models run by their own forward, non-CPU devices.
DEFAULT_TIME_CHUNK = 5

#: ``time_chunk="auto"`` on the CPU: the most values (per sample and step, times batch, times
#: steps) that one time-varying layer's chunk may hold, so that a layer's chunk stays in the
#: last-level cache (``benchmarks/time_chunk.py``).
AUTO_CHUNK_VALUES = 2**22


def auto_time_chunk(model: nn.Module, x: torch.Tensor, T: int, encoding: str | None = None) -> int:
    """The time chunk ``simulate(model, x, T, time_chunk="auto")`` uses.

    On the CPU, for a model the multi-step executor runs as a graph, with constant or rate
    input: ``AUTO_CHUNK_VALUES // (B * widest)`` clamped to ``1 .. min(T, DEFAULT_TIME_CHUNK)``,
    where ``widest`` is the most float values per sample and step of any time-varying node (a
    convolution's output; ``bool`` spikes and ``uint8`` spike counts are compact and not
    counted). :func:`simulate` runs its first chunk as one step, which tells ``widest``, and
    the later chunks with this size; this function finds it by simulating one step of the
    first sample. Otherwise (Poisson input, a model run by its own forward, another device)
    :data:`DEFAULT_TIME_CHUNK`, at most ``T``.

    Large chunks are fast until a layer's ``[chunk * B, ...]`` tensor leaves the cache: on the
    CPU a CIFAR-10 ResNet-20 (16 x 32 x 32 floats per sample in its first stage) at batch 100
    gets chunk 2 and runs in 0.70 of chunk 5's time (``benchmarks/time_chunk.py``, 2 threads); the
    MNIST nets keep 5 (larger chunks were not consistently faster there, so ``"auto"`` never
    exceeds it). Results do not depend on the chunk (bitwise in float64; in float32 the last
    bits of a sum may, see :func:`simulate`).

    Args:
        model: the SNN (as for :func:`simulate`).
        x: the input ``[B, ...]`` (only its batch size and first sample are used).
        T: time steps (>= 1).
        encoding: as for :func:`simulate` (``None``: the model's own).

    Raises:
        ValueError: ``T < 1`` or an unknown encoding.
    """
    encoding = model_encoding(model) if encoding is None else encoding
    _check(T, None, encoding, "multi", None)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if x.shape[0] == 0:
        return min(DEFAULT_TIME_CHUNK, T)
    for hoist in (encoding == "constant", False):
        runner = _runner(model, x[:1].to(device), Encoder(encoding, None), "multi", False, hoist)
        if not _auto_sized(runner, encoding):
            return min(DEFAULT_TIME_CHUNK, T)
        try:
            with torch.no_grad():
                cast(GraphRunner, runner).run(1)
        except NotHoistable:  # as simulate does: run again without hoisting the constant part
            continue
        return _chunk_for(cast(GraphRunner, runner).widest, x.shape[0], T)
    return min(DEFAULT_TIME_CHUNK, T)


def _auto_sized(runner, encoding: str) -> bool:
    """Whether ``time_chunk="auto"`` sizes the chunks of this runner (else they are the default)."""
    return encoding != "poisson" and isinstance(runner, GraphRunner) and runner.x.device.type == "cpu"


def _chunk_for(widest: int, batch: int, T: int) -> int:
    """The ``"auto"`` chunk for a graph whose widest time-varying float tensor has ``widest``
    values per sample and step, at batch size ``batch``."""
    return max(1, min(T, DEFAULT_TIME_CHUNK, AUTO_CHUNK_VALUES // max(batch * widest, 1)))


def _check(T: int, time_chunk: int | str | None, encoding: str, execution: str, early_exit: int | None) -> None:
    if T < 1:
        raise ValueError(f"T must be >= 1 time step, got {T}")
    if isinstance(time_chunk, str):
        if time_chunk != "auto":
            raise ValueError(f"time_chunk must be an int >= 1, 'auto' or None, got {time_chunk!r}")
    elif time_chunk is not None and (isinstance(time_chunk, bool) or not isinstance(time_chunk, int)):
        raise TypeError(f"time_chunk must be an int >= 1, 'auto' or None, got {time_chunk!r}")
    elif time_chunk is not None and time_chunk < 1:
        raise ValueError(f"time_chunk must be >= 1, got {time_chunk}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    if early_exit is not None and early_exit < 1:
        raise ValueError(f"early_exit must be >= 1 step or None, got {early_exit}")


def _check_cpu_kernels(cpu_kernels: str, execution: str) -> None:
    """Raise for a ``cpu_kernels`` that :func:`simulate` does not take; build the compiled
    kernels now when they are asked for, so a missing compiler is reported before anything runs.

    Raises:
        ValueError: not one of :data:`CPU_KERNELS`, or ``"compiled"`` with ``execution="single"``.
        simulator.compiled.KernelsUnavailable: see :func:`simulator.compiled.library`.
    """
    if cpu_kernels not in CPU_KERNELS:
        raise ValueError(f"cpu_kernels must be one of {CPU_KERNELS}, got {cpu_kernels!r}")
    if cpu_kernels == "compiled":
        if execution != "multi":
            raise ValueError("cpu_kernels='compiled' runs in multi-step execution: use execution='multi'")
        compiled.library()


def _recording(model: nn.Module, record: bool | Collection[str]) -> Recording:
    """``simulate``'s ``record`` as the runners take it (:data:`simulator.executor.Recording`).

    Raises:
        ValueError: a path that is not one of the model's IF layers (naming it and them).
        TypeError: a single string (pass a list of paths).
    """
    if isinstance(record, bool):
        return record
    if isinstance(record, str):
        raise TypeError(f"record takes True/False or a list of IF layer paths, got the string {record!r}")
    layers = if_layers(model)
    unknown = [name for name in record if name not in layers]
    if unknown:
        raise ValueError(f"record: no IF layer {unknown[0]!r} in the model (IF layers: {', '.join(layers) or 'none'})")
    return frozenset(id(layers[name]) for name in record)


#: One lock per model whose IF layers hold the state of a run (:class:`ModuleRunner`): two threads
#: simulating such a model at once would advance the same potentials. Runs by
#: :class:`GraphRunner` keep their state in the runner and do not take it.
_STATE_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_STATE_LOCKS_GUARD = threading.Lock()


def state_lock(model: nn.Module) -> threading.RLock:
    """The lock that serialises the runs of ``model`` whose state its own IF layers hold."""
    with _STATE_LOCKS_GUARD:
        lock = _STATE_LOCKS.get(model)
        if lock is None:
            lock = _STATE_LOCKS[model] = threading.RLock()
        return lock


def _runner(
    model: nn.Module,
    x: torch.Tensor,
    encoder,
    execution: str,
    record: Recording,
    hoist: bool,
    lookup: bool = False,
    held: contextlib.ExitStack | None = None,
):
    """A :class:`GraphRunner` for multi-step execution of a traceable model whose IF layers are
    all graph nodes (``lookup``: its convolutions of spikes by :mod:`simulator.lookup_conv`);
    else a :class:`ModuleRunner` (the model's own forward per chunk), after taking the model's
    :func:`state_lock` into ``held`` (released when the caller has read the state)."""
    gm = trace_or_none(model)
    if gm is not None and execution != "multi":
        check_single_use(gm)  # a reused IF layer is as wrong step by step
        gm = None
    plan = None if gm is None else build_plan(gm, hoist)
    if plan is None or plan.opaque:
        if held is not None:
            held.enter_context(state_lock(model))
        return ModuleRunner(model, x, encoder, record)
    return GraphRunner(plan, x, encoder, record, lookup)


def _assemble(chunks: list[tuple[int, torch.Tensor, torch.Tensor]], T: int, batch: int) -> torch.Tensor:
    """Recorded ``(t0, rows, spikes [steps, b, ...])`` chunks as one ``[T, B, ...]`` tensor (bool,
    uint8 counts for a multi-spike layer, int8 -1/0/1 for a signed one)."""
    first = chunks[0][2]
    full = torch.zeros(T, batch, *first.shape[2:], dtype=first.dtype, device=first.device)
    for t0, rows, spikes in chunks:
        full[t0 : t0 + spikes.shape[0], rows] = spikes
    return full


def _layer_paths(model: nn.Module, runner) -> dict[str, str]:
    """Runner key (module path in the traced graph) -> IF layer path in ``model``."""
    paths = {id(layer): name for name, layer in if_layers(model).items()}
    if isinstance(runner, GraphRunner):
        return {t: paths[id(runner.plan.gm.get_submodule(t))] for t in runner.states}
    return {name: name for name in runner.layers}


def _collect_counts(model: nn.Module, runner) -> dict[str, torch.Tensor]:
    """Spike counts by IF layer path of ``model`` (registration order). Each layer's final
    :class:`~simulator.neuron.IFState` is also left in ``layer.state`` (so ``layer.v`` and
    ``layer.spike_count`` read it), as its own forward leaves it; with threads, that of the run
    that finished last."""
    layers = if_layers(model)
    if not isinstance(runner, GraphRunner):  # the layers hold this run's state (under its state_lock)
        return {name: layer.spike_count for name, layer in layers.items() if layer.spike_count is not None}
    finals = runner.final_states()
    with state_lock(model):  # not while a run whose state the layers hold is under way
        for target, state in finals.items():
            cast(IFNeuron, runner.plan.gm.get_submodule(target)).state = state
    # this run's counts, from its own states (another thread may write the layers' next)
    paths = _layer_paths(model, runner)
    counts = {paths[t]: state.count.to(state.v.dtype) for t, state in finals.items() if t in paths}
    return {name: counts[name] for name in layers if name in counts}


def _recorded(model: nn.Module, runner, T: int, batch: int) -> dict[str, torch.Tensor]:
    """Full spike trains ``[T, B, ...]`` (bool) by IF layer path of ``model``."""
    paths = _layer_paths(model, runner)
    return {paths[key]: _assemble(chunks, T, batch) for key, chunks in runner.recorded.items()}


def _run(runner, T: int, chunk: int | str, early_exit: int | None, membrane: bool = False):
    """The time loop over chunks; returns ``(outputs [T, B, ...], steps_used [B] or None)``.
    With ``membrane`` (readout) the outputs are potentials: after an early exit they hold.
    ``chunk="auto"`` (a :class:`GraphRunner` on the CPU): the first chunk is one step, which
    tells the widest layer, and the others are sized by it (:func:`auto_time_chunk`)."""
    batch, device = runner.x.shape[0], runner.x.device
    tracker = StablePrediction(early_exit, batch, device, cumulative=not membrane) if early_exit else None
    steps_used = torch.full((batch,), T, dtype=torch.long, device=device) if early_exit else None
    outputs = None
    size, end = (1 if chunk == "auto" else int(chunk)), 0
    while end < T:
        t0, steps = end, min(size, T - end)
        end += steps
        out = runner.run(steps)
        if chunk == "auto" and t0 == 0:
            size = _chunk_for(runner.widest, runner.batch, T)
        if outputs is None:
            outputs = torch.zeros(T, batch, *out.shape[2:], dtype=out.dtype, device=out.device)
        if tracker is None:
            outputs[t0 : t0 + steps] = out
            continue
        exit_step = tracker.update(out, t0)
        outputs[t0 : t0 + steps, runner.rows] = mask_after_exit(out, exit_step, t0)
        exited = exit_step > 0  # one host synchronisation per chunk, only with early exit
        cast(torch.Tensor, steps_used)[runner.rows[exited]] = exit_step[exited]
        keep = (~exited).nonzero().flatten()
        if len(keep) == 0:
            break
        if len(keep) < len(exited):
            runner.keep(keep)
            tracker.keep(keep)
    if membrane and steps_used is not None:
        outputs = hold_after_exit(cast(torch.Tensor, outputs), steps_used)
    return outputs, steps_used


@torch.no_grad()
def simulate(
    model: nn.Module,
    x: torch.Tensor,
    T: int,
    time_chunk: int | str | None = "auto",
    encoding: str | None = None,
    seed: int = 0,
    execution: str = "multi",
    record: bool | Collection[str] = False,
    early_exit: int | None = None,
    *,
    warn_silent: bool = True,
    mode: str | None = None,
    labels: torch.Tensor | None = None,
    cpu_kernels: str = "torch",
) -> SimulationResult:
    """Run ``model`` for ``T`` time steps on input ``x``.

    The IF states are reset first, so the same input gives bitwise the same output. The
    input is moved to the device of the model's parameters (CPU for a parameter-free model).

    With ``execution="multi"`` (default) each layer runs once per chunk of ``time_chunk`` steps
    and each IF layer scans the chunk's steps in one call (:mod:`simulator.executor`); layers
    fed only by a constant input (``encoding="constant"``), such as the first convolution, run
    once for the whole simulation. ``execution="single"`` calls ``model`` once per step on
    ``[B, ...]``, like hardware stepping; both give the same spikes (bitwise in float64;
    in float32 layers may sum in a different order for different batch sizes, so a spike
    exactly at threshold can rarely differ). A model that torch.fx cannot trace is run as
    ``model`` on ``[steps * B, ...]`` per chunk.

    Args:
        model: a module whose spiking layers are :class:`~simulator.neuron.IFNeuron`.
        x: input ``[B, ...]`` (e.g. ``[B, 1, 28, 28]`` pixel intensities in [0, 1]).
        T: number of time steps (>= 1).
        time_chunk: time steps per chunk in multi-step execution: an int >= 1, ``None`` (all T
            at once) or ``"auto"`` (default: on the CPU a first chunk of one step, then as many
            steps, at most 5, as keep each layer's chunk in the cache, :func:`auto_time_chunk`;
            5 for Poisson input and on other devices).
            Memory is about ``time_chunk * B`` activations per layer whatever T is; larger chunks
            are faster until they leave the cache.
        encoding: ``"constant"`` analog current, ``"rate"`` regular spikes of IF encoders
            (threshold 1, ``V[0] = 1/2``; :func:`rate_spikes`) or ``"poisson"`` spikes; ``None``
            (default): the one the model was converted for (:func:`model_encoding`; ``"constant"``
            unless ``Converter(encoding="rate")`` made it or its NIR file says so).
        seed: seed of the Poisson generator.
        execution: ``"multi"`` (default) or ``"single"`` (``time_chunk`` is then 1).
        record: ``True``: also return every IF layer's spike train ``[T, B, ...]`` as ``bool``
            (memory grows with T); a list of IF layer paths (the keys of ``spike_counts``):
            those layers' trains only. Spike counts are always returned.
        early_exit: ``k``: stop simulating a sample once its prediction has been stable for k
            steps (:mod:`simulator.early_exit`; :data:`DEFAULT_STABLE_STEPS` is a good k).
            ``None`` (default): run all T steps. Needs ``execution="multi"`` and a traceable
            model. The decision is per step; the compute stops at the end of that chunk. A
            sample's outputs after its exit step are 0, or, under a membrane readout, the
            potential of its exit step (:class:`SimulationResult`).
        mode: deprecated name of ``execution`` (warns; ``mode`` is the normalisation mode).
        warn_silent: warn, naming them, about IF layers that emitted no spike at all
            (:func:`warn_silent_layers`).
        labels: ``[B]`` integer class labels, kept in the result for
            :meth:`SimulationResult.accuracy_per_t` and its ``repr`` (optional).
        cpu_kernels: ``"torch"`` (default: every layer runs as PyTorch runs it) or
            ``"compiled"``: on the CPU, float32, C kernels compiled here at the first use
            (:mod:`simulator.compiled`) run the IF layers (bitwise the same results) and the
            convolutions of binary spikes (by table lookup: float32 sums in another order, so
            a potential within rounding of the threshold can spike one step apart); layers
            they do not cover run as with ``"torch"``. Needs ``execution="multi"``.

    Returns:
        :class:`SimulationResult` with outputs ``[T, B, ...]``.

    Raises:
        ValueError: rate or Poisson input outside [0, 1]; ``T < 1``, ``time_chunk`` below 1 or a
            string other than ``"auto"``, ``early_exit < 1``, an unknown ``encoding`` or
            ``execution``, or early exit on a model that must run as a whole; ``labels`` not of
            shape ``[B]``; a ``record`` path that is not an IF layer of the model; an unknown
            ``cpu_kernels``, or ``"compiled"`` with ``execution="single"``.
        simulator.compiled.KernelsUnavailable: ``cpu_kernels="compiled"`` and no C compiler to
            build the kernels (the message says which were tried).
        TypeError: both ``mode`` and a different ``execution``; ``time_chunk`` neither an int,
            ``"auto"`` nor None (e.g. 2.5 or True); ``record`` a single string.

    Example:
        >>> from simulator import IFNeuron
        >>> result = simulate(IFNeuron(), torch.tensor([[0.25, 0.5]]), T=8)  # x: [B=1, 2]
        >>> result.outputs.shape, result.outputs.sum(0).tolist()  # [T, B, 2]; rate = x
        (torch.Size([8, 1, 2]), [[2.0, 4.0]])
    """
    if mode is not None:
        # stacklevel 3: this frame, torch.no_grad's wrapper, the caller
        warnings.warn("simulate(mode=...) is now simulate(execution=...)", DeprecationWarning, stacklevel=3)
        if execution not in ("multi", mode):
            raise TypeError(f"pass execution only, not mode={mode!r} and execution={execution!r}")
        execution = mode
    encoding = model_encoding(model) if encoding is None else encoding
    _check(T, time_chunk, encoding, execution, early_exit)
    _check_cpu_kernels(cpu_kernels, execution)
    if labels is not None:
        check_labels(labels, x.shape[0])
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = x.to(device)
    if encoding in ("poisson", "rate"):
        check_probabilities(x, encoding)
    hoist = encoding == "constant"
    recording = _recording(model, record)
    with contextlib.ExitStack() as held:  # the model's state lock, if its own forward runs it
        while True:
            generator = torch.Generator(device=device).manual_seed(seed) if encoding == "poisson" else None
            runner = _runner(
                model, x, Encoder(encoding, generator), execution, recording, hoist, cpu_kernels == "compiled", held
            )
            if early_exit and not isinstance(runner, GraphRunner):
                raise ValueError("early_exit needs execution='multi' and a model that torch.fx can trace")
            chunk: int | str
            if execution == "single":
                chunk = 1
            elif time_chunk == "auto":
                chunk = "auto" if _auto_sized(runner, encoding) else min(DEFAULT_TIME_CHUNK, T)
            else:
                chunk = T if time_chunk is None else min(int(time_chunk), T)
            try:
                token = compiled.ENABLED.set(cpu_kernels == "compiled")
                try:
                    outputs, steps_used = _run(runner, T, chunk, early_exit, readout_kind(model) == "membrane")
                finally:
                    compiled.ENABLED.reset(token)
                break
            except NotHoistable:  # a size of the constant part is used per step: run it per chunk
                hoist = False
        spikes = _recorded(model, runner, T, x.shape[0]) if recording is not False else None
        counts = _collect_counts(model, runner)
        if warn_silent:
            warn_silent_layers({name: float(c.sum()) for name, c in counts.items()}, x.shape[0], T)
    return SimulationResult(outputs, counts, output_scale(model), readout_kind(model), spikes, steps_used, labels)


def check_labels(labels: torch.Tensor, batch: int) -> None:
    """Raise unless ``labels`` is a ``[batch]`` tensor of integer class labels.

    Raises:
        TypeError: not an integer tensor (naming its type or dtype).
        ValueError: not of shape ``[batch]`` (naming both shapes).
    """
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        kind = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"labels must be an integer tensor of class indices [B], got {kind}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"labels must have shape [B] = [{batch}] (one per sample), got {list(labels.shape)}")


def check_probabilities(x: torch.Tensor, encoding: str = "poisson") -> None:
    """Raise ValueError unless every value of ``x`` is in [0, 1] (Poisson or rate input).

    Raises:
        ValueError: naming the option and the range of ``x``.
    """
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        meaning = "a spike probability per step" if encoding == "poisson" else "spikes per step of an IF encoder"
        raise ValueError(
            f"encoding={encoding!r} takes inputs in [0, 1] ({meaning}); these range over "
            f"[{low:g}, {high:g}]: rescale them, or use encoding='constant' (any real value)"
        )


def warn_silent_layers(spikes: Mapping[str, float], samples: int, T: int) -> None:
    """Warn (``UserWarning``), naming them, about IF layers that emitted no spike at all over
    ``samples`` samples and ``T`` steps: a silent layer passes nothing on, and a silent spiking
    output predicts class 0 for every sample."""
    silent = [name for name, total in spikes.items() if total == 0]
    if silent:
        names = ", ".join(repr(name) if name else "(the model itself)" for name in silent)
        warnings.warn(
            f"IF layer(s) {names} emitted no spike on any of {samples} sample(s) in T={T} steps: nothing passes "
            "through them (a spike-count readout then predicts class 0); try a larger T, v_init=0.5 or the "
            "membrane readout",
            UserWarning,
            stacklevel=3,
        )
