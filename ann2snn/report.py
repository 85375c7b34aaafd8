"""Operations and an arithmetic-only energy estimate of an SNN against its ANN, per layer.

Per spike source (the analog input and every IF layer): neurons, the mean fan-in (Conv/Linear
synapses into each neuron) and fan-out (synapses each neuron drives), spikes per neuron per
inference, firing rate (spikes per neuron per step), synaptic operations per inference (each
spike × the synapses it drives, exact at borders and strides: :mod:`simulator.synops`), and
the ANN's multiply-accumulates of the same connections (the Conv/Linear layers the source
feeds).

**Energy, arithmetic only**: 0.9 pJ per accumulate (an SNN synaptic operation, 32-bit float
add) and 4.6 pJ per 32-bit float multiply-accumulate (ANN), 45 nm CMOS (M. Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014), the convention of the
conversion literature. Memory access, which dominates on real hardware, is **not** counted.
With constant (analog) input the SNN's first layer reads the analog input: its MACs are
counted once per inference at the MAC energy (the input is constant, so the layer is computed
once, as the simulator does; a chip that recomputes it every step spends T times as much).
With spike input (the SNN's input encoding ``"rate"`` or ``"poisson"``, :func:`simulator.simulate`)
the input is a spike source like any IF layer: its events (the same spike trains the
simulation draws) are counted, each driving the synapses of its fan-out, and there are no
analog MACs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import cast

import torch
from torch import nn

from simulator import IFNeuron, model_encoding, simulate
from simulator.graph import trace_snn
from simulator.simulate import Encoder
from simulator.synops import INPUT, consumers, fan_outs, macs, synops

#: Energy per operation in picojoules, 45 nm (Horowitz, ISSCC 2014).
PJ_PER_AC = 0.9
PJ_PER_MAC = 4.6
ENERGY_SOURCE = "M. Horowitz, ISSCC 2014, 45 nm: 0.9 pJ per 32-bit float add, 4.6 pJ per 32-bit float MAC"
ENERGY_NOTE = "arithmetic only: memory access is not counted"


@dataclass
class LayerOps:
    """One spike source's row (counts per inference, i.e. per sample)."""

    layer: str
    neurons: int
    fan_in: float
    fan_out: float
    spikes_per_neuron: float | None
    firing_rate: float | None
    spikes: float | None
    synops: float | None
    ann_macs: int
    feeds: list[str] = field(default_factory=list)


@dataclass
class EnergyReport:
    """What :func:`energy_report` returns; all operation counts are per inference."""

    T: int
    samples: int
    layers: list[LayerOps]
    analog_input_macs: int

    @property
    def synops(self) -> float:
        """Synaptic operations per inference, all spiking layers."""
        return sum(r.synops for r in self.layers if r.synops is not None)

    @property
    def spikes(self) -> float:
        return sum(r.spikes for r in self.layers if r.spikes is not None)

    @property
    def ann_macs(self) -> int:
        return sum(r.ann_macs for r in self.layers)

    @property
    def snn_energy_pj(self) -> float:
        return PJ_PER_AC * self.synops + PJ_PER_MAC * self.analog_input_macs

    @property
    def ann_energy_pj(self) -> float:
        return PJ_PER_MAC * self.ann_macs

    @property
    def energy_ratio(self) -> float:
        """ANN energy / SNN energy (arithmetic only): > 1 when the SNN needs less."""
        return self.ann_energy_pj / self.snn_energy_pj if self.snn_energy_pj else float("inf")

    def to_dict(self) -> dict:
        return {
            "T": self.T,
            "samples": self.samples,
            "layers": [asdict(r) for r in self.layers],
            "totals": {
                "spikes": self.spikes,
                "synops": self.synops,
                "analog_input_macs": self.analog_input_macs,
                "ann_macs": self.ann_macs,
            },
            "energy": {
                "label": "arithmetic only",
                "snn_pj": self.snn_energy_pj,
                "ann_pj": self.ann_energy_pj,
                "ann_over_snn": self.energy_ratio,
                "pj_per_ac": PJ_PER_AC,
                "pj_per_mac": PJ_PER_MAC,
                "source": ENERGY_SOURCE,
                "note": ENERGY_NOTE,
            },
        }


