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
concatenations, several IF inputs). Each IF layer's :class:`~simulator.neuron.IFState` is passed
to :func:`~simulator.neuron.if_advance` and returned per chunk, held here in a dict keyed by the
layer's module path (the same state type and function :class:`~simulator.neuron.IFNeuron` uses).

Fallbacks: when a batch-dependent value of the constant part that is not a ``[B, ...]`` tensor
(e.g. ``x.size(0)``) reaches the time-varying part, :class:`NotHoistable` is raised in the first
chunk and :func:`simulator.simulate` starts again with the input as ``TIME``. A model fx cannot
trace, or one whose called modules hold IF layers inside them, runs through
:class:`ModuleRunner` (its own forward per chunk).
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.fx as fx
from torch import nn

from simulator.compiled import fused_if, lookup_conv2d
from simulator.graph import trace_snn, view_or_reshape
from simulator.integrator import Integrator, integrate
from simulator.neuron import IFNeuron, IFState, if_advance
from simulator.scale import Scale
from simulator.spike_ops import Spikes, spike_op

#: Whether :meth:`GraphRunner.run` drops each chunk value after its last use (the default; the
#: memory a chunk holds is then that of the values still to be used, which the allocator reuses
#: while they are in cache). ``False`` only to measure the difference.
FREE_AFTER_LAST_USE = True

#: What a runner records: ``True`` every IF layer's spike train, ``False`` none, or the ``id()``
#: of each IF layer to record.
Recording = bool | frozenset[int]


def records(record: Recording, layer: nn.Module) -> bool:
    """Whether the spike train of IF layer ``layer`` is recorded under ``record``."""
    return record if isinstance(record, bool) else id(layer) in record


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


def last_users(uses: Iterable[tuple[fx.Node, Iterable[fx.Node]]]) -> dict[fx.Node, list[fx.Node]]:
    """``(user, the nodes it reads)`` pairs in graph order -> for each user, the nodes it is the
    last to read (their values can be dropped once it has run)."""
    last: dict[fx.Node, fx.Node] = {}
    for user, sources in uses:
        for source in sources:
            last[source] = user
    out: dict[fx.Node, list[fx.Node]] = {}
    for source, user in last.items():
        out.setdefault(user, []).append(source)
    return out


@dataclass
class Plan:
    """A traced graph with each node's kind and resolved module."""

    gm: fx.GraphModule
    kinds: dict[fx.Node, Kind]
    modules: dict[fx.Node, nn.Module] = field(default_factory=dict)

    @functools.cached_property
    def last_uses(self) -> dict[fx.Node, list[fx.Node]]:
        """For each node, the nodes whose chunk values are not needed once it has run (it is
        their last user in graph order): :meth:`GraphRunner.run` drops them then, so a chunk holds
        only the values still to be used, not every layer's (as torch.fx's Interpreter does)."""
        return last_users((node, node.all_input_nodes) for node in self.gm.graph.nodes)

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


_REUSED = "it holds one membrane potential: give each call its own layer (as ann2snn's converter does)"


def check_single_use(gm: fx.GraphModule) -> None:
    """Raise ``ValueError`` if one IF layer (an :class:`IFNeuron` or :class:`Integrator` module) is
    called at more than one place in the graph: it holds one potential, which both calls would
    advance, so its spikes would depend on the call order and on ``time_chunk``. (An ANN may call
    one ``nn.ReLU`` twice; the converter gives each call its own IF layer.)"""
    calls: dict[str, list[str]] = {}
    named = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(named.get(str(node.target)), (IFNeuron, Integrator)):
            calls.setdefault(str(node.target), []).append(node.name)
    for target, nodes in calls.items():
        if len(nodes) > 1:
            raise ValueError(
                f"{type(named[target]).__name__} {target!r} is called at {len(nodes)} places in the graph "
                f"(nodes {', '.join(nodes)}); {_REUSED}"
            )


def build_plan(gm: fx.GraphModule, hoist: bool) -> Plan:
    """The :class:`Plan` of a traced SNN. Raises ``ValueError`` for a reused IF layer
    (:func:`check_single_use`)."""
    check_single_use(gm)
    named = dict(gm.named_modules())
    modules = {n: named[n.target] for n in gm.graph.nodes if n.op == "call_module"}
    return Plan(gm, node_kinds(gm, modules, hoist), modules)


def _attr(root: nn.Module, target: str) -> Any:
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def call_node(node: fx.Node, module: nn.Module | None, args: Any, kwargs: Any) -> Any:
    """The value of a ``call_module`` (``module``), ``call_function`` or ``call_method`` node
    on its evaluated ``args`` and ``kwargs``."""
    if node.op == "call_module":
        return cast(nn.Module, module)(*args, **kwargs)
    if node.op == "call_function":
        return cast(Callable[..., Any], node.target)(*args, **kwargs)
    self_obj, *method_args = args
    if node.target == "view" and isinstance(self_obj, torch.Tensor):
        return view_or_reshape(self_obj, *method_args, **kwargs)  # maps are channels-last here, not in the ANN
    return getattr(self_obj, str(node.target))(*method_args, **kwargs)


