"""Multi-step execution of an SNN graph: each layer runs once per chunk of time steps.

The model is traced with torch.fx (IF layers as leaves; a converted SNN already is a
GraphModule). Every value in the graph is one of three kinds:

- ``PLAIN``: no batch axis (parameters, constants): computed once.
- ``CONST``: ``[B, ...]`` and the same at every step (the constant input and every stateless
  layer fed only by it, e.g. the first convolution): computed once per run, never per step.
- ``TIME``: ``[steps * B, ...]`` (time folded into the batch axis, time-major): recomputed per
  chunk; IF outputs are always ``TIME`` and travel as compact :class:`~simulator.spike_ops.Spikes`.

An IF layer fed by a ``CONST`` current scans its steps without expanding the current; a
stateless layer that mixes ``CONST`` and ``TIME`` values gets the ``CONST`` ones expanded
over the chunk. This works for any graph of stateless ops and IF layers (residual adds,
concatenations, several IF inputs). The IF state is passed in and returned per call, held
here in a dict keyed by the layer's module path.

Fallbacks: when a batch-dependent value of the constant part that is not a ``[B, ...]`` tensor
(e.g. ``x.size(0)``) reaches the time-varying part, :class:`NotHoistable` is raised in the first
chunk and :func:`simulator.simulate` starts again with the input as ``TIME``. A model fx cannot
trace, or one whose called modules hold IF layers inside them, runs through
:class:`ModuleRunner` (its own forward per chunk).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from simulator.graph import trace_snn
from simulator.integrator import Integrator, integrate
from simulator.neuron import IFNeuron, if_scan, if_scan_bool
from simulator.spike_ops import Spikes, spike_op


class Kind(enum.IntEnum):
    PLAIN = 0
    CONST = 1
    TIME = 2


class NotHoistable(Exception):
    """A batch-dependent value of the constant part (e.g. a size) reaches the time-varying part."""


def trace_or_none(model: nn.Module) -> fx.GraphModule | None:
    """``model`` traced by :func:`simulator.graph.trace_snn` (IF layers as leaves), or ``None`` if
    fx cannot trace it (the caller then runs the model's own forward, :class:`ModuleRunner`)."""
    try:
        return trace_snn(model)
    except Exception:  # data-dependent control flow etc.: the caller falls back to model(x)
        return None


def has_if_inside(module: nn.Module) -> bool:
    return any(isinstance(m, IFNeuron) for m in module.modules())


def spike_count(spikes: torch.Tensor) -> torch.Tensor:
    """``spikes.sum(0)`` of ``bool`` spikes ``[T, ...]``, summed in uint8 when T <= 255 (6x faster
    than an int32 sum, which first converts every spike)."""
    if spikes.shape[0] <= 255:
        return spikes.view(torch.uint8).sum(0, dtype=torch.uint8)
    return spikes.sum(0, dtype=torch.int32)


@dataclass
class IFState:
    """State of one IF layer between chunks: potential and spike count, both ``[B, ...]``."""

    v: torch.Tensor
    count: torch.Tensor  # int32


@dataclass
class Plan:
    """A traced graph with each node's kind and resolved module."""

    gm: fx.GraphModule
    kinds: dict[fx.Node, Kind]
    modules: dict[fx.Node, nn.Module] = field(default_factory=dict)

    @property
    def opaque(self) -> bool:
        """Whether some called module holds IF layers itself (run by its own forward)."""
        return any(not isinstance(m, IFNeuron) and has_if_inside(m) for m in self.modules.values())


def node_kinds(gm: fx.GraphModule, modules: dict[fx.Node, nn.Module], hoist: bool) -> dict[fx.Node, Kind]:
    """The kind of every node; with ``hoist`` the input is ``CONST`` (constant encoding)."""
    kinds: dict[fx.Node, Kind] = {}
    first_input = True
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            kinds[node] = (Kind.CONST if hoist else Kind.TIME) if first_input else Kind.PLAIN
            first_input = False
        elif node.op == "get_attr":
            kinds[node] = Kind.PLAIN
        elif isinstance(modules.get(node), (IFNeuron, Integrator)) or has_if_inside(modules.get(node, nn.Identity())):
            kinds[node] = Kind.TIME
        else:
            kinds[node] = max((kinds[a] for a in node.all_input_nodes), default=Kind.PLAIN)
    return kinds


def build_plan(gm: fx.GraphModule, hoist: bool) -> Plan:
    named = dict(gm.named_modules())
    modules = {n: named[n.target] for n in gm.graph.nodes if n.op == "call_module"}
    return Plan(gm, node_kinds(gm, modules, hoist), modules)


def _attr(root: nn.Module, target: str) -> Any:
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


class GraphRunner:
    """Runs a :class:`Plan` chunk by chunk on one batch (a plan without opaque modules).

    Args:
        plan: from :func:`build_plan`.
        x: the network input ``[B, ...]`` (analog values, already on the model's device).
        encode: ``encode(x, steps) -> [steps * B, ...]`` the input currents of the next chunk
            (used when the input is ``TIME``).
        record: keep every IF layer's spikes (``bool``).
    """

    def __init__(self, plan: Plan, x: torch.Tensor, encode, record: bool = False) -> None:
        self.plan, self.x, self.encode, self.record = plan, x, encode, record
        self.const: dict[fx.Node, Any] = {}  # values of PLAIN and CONST nodes, computed once
        self.original_batch = x.shape[0]
        self.states: dict[str, IFState] = {}
        self.potentials: dict[str, torch.Tensor] = {}  # integrators' V [B, ...] by module path
        self.rows = torch.arange(x.shape[0], device=x.device)  # original index of each sample kept
        self.t = 0  # steps simulated so far
        self.recorded: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}  # (t0, rows, spikes)
        self.final_counts: dict[str, torch.Tensor] = {}  # counts of samples no longer kept

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the samples ``index`` (``[b]`` int64) of the batch in every state (early
        exit); the spike counts of the others are final."""
        for target, state in self.states.items():
            self.saved_counts(target).index_copy_(0, self.rows, state.count)
        self.rows = self.rows[index]
        self.x = self.x[index]
        for node, value in self.const.items():
            if self.plan.kinds[node] == Kind.CONST and isinstance(value, torch.Tensor):
                self.const[node] = value[index]
        for state in self.states.values():
            state.v, state.count = state.v[index], state.count[index]
        self.potentials = {target: v[index] for target, v in self.potentials.items()}

    def saved_counts(self, target: str) -> torch.Tensor:
        count = self.states[target].count
        if target not in self.final_counts:
            self.final_counts[target] = torch.zeros(
                self.original_batch, *count.shape[1:], dtype=count.dtype, device=count.device
            )
        return self.final_counts[target]

    def spike_counts(self) -> dict[str, torch.Tensor]:
        """Spike counts ``[B, ...]`` (int32) of every IF layer run here, by module path, for
        the whole original batch."""
        for target, state in self.states.items():
            self.saved_counts(target).index_copy_(0, self.rows, state.count)
        return dict(self.final_counts)

    def run(self, steps: int) -> torch.Tensor:
        """Simulate the next ``steps`` steps; returns the output ``[steps, B, ...]`` (floats)."""
        env: dict[fx.Node, Any] = {}
        expanded: dict[fx.Node, torch.Tensor] = {}
        for node in self.plan.gm.graph.nodes:
            if node.op == "output":
                if not isinstance(node.args[0], fx.Node):
                    raise ValueError("the SNN must return a single tensor")
                out = self._arg(node.args[0], env, expanded, steps, Kind.TIME)
                self.t += steps
                return out.reshape(steps, self.batch, *out.shape[1:])
            kind = self.plan.kinds[node]
            if kind != Kind.TIME and node in self.const:
                continue
            value = self._eval(node, env, expanded, steps)
            if kind == Kind.TIME:
                env[node] = value
            else:
                self.const[node] = value
        raise ValueError("graph has no output node")

    def _eval(self, node: fx.Node, env: dict, expanded: dict, steps: int) -> Any:
        kind = self.plan.kinds[node]
        if node.op == "placeholder":
            if kind == Kind.PLAIN:
                return node.args[0] if node.args else None
            return self.x if kind == Kind.CONST else self.encode(self.x, steps)
        if node.op == "get_attr":
            return _attr(self.plan.gm, node.target)
        module = self.plan.modules.get(node)
        if isinstance(module, IFNeuron):
            return self._if(node, module, env, expanded, steps)
        if isinstance(module, Integrator):
            return self._integrate(node, module, env, expanded, steps)
        op = spike_op(node.op, node.target, module)
        first = node.args[0] if node.args else None
        if op is not None and isinstance(first, fx.Node) and isinstance(env.get(first), Spikes):
            rest = fx.node.map_arg(node.args[1:], lambda a: self._arg(a, env, expanded, steps, kind))
            kwargs = fx.node.map_arg(node.kwargs, lambda a: self._arg(a, env, expanded, steps, kind))
            result = op(env[first], module, rest, kwargs)
            if result is not None:
                return result
        args = fx.node.map_arg(node.args, lambda a: self._arg(a, env, expanded, steps, kind))
        kwargs = fx.node.map_arg(node.kwargs, lambda a: self._arg(a, env, expanded, steps, kind))
        if node.op == "call_module":
            return module(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        self_obj, *rest = args
        return getattr(self_obj, node.target)(*rest, **kwargs)

    def _arg(self, a: fx.Node, env: dict, expanded: dict, steps: int, consumer: Kind) -> Any:
        """The value of node ``a`` as a consumer of kind ``consumer`` needs it."""
        if self.plan.kinds[a] != Kind.TIME:
            value = self.const[a]
            if consumer == Kind.TIME and self.plan.kinds[a] == Kind.CONST:
                return self._expand(a, value, expanded, steps)
            return value
        value = env[a]
        if isinstance(value, Spikes):
            value = expanded.get(a)
            if value is None:
                value = expanded[a] = env[a].to_float()
        return value

    def _expand(self, a: fx.Node, value: Any, expanded: dict, steps: int) -> torch.Tensor:
        """A ``CONST`` value ``[B, ...]`` repeated over the chunk: ``[steps * B, ...]``."""
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != self.batch:
            raise NotHoistable(f"node {a.name!r} ({type(value).__name__}) depends on the batch size")
        if a not in expanded:
            expanded[a] = value.unsqueeze(0).expand(steps, *value.shape).reshape(steps * self.batch, *value.shape[1:])
        return expanded[a]

    def _integrate(self, node: fx.Node, layer: Integrator, env: dict, expanded: dict, steps: int) -> torch.Tensor:
        current = self._arg(node.args[0], env, expanded, steps, Kind.TIME)
        current = current.reshape(steps, self.batch, *current.shape[1:])
        v, self.potentials[node.target] = integrate(current, self.potentials.get(node.target), layer.r)
        return v.reshape(steps * self.batch, *current.shape[2:])

    def _if(self, node: fx.Node, layer: IFNeuron, env: dict, expanded: dict, steps: int) -> Spikes:
        (source,) = node.args
        if self.plan.kinds[source] == Kind.CONST:
            current = self.const[source]
            if not isinstance(current, torch.Tensor) or current.shape[0] != self.batch:
                raise NotHoistable(f"IF layer {node.target!r} gets a current without batch axis")
            shape, const_steps = current.shape, steps
        else:
            current = self._arg(source, env, expanded, steps, Kind.TIME)
            current = current.reshape(steps, self.batch, *current.shape[1:])
            shape, const_steps = current.shape[1:], None
        state = self.states.get(node.target)
        if state is None:
            like = torch.empty(shape, dtype=current.dtype, device=current.device)
            state = self.states[node.target] = IFState(
                layer.initial_potential(like), torch.zeros(shape, dtype=torch.int32, device=current.device)
            )
        params = layer.params()
        if not params.binary:  # several spikes per step or a clamp: the per-step loop, float counts
            if const_steps is not None:
                current = current.unsqueeze(0).expand(steps, *shape)
            counts, state.v = if_scan(current, state.v, params)
            state.count += counts.sum(0).to(torch.int32)
            if self.record:
                self.recorded.setdefault(node.target, []).append((self.t, self.rows, counts.to(torch.uint8)))
            return counts.reshape(steps * self.batch, *shape[1:])
        spikes, state.v = if_scan_bool(current, state.v, params, steps=const_steps)
        state.count += spike_count(spikes)
        if self.record:
            self.recorded.setdefault(node.target, []).append((self.t, self.rows, spikes))
        return Spikes(spikes.reshape(steps * self.batch, *shape[1:]), current.dtype)


class ModuleRunner:
    """Runs ``model(x)`` itself once per chunk, IF layers holding their state (the path for
    single-step mode and for models torch.fx cannot trace). Same interface as :class:`GraphRunner`
    without :meth:`GraphRunner.keep`."""

    def __init__(self, model: nn.Module, x: torch.Tensor, encode, record: bool = False) -> None:
        self.model, self.x, self.encode, self.record = model, x, encode, record
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, IFNeuron)}
        self.stateful = [m for m in model.modules() if isinstance(m, (IFNeuron, Integrator))]
        self.rows = torch.arange(x.shape[0], device=x.device)
        self.t = 0
        self.recorded: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for layer in self.stateful:
            layer.reset_state()

    def run(self, steps: int) -> torch.Tensor:
        for layer in self.stateful:
            layer.steps = steps
        hooks = [layer.register_forward_hook(self._hook(n)) for n, layer in self.layers.items()] if self.record else []
        try:
            y = self.model(self.encode(self.x, steps))
        finally:
            for hook in hooks:
                hook.remove()
            for layer in self.stateful:
                layer.steps = 1
        self.t += steps
        return y.reshape(steps, self.x.shape[0], *y.shape[1:])

    def _hook(self, name: str):
        def hook(layer: IFNeuron, inputs, output: torch.Tensor) -> None:
            spikes = output.reshape(layer.steps, -1, *output.shape[1:])
            spikes = spikes.bool() if layer.params().binary else spikes.to(torch.uint8)
            self.recorded.setdefault(name, []).append((self.t, self.rows, spikes))

        return hook

    def spike_counts(self) -> dict[str, torch.Tensor]:
        return {name: layer.spike_count for name, layer in self.layers.items() if layer.spike_count is not None}