def _synapses_into(snn: nn.Module, layer_macs: dict[str, int]) -> dict[str, int]:
    """Synapses into each IF layer: the MACs of the Conv/Linear layers whose outputs reach it
    (through pools, reshapes and adds)."""
    gm = trace_snn(snn)
    modules = dict(gm.named_modules())
    into: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or str(node.target) not in layer_macs:
            continue
        user = node
        while user.op != "output" and len(user.users) == 1:
            (user,) = user.users
            if user.op == "call_module" and isinstance(modules[user.target], IFNeuron):
                into[str(user.target)] = into.get(str(user.target), 0) + layer_macs[str(node.target)]
                break
    return into


@torch.no_grad()
def energy_report(
    snn: nn.Module,
    batches: Iterable,
    T: int,
    input_shape: tuple[int, ...] | None = None,
    progress: Callable[[int], None] | None = None,
) -> EnergyReport:
    """Simulate ``snn`` for ``T`` steps on ``batches`` (tensors ``[B, ...]`` or ``(x, y)`` pairs) and
    count, per layer, spikes, synaptic operations and the ANN's MACs of the same connections.
    With spike input (the model's encoding, :func:`simulator.model_encoding`, ``"rate"`` or
    ``"poisson"``) the input row counts its events (:func:`input_events`) and their SynOps,
    and there are no analog input MACs. A signed layer's (``spike_rule="signed"``) spikes are
    its events, +1 and -1 alike (its spike count, the net count, would undercount them).

    Args:
        input_shape: one sample's shape; default the one recorded at conversion.
        progress: called with each batch's size.

    Raises:
        ValueError: no samples, or no input shape known.

    Example:
        >>> from simulator import IFNeuron, Integrator
        >>> net = nn.Sequential(nn.Linear(4, 3), IFNeuron(), nn.Linear(3, 2), Integrator())
        >>> report = energy_report(net, [torch.ones(2, 4)], T=10, input_shape=(4,))
        >>> [(r.layer, r.neurons, r.fan_out, r.ann_macs) for r in report.layers]
        [('input', 4, 3.0, 12), ('1', 3, 2.0, 6)]
        >>> report.synops == 2 * report.spikes  # each spike of layer '1' drives 2 synapses
        True
    """
    meta = getattr(snn, "meta", {}) or {}
    input_shape = tuple(input_shape or meta.get("ann2snn", {}).get("input_shape", ()))
    if not input_shape:
        raise ValueError("unknown input shape: pass input_shape")
    events = model_encoding(snn) != "constant"
    fans = fan_outs(snn, input_shape)
    feeds = consumers(snn, input_shape)
    layer_macs = macs(snn, input_shape)
    counts: dict[str, torch.Tensor] = {}
    samples = 0
    device = next((p.device for p in snn.parameters()), torch.device("cpu"))
    signed = [name for name, m in snn.named_modules() if isinstance(m, IFNeuron) and m.spike_rule == "signed"]
    for batch in batches:
        x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)
        result = simulate(snn, x, T, record=signed)  # the trains of the signed layers only
        batch_counts = dict(result.spike_counts)
        trains = cast(dict, result.spikes) if signed else {}
        for name in signed:  # events: +1 and -1 spikes (the spike count is their net sum)
            if name in trains:  # not a layer the model never calls
                batch_counts[name] = trains[name].abs().sum(0, dtype=torch.int32)
        if events:
            batch_counts[INPUT] = input_events(x, T, model_encoding(snn))
        for name, c in batch_counts.items():
            summed = c.double().sum(0).cpu()
            counts[name] = counts[name] + summed if name in counts else summed
        samples += len(x)
        if progress is not None:
            progress(len(x))
    if samples == 0:
        raise ValueError("no samples to report on")
    fan_in = _synapses_into(snn, layer_macs)
    rows = []
    for name, fan in fans.items():
        ann = sum(layer_macs[m] for m in feeds[name])
        neurons = fan.numel()
        if name == INPUT and not events:
            rows.append(LayerOps(name, neurons, 0.0, float(fan.mean()), None, None, None, None, ann, feeds[name]))
            continue
        total = counts.get(name, torch.zeros_like(fan))
        spikes = float(total.sum()) / samples
        rows.append(
            LayerOps(
                layer=name,
                neurons=neurons,
                fan_in=fan_in.get(name, 0) / neurons,
                fan_out=float(fan.mean()),
                spikes_per_neuron=spikes / neurons,
                firing_rate=spikes / neurons / T,
                spikes=spikes,
                synops=synops(total, fan) / samples,
                ann_macs=ann,
                feeds=feeds[name],
            )
        )
    analog = 0 if events else sum(layer_macs[m] for m in feeds.get(INPUT, []))
    return EnergyReport(T, samples, rows, analog_input_macs=analog)


