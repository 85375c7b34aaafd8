"""Integrate-and-fire neurons and the time loop that simulates a converted SNN (torch only).

Time axis first: ``[T, B, ...]``; one time step is the unit of time.
"""

from simulator.early_exit import DEFAULT_STABLE_STEPS
from simulator.evaluation import Classification, Evaluation, accuracy_per_t, classify, evaluate
from simulator.integrator import Integrator
from simulator.neuron import IFNeuron, IFParams, IFState, if_advance, if_scan, if_scan_bool, if_scan_signed, if_step
from simulator.raster import Raster, spike_raster
from simulator.scale import Scale
from simulator.simulate import (
    META_KEY,
    SimulationResult,
    auto_time_chunk,
    if_layers,
    model_encoding,
    output_scale,
    rate_spikes,
    readout,
    readout_kind,
    reset_states,
    simulate,
)

__all__ = [
    "DEFAULT_STABLE_STEPS",
    "META_KEY",
    "Classification",
    "Evaluation",
    "IFNeuron",
    "IFParams",
    "IFState",
    "Integrator",
    "Raster",
    "Scale",
    "SimulationResult",
    "accuracy_per_t",
    "auto_time_chunk",
    "classify",
    "evaluate",
    "if_advance",
    "if_layers",
    "if_scan",
    "if_scan_bool",
    "if_scan_signed",
    "if_step",
    "model_encoding",
    "output_scale",
    "rate_spikes",
    "readout",
    "readout_kind",
    "reset_states",
    "simulate",
    "spike_raster",
]
