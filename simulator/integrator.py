"""Non-spiking integrator: the membrane-potential readout of an output layer.

.. math::  V[t] = V[t-1] + r\\,I[t], \\qquad V[0] = 0

The layer never spikes or resets; it outputs ``V[t]`` at every step, so the class at time t is
``argmax V[t]`` — the accumulated input current — which, unlike spike counts, has no ties
(Rueckauer et al. 2017, Front. Neurosci. 11:682, "membrane potential" output). NIR's ``I`` node
(``dv/dt = R·I``) with dt = 1.
"""

from __future__ import annotations

import torch
from torch import nn


def integrate(x: torch.Tensor, v: torch.Tensor | None, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Potentials ``[steps, B, ...]`` for input currents ``x`` ``[steps, B, ...]`` starting from
    ``v`` (``[B, ...]``, or None for 0); returns them and the last one (the new state).

    The carried potential is the first term of the running sum, so in float64 the potentials
    are those of adding one step at a time, whatever the chunks (``V + (a + b)`` would regroup
    the sum at each chunk boundary and move the last bit).
    """
    current = r * x
    if v is None:
        potentials = current.cumsum(0)
    else:
        potentials = torch.cat([v.unsqueeze(0).to(current.dtype), current]).cumsum(0)[1:]
    return potentials, potentials[-1]


class Integrator(nn.Module):
    """Integrate the input over time without spiking; output the membrane potential.

    Args:
        r: input resistance (dimensionless), a float or a tensor broadcastable to ``[B, ...]``.

    Shape:
        Input ``[steps * B, ...]`` (time-major, as for :class:`~simulator.neuron.IFNeuron`);
        output ``V`` of the same shape, in the units of the input current × time steps.
    """

    r: torch.Tensor

    def __init__(self, r: float | torch.Tensor = 1.0) -> None:
        super().__init__()
        self.register_buffer("r", torch.as_tensor(r, dtype=torch.float32))
        self.steps = 1
        self.v: torch.Tensor | None = None

    def reset_state(self) -> None:
        """Forget the membrane potential (the next call starts at 0)."""
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.steps:
            raise ValueError(f"input batch {x.shape[0]} is not a multiple of steps={self.steps}")
        xt = x.reshape(self.steps, x.shape[0] // self.steps, *x.shape[1:])
        v, self.v = integrate(xt, self.v, self.r)
        return v.reshape(x.shape)
