"""Integrate-and-fire neurons and the time loop that simulates a converted SNN (torch only).

Time axis first: ``[T, B, ...]``; one time step is the unit of time.
"""

from simulator.integrator import Integrator
from simulator.neuron import IFNeuron, IFParams, if_scan, if_step
from simulator.scale import Scale
from simulator.simulate import (
    META_KEY,
    SimulationResult,
    accuracy_per_t,
    if_layers,
    output_scale,
    readout,
    reset_states,
    simulate,
)

__all__ = [
    "META_KEY",
    "IFNeuron",
    "IFParams",
    "Integrator",
    "Scale",
    "SimulationResult",
    "accuracy_per_t",
    "if_layers",
    "if_scan",
    "if_step",
    "output_scale",
    "readout",
    "reset_states",
    "simulate",
]