@dataclass
class Fusion:
    """An IF layer whose input current is a convolution of spikes, or the sum of two such terms
    (a residual join: convolutions or per-channel :class:`~simulator.scale.Scale` of spikes),
    run as one compiled kernel under ``cpu_kernels="compiled"``
    (:func:`simulator.compiled.fused_if`)."""

    terms: list[fx.Node]  # the convolution / Scale nodes, each fed by one IF layer's spikes
    deferred: list[fx.Node]  # the nodes not run on their own: the terms, then the add (if any)


def _is_term(node: Any, modules: dict[fx.Node, nn.Module]) -> bool:
    return (
        isinstance(node, fx.Node)
        and type(modules.get(node)) in (nn.Conv2d, Scale)
        and len(node.args) == 1
        and not node.kwargs
        and len(node.users) == 1
        and isinstance(modules.get(cast(fx.Node, node.args[0])), IFNeuron)
    )


def _is_add(node: fx.Node) -> bool:
    if node.kwargs or len(node.args) != 2:
        return False
    return (node.op == "call_function" and node.target in (operator.add, torch.add)) or (
        node.op == "call_method" and node.target == "add"
    )


def fusions(plan: Plan) -> dict[fx.Node, Fusion]:
    """The IF nodes of ``plan`` whose currents :class:`Fusion` covers, by IF node (only ``TIME``
    nodes; whether the modules and spikes are covered is checked when the chunk runs)."""
    found: dict[fx.Node, Fusion] = {}
    for node in plan.gm.graph.nodes:
        if not isinstance(plan.modules.get(node), IFNeuron) or len(node.args) != 1:
            continue
        (source,) = node.args
        if not isinstance(source, fx.Node) or len(source.users) != 1 or plan.kinds[source] != Kind.TIME:
            continue
        if _is_term(source, plan.modules):
            found[node] = Fusion([source], [source])
        elif (
            _is_add(source)
            and all(_is_term(a, plan.modules) for a in source.args)
            and source.args[0] is not source.args[1]
        ):
            terms = [cast(fx.Node, a) for a in source.args]
            found[node] = Fusion(terms, [*terms, source])
    return found


def fused_last_uses(plan: Plan, fused: dict[fx.Node, Fusion]) -> dict[fx.Node, list[fx.Node]]:
    """:attr:`Plan.last_uses` when the ``fused`` IF nodes read their terms' spikes themselves: a
    deferred node uses nothing, and a fused IF node uses its terms' inputs and its deferred nodes
    (which it runs itself where the fused kernel declines)."""
    deferred = {d for f in fused.values() for d in f.deferred}

    def inputs(node: fx.Node) -> list[fx.Node]:
        if node in fused:
            return [*(cast(fx.Node, t.args[0]) for t in fused[node].terms), *fused[node].deferred]
        return list(node.all_input_nodes)

    return last_users((node, inputs(node)) for node in plan.gm.graph.nodes if node not in deferred)