def input_events(x: torch.Tensor, T: int, encoding: str, seed: int = 0, time_chunk: int = 5) -> torch.Tensor:
    """The input spikes per input value over ``T`` steps, ``[B, ...]`` (float), exactly those
    :func:`simulator.simulate` feeds with ``encoding`` (``"rate"`` or ``"poisson"``), ``seed``
    and ``time_chunk`` (the same chunks draw the same Poisson spikes).

    Args:
        x: input ``[B, ...]`` in [0, 1].

    Raises:
        ValueError: ``encoding="constant"`` (the input is a current, not events).
    """
    if encoding == "constant":
        raise ValueError("encoding='constant' has no input events: the input is an analog current")
    generator = torch.Generator(device=x.device).manual_seed(seed) if encoding == "poisson" else None
    encoder = Encoder(encoding, generator)
    total = torch.zeros_like(x, dtype=torch.float64)
    for t0 in range(0, T, time_chunk):
        steps = min(time_chunk, T - t0)
        total += encoder(x, steps).reshape(steps, *x.shape).double().sum(0)
    return total


def format_report(report: EnergyReport) -> str:
    """The report as a Markdown table and a few lines of totals."""
    from ann2snn.tables import format_table

    def number(v):
        return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    headers = ["layer", "neurons", "fan-in", "fan-out", "spikes/neuron", "rate", "SynOps", "ANN MACs"]
    cells = [
        [r.layer, r.neurons, number(r.fan_in), number(r.fan_out), number(r.spikes_per_neuron)]
        + [number(r.firing_rate), "analog: MACs" if r.synops is None else number(r.synops), f"{r.ann_macs:,}"]
        for r in report.layers
    ]
    lines = [
        f"T={report.T}, {report.samples} samples; counts per inference",
        format_table(headers, cells, left=1),
        f"spikes {report.spikes:,.0f}; SynOps {report.synops:,.0f} + analog input layer "
        f"{report.analog_input_macs:,} MACs; ANN {report.ann_macs:,} MACs"
        if report.analog_input_macs
        else f"spikes {report.spikes:,.0f} (input events included); SynOps {report.synops:,.0f}; "
        f"ANN {report.ann_macs:,} MACs",
        f"energy ({ENERGY_NOTE}; {ENERGY_SOURCE}): SNN {report.snn_energy_pj / 1e6:.3f} uJ, "
        f"ANN {report.ann_energy_pj / 1e6:.3f} uJ, ANN/SNN = {report.energy_ratio:.2f}",
    ]
    return "\n".join(lines)


def plot_report(report: EnergyReport, path, title: str):
    """A PNG bar chart per layer: SNN SynOps against ANN MACs (log scale), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ann2snn.plots import _save_png

    names = [r.layer for r in report.layers]
    snn = [report.analog_input_macs if r.layer == INPUT else (r.synops or 0) for r in report.layers]
    ann = [r.ann_macs for r in report.layers]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4.5))
    pos = range(len(names))
    ax.bar([p - 0.2 for p in pos], snn, width=0.4, label=f"SNN SynOps (input: MACs), T={report.T}")
    ax.bar([p + 0.2 for p in pos], ann, width=0.4, label="ANN MACs")
    ax.set_xticks(list(pos), names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("operations per inference (outgoing connections)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return _save_png(fig, path)


def report_file(
    path,
    data,
    T: int | None = None,
    limit: int = 1000,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> EnergyReport:
    """:func:`energy_report` of the ``.nir`` file ``path`` on ``data`` (see
    :func:`ann2snn.nirinfo.open_for_simulation` for ``data``, ``T``, ``limit`` and the errors)."""
    from ann2snn.nirinfo import open_for_simulation

    snn, dataset, T = open_for_simulation(path, data, T, limit)
    return energy_report(snn, (x for x, _ in dataset.batches(batch_size)), T, progress=progress)
