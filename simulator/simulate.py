"""The time loop: run an SNN for T steps on constant or Poisson-coded input.

All stateless layers run once per chunk of time steps on ``[chunk * B, ...]`` tensors (time
folded into the batch axis, time-major); each :class:`~simulator.neuron.IFNeuron` scans its
steps and keeps its state between chunks, so the result does not depend on the chunk size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from simulator.integrator import Integrator
from simulator.neuron import IFNeuron

#: Key of the dict in ``GraphModule.meta`` where conversion facts are stored.
META_KEY = "ann2snn"
ENCODINGS = ("constant", "poisson")


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


def readout(model: nn.Module) -> str:
    """``"membrane"`` if the model's output comes from an :class:`Integrator`, else
    ``"spike_count"`` (outputs are summed over time to classify)."""
    last = None
    graph = getattr(model, "graph", None)
    if graph is not None:
        out = next(n for n in graph.nodes if n.op == "output").args[0]
        if getattr(out, "op", None) == "call_module":
            last = model.get_submodule(out.target)
    else:
        last = list(model.modules())[-1]
    return "membrane" if isinstance(last, Integrator) else "spike_count"


def output_scale(model: nn.Module) -> float:
    """The factor that turns the SNN's output rate into the ANN's output units (1 if unknown)."""
    meta = getattr(model, "meta", None) or {}
    return float(meta.get(META_KEY, {}).get("output_scale", 1.0))


@dataclass
class SimulationResult:
    """What :func:`simulate` returns.

    Attributes:
        outputs: ``[T, B, ...]`` the network's output at each time step (spikes 0/1 of the
            output IF layer, or an analog current if the network ends in a linear layer).
        spike_counts: per IF layer path, ``[B, ...]`` spikes emitted over all T steps.
        output_scale: multiply a rate by this to get the ANN's output units.
        readout: ``"spike_count"`` (outputs are per-step spikes or currents, summed over time
            to classify) or ``"membrane"`` (outputs are the output layer's potential V[t]).
    """

    outputs: torch.Tensor
    spike_counts: dict[str, torch.Tensor]
    output_scale: float = 1.0
    readout: str = "spike_count"

    @property
    def T(self) -> int:
        return int(self.outputs.shape[0])

    def cumulative(self) -> torch.Tensor:
        """``[T, B, ...]`` output summed over steps 1..t (spike counts for a spiking output);
        with membrane readout the outputs themselves (the potential is already a sum)."""
        return self.outputs if self.readout == "membrane" else self.outputs.cumsum(0)

    def rates(self) -> torch.Tensor:
        """``[T, B, ...]`` mean output over steps 1..t, times ``output_scale`` (ANN units)."""
        t = torch.arange(1, self.T + 1, device=self.outputs.device, dtype=self.outputs.dtype)
        return self.cumulative() / t.view(-1, *([1] * (self.outputs.dim() - 1))) * self.output_scale

    def predictions(self) -> torch.Tensor:
        """``[T, B]`` predicted class at each t: argmax of the cumulative output or of the
        membrane potential (ties go to the lowest class index, as ``torch.argmax`` does)."""
        return self.cumulative().flatten(2).argmax(-1)

    def correct_per_t(self, labels: torch.Tensor) -> torch.Tensor:
        """``[T]`` number of correct predictions at each t for integer ``labels`` ``[B]``."""
        return (self.predictions() == labels.to(self.outputs.device).view(1, -1)).sum(1)


def encode(x: torch.Tensor, steps: int, encoding: str, generator: torch.Generator | None) -> torch.Tensor:
    """Input currents for ``steps`` time steps, ``[steps * B, ...]`` time-major.

    ``"constant"``: the analog input ``x`` at every step. ``"poisson"``: a Bernoulli spike with
    probability ``x`` (clamped to [0, 1]) at every step, drawn with ``generator``.
    """
    repeated = x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * x.shape[0], *x.shape[1:])
    if encoding == "constant":
        return repeated
    probs = repeated.clamp(0, 1)
    return torch.bernoulli(probs, generator=generator)


@torch.no_grad()
def simulate(
    model: nn.Module,
    x: torch.Tensor,
    T: int,
    time_chunk: int | None = 10,
    encoding: str = "constant",
    seed: int = 0,
) -> SimulationResult:
    """Run ``model`` for ``T`` time steps on input ``x``.

    The IF states are reset first, so the same input gives bitwise the same output. The
    input is moved to the device of the model's parameters (CPU for a parameter-free model).

    Args:
        model: a module whose spiking layers are :class:`~simulator.neuron.IFNeuron`.
        x: input ``[B, ...]`` (e.g. ``[B, 1, 28, 28]`` pixel intensities in [0, 1]).
        T: number of time steps (>= 1).
        time_chunk: time steps per forward call (``None``: all T at once); trades memory
            (about ``time_chunk * B`` activations per layer) for fewer Python calls.
        encoding: ``"constant"`` analog current (default) or ``"poisson"`` spikes.
        seed: seed of the Poisson generator.

    Returns:
        :class:`SimulationResult` with outputs ``[T, B, ...]``.

    Raises:
        ValueError: ``T < 1``, ``time_chunk < 1`` or an unknown ``encoding``.

    Example:
        >>> from simulator import IFNeuron
        >>> result = simulate(IFNeuron(), torch.tensor([[0.25, 0.5]]), T=8)  # x: [B=1, 2]
        >>> result.outputs.shape, result.outputs.sum(0).tolist()  # [T, B, 2]; rate = x
        (torch.Size([8, 1, 2]), [[2.0, 4.0]])
    """
    if T < 1:
        raise ValueError(f"T must be >= 1 time step, got {T}")
    if time_chunk is not None and time_chunk < 1:
        raise ValueError(f"time_chunk must be >= 1, got {time_chunk}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = x.to(device)
    generator = torch.Generator(device=device).manual_seed(seed) if encoding == "poisson" else None
    layers = stateful_layers(model)
    reset_states(model)
    chunk = T if time_chunk is None else min(time_chunk, T)
    outputs = []
    for start in range(0, T, chunk):
        steps = min(chunk, T - start)
        for layer in layers:
            layer.steps = steps
        y = model(encode(x, steps, encoding, generator))
        outputs.append(y.reshape(steps, x.shape[0], *y.shape[1:]))
    for layer in layers:
        layer.steps = 1
    counts = {name: layer.spike_count for name, layer in if_layers(model).items() if layer.spike_count is not None}
    return SimulationResult(torch.cat(outputs), counts, output_scale(model), readout(model))


@torch.no_grad()
def accuracy_per_t(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    T: int,
    progress: Callable[[int], None] | None = None,
    **simulate_kwargs,
) -> torch.Tensor:
    """Classification accuracy at every time step over a data set.

    Args:
        batches: iterable of ``(x [B, ...], labels [B])``.
        progress: called with the batch size after each batch (e.g. ``tqdm.update``).
        **simulate_kwargs: passed to :func:`simulate`.

    Returns:
        ``[T]`` float64 accuracy in percent at t = 1..T.
    """
    correct = torch.zeros(T, dtype=torch.float64)
    total = 0
    for x, labels in batches:
        correct += simulate(model, x, T, **simulate_kwargs).correct_per_t(labels).cpu()
        total += len(labels)
        if progress is not None:
            progress(len(labels))
    if total == 0:
        raise ValueError("no samples to evaluate")
    return 100.0 * correct / total