class GraphRunner:
    """Runs a :class:`Plan` chunk by chunk on one batch (a plan without opaque modules).

    Args:
        plan: from :func:`build_plan`.
        x: the network input ``[B, ...]`` (analog values, already on the model's device).
        encode: ``encode(x, steps) -> [steps * B, ...]`` the input currents of the next chunk
            (used when the input is ``TIME``).
        record: keep every IF layer's spikes (``bool``) with ``True``; only those of the IF
            layers whose ``id()`` is in a frozenset (:func:`records`).
        lookup: convolve spikes by table lookup (:func:`simulator.compiled.lookup_conv2d`)
            where it covers the layer, and run an IF layer fed by such convolutions together with
            them (:class:`Fusion`); else every layer runs as itself.
    """

    def __init__(self, plan: Plan, x: torch.Tensor, encode, record: Recording = False, lookup: bool = False) -> None:
        self.plan, self.x, self.encode, self.record, self.lookup = plan, x, encode, record, lookup
        self.fused = fusions(plan) if lookup else {}
        self.deferred = {d for f in self.fused.values() for d in f.deferred}
        self.last_uses = fused_last_uses(plan, self.fused) if self.fused else plan.last_uses
        self.const: dict[fx.Node, Any] = {}  # values of PLAIN and CONST nodes, computed once
        self.original_batch = x.shape[0]
        self.states: dict[str, IFState] = {}  # IF layers' states of the samples kept, by module path
        self.potentials: dict[str, torch.Tensor] = {}  # integrators' V [B, ...] by module path
        self.rows = torch.arange(x.shape[0], device=x.device)  # original index of each sample kept
        self.t = 0  # steps simulated so far
        self.recorded: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}  # (t0, rows, spikes)
        self.final: dict[str, IFState] = {}  # whole-batch states; rows of samples no longer kept are final
        self.widest = 0  # most float values per sample and step of a time-varying node (bool spikes and
        # uint8 spike counts are not counted), over the chunks run: what time_chunk="auto" sizes by

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the samples ``index`` (``[b]`` int64) of the batch in every state (early
        exit); the IF states of the others are final."""
        leaving = torch.ones(self.batch, dtype=torch.bool, device=index.device)
        leaving[index] = False
        self._save_states(leaving.nonzero().flatten())
        self.rows = self.rows[index]
        self.x = self.x[index]
        for node, value in self.const.items():
            if self.plan.kinds[node] == Kind.CONST and isinstance(value, torch.Tensor):
                self.const[node] = value[index]
        self.states = {target: state.take(index) for target, state in self.states.items()}
        self.potentials = {target: v[index] for target, v in self.potentials.items()}

    def _save_states(self, local: torch.Tensor | None = None) -> None:
        """Write the IF states of the kept samples ``local`` (``[n]`` indices into the kept batch;
        ``None``: all of them) into the whole-batch states :attr:`final`."""
        rows = self.rows if local is None else self.rows[local]
        for target, state in self.states.items():
            final = self.final.get(target)
            if final is None:
                shape = (self.original_batch, *state.v.shape[1:])
                final = self.final[target] = IFState(state.v.new_zeros(shape), state.count.new_zeros(shape))
            part = state if local is None else state.take(local)
            final.v.index_copy_(0, rows, part.v)
            final.count.index_copy_(0, rows, part.count)

    def final_states(self) -> dict[str, IFState]:
        """The :class:`~simulator.neuron.IFState` (``[B, ...]``, the whole original batch) of every
        IF layer run here, by module path: after the last step simulated, or, for a sample that
        exited early, after the chunk in which it exited."""
        if not self.final:  # no sample left early: the states are the whole batch's
            return dict(self.states)
        self._save_states()
        return dict(self.final)

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
            if (kind != Kind.TIME and node in self.const) or node in self.deferred:
                continue
            value = self._eval(node, env, expanded, steps)
            if kind == Kind.TIME:
                env[node] = value
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() > 0:
                    self.widest = max(self.widest, value.numel() // max(steps * self.batch, 1))
            else:
                self.const[node] = value
            if FREE_AFTER_LAST_USE:
                for done in self.last_uses.get(node, ()):
                    env.pop(done, None)
                    expanded.pop(done, None)
        raise ValueError("graph has no output node")

    def _eval(self, node: fx.Node, env: dict, expanded: dict, steps: int) -> Any:
        kind = self.plan.kinds[node]
        if node.op == "placeholder":
            if kind == Kind.PLAIN:
                return node.args[0] if node.args else None
            return self.x if kind == Kind.CONST else self.encode(self.x, steps)
        if node.op == "get_attr":
            return _attr(self.plan.gm, str(node.target))
        module = self.plan.modules.get(node)
        if isinstance(module, IFNeuron):
            return self._if(node, module, env, expanded, steps)
        if isinstance(module, Integrator):
            return self._integrate(node, module, env, expanded, steps)
        op = spike_op(node.op, node.target, module)
        first = node.args[0] if node.args else None
        if self.lookup and isinstance(module, nn.Conv2d) and len(node.args) == 1 and not node.kwargs:
            spikes = env.get(cast(fx.Node, first))
            if isinstance(spikes, Spikes):
                out = lookup_conv2d(spikes.data, module, spikes.dtype)
                if out is not None:
                    return out
        if op is not None and isinstance(first, fx.Node) and isinstance(env.get(first), Spikes):
            rest = fx.node.map_arg(node.args[1:], lambda a: self._arg(a, env, expanded, steps, kind))
            kwargs = fx.node.map_arg(node.kwargs, lambda a: self._arg(a, env, expanded, steps, kind))
            result = op(env[first], module, rest, kwargs)
            if result is not None:
                return result
        args = fx.node.map_arg(node.args, lambda a: self._arg(a, env, expanded, steps, kind))
        kwargs = fx.node.map_arg(node.kwargs, lambda a: self._arg(a, env, expanded, steps, kind))
        return call_node(node, module, args, kwargs)

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
        current = self._arg(cast(fx.Node, node.args[0]), env, expanded, steps, Kind.TIME)
        current = current.reshape(steps, self.batch, *current.shape[1:])
        v, self.potentials[str(node.target)] = integrate(current, self.potentials.get(str(node.target)), layer.r)
        return v.reshape(steps * self.batch, *current.shape[2:])

    def _if(self, node: fx.Node, layer: IFNeuron, env: dict, expanded: dict, steps: int) -> Spikes | torch.Tensor:
        (source,) = cast(tuple[fx.Node], node.args)
        fusion = self.fused.get(node)
        if fusion is not None:
            fused_spikes = self._fused(node, layer, fusion, env, steps)
            if fused_spikes is not None:
                return fused_spikes
            for d in fusion.deferred:  # declined: run the current's nodes as themselves
                env[d] = self._eval(d, env, expanded, steps)
        if self.plan.kinds[source] == Kind.CONST:
            current = self.const[source]
            if not isinstance(current, torch.Tensor) or current.shape[0] != self.batch:
                raise NotHoistable(f"IF layer {node.target!r} gets a current without batch axis")
            shape, const_steps = current.shape, steps
        else:
            current = self._arg(source, env, expanded, steps, Kind.TIME)
            current = current.reshape(steps, self.batch, *current.shape[1:])
            shape, const_steps = current.shape[1:], None
        state = self.states.get(str(node.target))
        if state is None:
            state = layer.initial_state(torch.empty(shape, dtype=current.dtype, device=current.device))
        params = layer.params()
        spikes, self.states[str(node.target)] = if_advance(current, state, params, steps=const_steps, donate=True)
        if records(
            self.record, layer
        ):  # bool; uint8 counts per step for a multi-spike or clamped layer, int8 if signed
            train = spikes.to(params.train_dtype)
            self.recorded.setdefault(str(node.target), []).append((self.t, self.rows, train))
        if not params.binary:  # several spikes per step or a clamp: float counts
            return spikes.reshape(steps * self.batch, *shape[1:])
        return Spikes(spikes.reshape(steps * self.batch, *shape[1:]), current.dtype)

    def _fused(self, node: fx.Node, layer: IFNeuron, fusion: Fusion, env: dict, steps: int) -> Spikes | None:
        """The IF node ``node`` and its current's nodes in one compiled kernel; ``None`` where it
        declines (then nothing has changed)."""
        inputs = [env.get(cast(fx.Node, t.args[0])) for t in fusion.terms]
        if not all(isinstance(v, Spikes) and v.dtype == torch.float32 for v in inputs):
            return None
        terms = [(self.plan.modules[t], cast(Spikes, v).data) for t, v in zip(fusion.terms, inputs, strict=True)]
        params = layer.params()
        result = fused_if(terms, steps, self.states.get(str(node.target)), params, layer.initial_state)
        if result is None:
            return None
        spikes, self.states[str(node.target)] = result
        if records(self.record, layer):
            self.recorded.setdefault(str(node.target), []).append((self.t, self.rows, spikes.to(params.train_dtype)))
        return Spikes(spikes.reshape(steps * self.batch, *spikes.shape[2:]), torch.float32)


class ModuleRunner:
    """Runs ``model(x)`` itself once per chunk, IF layers holding their state (the path for
    ``execution="single"`` and for models torch.fx cannot trace). Same interface as :class:`GraphRunner`
    without :meth:`GraphRunner.keep`."""

    def __init__(self, model: nn.Module, x: torch.Tensor, encode, record: Recording = False) -> None:
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
        recorded = [(n, layer) for n, layer in self.layers.items() if records(self.record, layer)]
        hooks = [layer.register_forward_hook(self._hook(n)) for n, layer in recorded]
        calls: dict[int, int] = {}

        def count(layer: nn.Module, args: Any) -> None:
            calls[id(layer)] = calls.get(id(layer), 0) + 1

        hooks += [layer.register_forward_pre_hook(count) for layer in self.stateful]
        try:
            y = self.model(self.encode(self.x, steps))
        finally:
            for hook in hooks:
                hook.remove()
            for layer in self.stateful:
                layer.steps = 1
        if any(n > 1 for n in calls.values()):  # as check_single_use, for a forward fx cannot trace
            name, layer = next((n, m) for n, m in self.model.named_modules() if calls.get(id(m), 0) > 1)
            raise ValueError(
                f"{type(layer).__name__} {name!r} was called {calls[id(layer)]} times in one forward; {_REUSED}"
            )
        self.t += steps
        return y.reshape(steps, self.x.shape[0], *y.shape[1:])

    def _hook(self, name: str):
        def hook(layer: IFNeuron, inputs, output: torch.Tensor) -> None:
            spikes = output.reshape(layer.steps, -1, *output.shape[1:])
            params = layer.params()
            spikes = spikes.to(params.train_dtype)
            self.recorded.setdefault(name, []).append((self.t, self.rows, spikes))

        return hook

    def final_states(self) -> dict[str, IFState]:
        """The :class:`~simulator.neuron.IFState` of every IF layer run, by module path (held by
        the layers themselves)."""
        return {name: layer.state for name, layer in self.layers.items() if layer.state is not None}
