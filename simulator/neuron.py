"""Integrate-and-fire (IF) neuron: a pure step function and a thin stateful module.

The discrete update implemented, per neuron and unit time step ``t`` (dt = 1):

.. math::
    V[t] = V[t-1] + r\\,I[t], \\qquad
    s[t] = \\begin{cases} 1 & V[t] \\ge V_{th} \\\\ 0 & \\text{else} \\end{cases}, \\qquad
    V[t] \\leftarrow \\begin{cases} V[t] - s[t]\\,V_{th} & \\text{reset = "subtract"} \\\\
                                   s[t]\\,V_{reset} + (1-s[t])\\,V[t] & \\text{reset = "zero"}
                     \\end{cases}

- ``V``: membrane potential, dimensionless, on the same scale as the threshold ``V_th``
  (after conversion every threshold is 1, so V is in multiples of V_th).
- ``I``: input current per time step (dimensionless, same scale as V).
- ``r``: input resistance (dimensionless, 1 after conversion; NIR's ``r``).
- ``s``: spike, 0 or 1. With ``spike_rule=">"`` the comparison is strict (NIR's rule). With
  ``spike_rule="multi"`` (Sinabs' ``MultiSpike``) a neuron emits ``floor(V / V_th)`` spikes in
  one step when ``V >= V_th``, each subtracting ``V_th`` (or resetting once to ``V_reset``).
- With ``spike_rule="signed"`` (reset by subtraction only) a neuron also emits a negative
  spike, ``s = -1``, when ``V < 0`` while its net count (positive minus negative spikes so far)
  is above 0, and ``V += V_th``: a later negative input takes back a spike the neuron fired
  too early (:func:`if_scan_signed`; Wang et al., IJCAI 2022).
- ``v_min`` (optional, a fraction of ``V_th``): after the reset the potential is clamped,
  ``V = relu(V - v_min V_th) + v_min V_th`` (= ``max(V, v_min V_th)`` up to rounding; computed
  as Sinabs does, whose ``min_v_mem = -V_th`` is ``v_min = -1``).
- ``V[0] = v_init * V_th`` (``v_init`` is a fraction of the threshold; 0 by default).
- ``state_bits`` (optional, M): saturation of the membrane as an M-bit signed register, as a
  chip with an M-bit state does: right after the integration, before the comparison with the
  threshold, ``V[t] = clamp(V[t-1] + r I[t], -2^(M-1), 2^(M-1) - 1)`` (in the potential's own
  units: integers after :func:`converter.quantize`). The reset then keeps V in range (reset by
  subtraction only lowers a V >= V_th > 0, and ``V_reset`` must fit).
- ``integer`` (optional): the state is held as float64 integers (exact up to 2^53, so integer
  weights, thresholds and inputs give exactly the integer arithmetic of a chip, whatever T);
  the input currents (float32 sums of integer weights, exact below 2^24) are added to it.

With reset by subtraction the firing rate over T steps is
``rate = I - (V[T] - V[0]) / (T V_th)`` for constant input ``I`` in [0, V_th], so it matches a
ReLU to within ``1/T`` (Rueckauer et al. 2017, Front. Neurosci. 11:682).

:func:`if_step` is the definition of these dynamics; :func:`if_scan` and :func:`if_scan_bool`
repeat it over a time axis (bitwise the same results). A layer's state between calls is an
:class:`IFState` (potential and spike count), passed in and returned by :func:`if_advance`,
which both :class:`IFNeuron` and the multi-step executor (:mod:`simulator.executor`) use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, cast

import torch
from torch import nn

from simulator.kernels import channels_last_order, in_memory_order, scalar_or_flat, scan_flat

RESETS = ("subtract", "zero")
SPIKE_RULES = (">=", ">", "multi", "signed")


class IFParams(NamedTuple):
    """Parameters of one IF layer, each broadcastable to the state ``[B, ...]``."""

    v_threshold: torch.Tensor
    v_reset: torch.Tensor
    r: torch.Tensor
    reset: str = "subtract"
    spike_rule: str = ">="
    v_min: float | None = None  # clamp after the reset, a fraction of v_threshold
    state_bits: int | None = None  # saturate V to an M-bit signed integer after the integration

    @property
    def bounds(self) -> tuple[float, float] | None:
        """``(-2^(M-1), 2^(M-1) - 1)`` for ``state_bits = M``; ``None`` without saturation."""
        if self.state_bits is None:
            return None
        return -float(2 ** (self.state_bits - 1)), float(2 ** (self.state_bits - 1) - 1)

    @property
    def binary(self) -> bool:
        """At most one spike per step and no clamp: the fast kernels of :func:`if_scan_bool` apply."""
        return self.spike_rule not in ("multi", "signed") and self.v_min is None

    @property
    def train_dtype(self) -> torch.dtype:
        """The dtype of a recorded spike train: ``bool`` when :attr:`binary`, ``int8`` for
        ``spike_rule="signed"`` (-1, 0, 1), else ``uint8`` (spikes per step)."""
        if self.binary:
            return torch.bool
        return torch.int8 if self.spike_rule == "signed" else torch.uint8


@dataclass(frozen=True)
class IFState:
    """State of one IF layer between calls, for a batch: what :func:`if_advance` takes and returns.

    Attributes:
        v: membrane potential ``[B, ...]`` (dimensionless, on the threshold's scale: multiples
            of V_th after conversion), after the last step's reset.
        count: spikes emitted since the initial state, ``[B, ...]`` int32 (for
            ``spike_rule="signed"`` the net count: +1 spikes minus -1 spikes).
    """

    v: torch.Tensor
    count: torch.Tensor

    def take(self, index: torch.Tensor) -> IFState:
        """The state of the samples ``index`` (``[b]`` int64) only."""
        return IFState(self.v[index], self.count[index])


def check_signed_reset(spike_rule: str, reset: str) -> None:
    """Raise ValueError when ``spike_rule="signed"`` comes with a reset other than ``"subtract"``
    (a -1 spike adds V_th back: only reset by subtraction can take a spike back)."""
    if spike_rule == "signed" and reset != "subtract":
        raise ValueError(f"spike_rule='signed' needs reset='subtract', got reset={reset!r}")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise ValueError naming ``name``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


#: Widest saturating state: 53 bits (the integers float64 holds exactly).
MAX_STATE_BITS = 53


def check_state_bits(state_bits: object, v_threshold: torch.Tensor, v_reset: torch.Tensor) -> int | None:
    """``state_bits`` checked: ``None``, or an int M in 2..53 whose range
    ``[-2^(M-1), 2^(M-1) - 1]`` holds the largest threshold and ``v_reset``.

    Raises:
        TypeError: not an int (or None).
        ValueError: outside 2..53, or a threshold or ``v_reset`` outside the range (naming the
            value and the bits it needs).
    """
    if state_bits is None:
        return None
    if isinstance(state_bits, bool) or not isinstance(state_bits, int):
        raise TypeError(f"state_bits must be an int or None, got {state_bits!r}")
    if not 2 <= state_bits <= MAX_STATE_BITS:
        raise ValueError(f"state_bits must be from 2 to {MAX_STATE_BITS}, got {state_bits}")
    high = 2 ** (state_bits - 1) - 1
    for name, t in (("v_threshold", v_threshold), ("v_reset", v_reset)):
        largest = float(t.abs().max()) if t.numel() else 0.0
        if largest > high:
            needed = int(math.ceil(largest)).bit_length() + 1
            raise ValueError(
                f"state_bits={state_bits} holds potentials up to {high}, but {name} reaches {largest:g} "
                f"(needs {needed} bits)"
            )
    return state_bits


def if_step(x: torch.Tensor, v: torch.Tensor, p: IFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step of the IF neuron.

    Args:
        x: input current ``[B, ...]`` for this step.
        v: membrane potential ``[B, ...]`` before the step.
        p: the layer's :class:`IFParams`.

    Returns:
        ``(spikes, v)``: spikes ``[B, ...]`` in ``x``'s dtype (0./1.; a count 0, 1, 2, ... with
        ``spike_rule="multi"``) and the potential after reset (and clamp).

    Raises:
        ValueError: ``spike_rule="signed"``: its step depends on the spikes emitted so far
            (:func:`if_scan_signed`).

    Example:
        >>> p = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0))
        >>> s, v = if_step(torch.tensor([0.75, 1.25]), torch.tensor([0.5, 0.0]), p)  # [B=2]
        >>> s.tolist(), v.tolist()
        ([1.0, 1.0], [0.25, 0.25])
    """
    if p.spike_rule == "signed":
        raise ValueError("spike_rule='signed' depends on the spikes emitted so far: use if_advance or if_scan_signed")
    v = v + p.r * x
    bounds = p.bounds
    if bounds is not None:  # saturation of an M-bit register, after the integration
        v = v.clamp(*bounds)
    fired = v > p.v_threshold if p.spike_rule == ">" else v >= p.v_threshold
    spikes = fired.to(x.dtype)
    if p.spike_rule == "multi":
        spikes = torch.where(fired, torch.floor(v / p.v_threshold), 0.0).to(x.dtype)
    if p.reset == "subtract":
        v = v - spikes * p.v_threshold
    else:
        v = torch.where(fired, p.v_reset.to(v.dtype).expand_as(v), v)
    return spikes, _clamp_after_reset(v, p)


def _clamp_after_reset(v: torch.Tensor, p: IFParams) -> torch.Tensor:
    """``v`` clamped at ``p.v_min`` V_th (``v`` itself without ``v_min``): Sinabs' arithmetic,
    ``relu(v - v_min) + v_min``, bit for bit (not ``max(v, v_min)``)."""
    if p.v_min is None:
        return v
    floor = (p.v_min * p.v_threshold).to(v.dtype)
    return torch.relu(v - floor) + floor


def if_scan_signed(
    x: torch.Tensor, v: torch.Tensor, count: torch.Tensor, p: IFParams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a signed IF layer (``spike_rule="signed"``) over the leading time axis.

    Each step integrates as :func:`if_step` does (``V += r I``, then the ``state_bits``
    saturation); a neuron then emits ``+1`` when ``V >= V_th`` and ``-1`` when ``V < 0`` while
    its net count (positive minus negative spikes since the start) is above 0, and subtracts
    ``s V_th`` (a negative spike adds ``V_th`` back); the ``v_min`` clamp follows. The net
    count never goes below 0, so the layer still codes a ReLU; a negative spike takes back a
    positive one whose charge the later input cancelled. While each step's input ``r I`` lies
    in ``[-V_th, V_th)`` and the partial sums ``V[0] + r (I[1] + ... + I[t])`` stay ``>= 0``, the
    potential stays in ``[0, V_th)`` after every step and the net count after T steps is
    ``floor((V[0] + r ΣI) / V_th)``: the quantised mean input, whatever the inputs' order in time
    (in general the count is that floor exactly when the final potential lies in ``[0, V_th)``).
    This is the signed neuron with memory of Wang et al., IJCAI 2022 ("Signed neuron with
    memory: towards simple, accurate and high-efficient ANN-SNN conversion"), with the negative
    threshold at 0 so that ``V[0] = V_th/2`` rounds to the nearest count.

    Args:
        x: input currents ``[T, B, ...]``.
        v: initial potential ``[B, ...]``.
        count: net spike count before the first step ``[B, ...]`` int32.
        p: the layer's :class:`IFParams` (``reset="subtract"``).

    Returns:
        ``(spikes [T, B, ...], v [B, ...], count [B, ...])``: the spikes per step (1., 0. or
        -1. in ``x``'s dtype), the final potential and the net count.

    Raises:
        ValueError: ``p.reset`` is not ``"subtract"``.

    Example:
        >>> p = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0), spike_rule="signed")
        >>> s, v, n = if_scan_signed(torch.tensor([[0.75], [-0.5], [0.25]]), torch.tensor([0.5]),
        ...                          torch.tensor([0], dtype=torch.int32), p)  # [T=3, B=1]
        >>> s.flatten().tolist(), v.tolist(), n.tolist()  # V: 1.25-1, -0.25+1, 1.0-1
        ([1.0, -1.0, 1.0], [0.0], [1])
    """
    check_signed_reset(p.spike_rule, p.reset)
    bounds, out = p.bounds, []
    net = count.clone()  # int32: exact in any input dtype
    for xt in x:
        v = v + p.r * xt
        if bounds is not None:
            v = v.clamp(*bounds)
        s = (v >= p.v_threshold).to(x.dtype) - ((v < 0) & (net > 0)).to(x.dtype)
        v = _clamp_after_reset(v - s * p.v_threshold, p)
        net = net + s.to(net.dtype)
        out.append(s)
    spikes = torch.stack(out) if out else x.new_zeros(x.shape)
    return spikes, v, net


def input_current(x: torch.Tensor, r: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``r * x`` in ``dtype``, as :func:`if_step` computes it (``r`` broadcast from the right);
    ``x`` itself when every ``r`` is 1 on the CPU (``1 * x == x`` exactly; the check is a host
    read, so it is skipped on other devices)."""
    r = r.to(x.device)
    if r.device.type == "cpu" and bool((r == 1).all()):
        return x.to(dtype)
    return (r * x).to(dtype)


def if_scan(x: torch.Tensor, v: torch.Tensor, p: IFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Run :func:`if_step` over the leading time axis.

    Args:
        x: input currents ``[T, B, ...]``.
        v: initial potential ``[B, ...]``.

    Returns:
        ``(spikes [T, B, ...], v [B, ...])``: all spikes (0./1. in ``x``'s dtype) and the final
        potential; bitwise what ``T`` calls of :func:`if_step` give.

    Raises:
        ValueError: ``spike_rule="signed"`` (use :func:`if_scan_signed`, which takes the count).
    """
    if not p.binary:
        out = []
        for xt in x:
            s, v = if_step(xt, v, p)
            out.append(s)
        return torch.stack(out), v
    spikes, v = if_scan_bool(x, v, p)
    return spikes.to(x.dtype), v


def if_scan_bool(
    x: torch.Tensor, v: torch.Tensor, p: IFParams, steps: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All steps of one IF layer at once, with compact ``bool`` spikes (the fast path).

    Bitwise the same spikes and potential as repeating :func:`if_step`; each neuron's state is
    updated for all steps while it is in cache (:func:`simulator.kernels.scan_flat`).

    Args:
        x: input currents ``[T, B, ...]``; or, with ``steps`` given, one current ``[B, ...]``
            that is the same at every step (a constant input: it is never expanded over time).
        v: potential ``[B, ...]`` before the first step (not modified).
        p: the layer's :class:`IFParams`.
        steps: number of steps for a constant current; ``None`` when ``x`` has a time axis.

    Returns:
        ``(spikes, v)``: ``bool`` spikes ``[T, B, ...]`` and the potential after the last step.

    Raises:
        ValueError: ``steps < 1``, or a multi-spike or clamped layer (``not p.binary``: use
            :func:`if_scan`).

    Example:
        >>> p = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0))
        >>> s, v = if_scan_bool(torch.tensor([0.75]), torch.tensor([0.0]), p, steps=4)  # [B=1]
        >>> s.flatten().tolist(), v.tolist()  # V: 0.75, 1.5-1, 1.25-1, 1.0-1
        ([False, True, True, True], [0.0])
    """
    spikes, v, _ = _scan_bool(x, v, p, steps)
    return spikes, v


def _flat_state(t: torch.Tensor, shape: torch.Size, order: tuple[int, ...] | None, dtype: torch.dtype, donate: bool):
    """``t`` expanded to ``shape`` as a flat ``[M]`` tensor in memory order ``order`` and in
    ``dtype``: ``t``'s own storage when ``donate`` allows it and it is already laid out so, else a copy."""
    mem = in_memory_order(t.expand(shape), order)
    if donate and mem.dtype == dtype and mem.is_contiguous():
        return mem.view(-1)
    return mem.to(dtype).reshape(-1).clone()


def _scan_bool(
    x: torch.Tensor,
    v: torch.Tensor,
    p: IFParams,
    steps: int | None = None,
    count: torch.Tensor | None = None,
    donate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`if_scan_bool`, also advancing ``count`` (``[B, ...]``, integer) when given;
    ``donate``: ``v`` and ``count`` may be updated in place (the caller drops them)."""
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not p.binary:
        raise ValueError("if_scan_bool needs binary spikes without clamp; use if_advance")
    constant = steps is not None
    state_shape = x.shape if constant else x.shape[1:]
    steps = steps if steps is not None else x.shape[0]
    dtype = torch.promote_types(x.dtype, v.dtype)
    # the current stays in its own dtype (float32 into a float64 integer state: the in-place add
    # converts each value exactly, without a float64 copy of all T steps, 2x faster)
    current_dtype = x.dtype if x.dtype.is_floating_point else dtype
    current = input_current(x, p.r, current_dtype)
    # a channels-last current is scanned in its memory order (no copy into NCHW order); the
    # spikes, potential and count come back as channels-last views of the same shapes
    order = channels_last_order(current if constant else current[0])
    mem_shape = state_shape if order is None else torch.Size(state_shape[d] for d in order)
    if order is not None:
        current = current.permute(order if constant else (0, *(d + 1 for d in order)))
    current = current.reshape(1 if constant else steps, -1)
    v_flat = _flat_state(v, state_shape, order, dtype, donate)
    count_flat = None if count is None else _flat_state(count, state_shape, order, count.dtype, donate)
    out = torch.empty(steps, v_flat.numel(), dtype=torch.bool, device=x.device)
    threshold = scalar_or_flat(p.v_threshold.to(x.device), state_shape, dtype, order)
    v_reset = scalar_or_flat(p.v_reset.to(x.device), state_shape, dtype, order)
    subtract, strict = p.reset == "subtract", p.spike_rule == ">"
    scan_flat(current, v_flat, out, threshold, v_reset, subtract, strict, bounds=p.bounds, count=count_flat)
    spikes, v_out = out.reshape(steps, *mem_shape), v_flat.reshape(mem_shape)
    count_out = None if count_flat is None else count_flat.reshape(mem_shape)
    if order is not None:
        back = tuple(order.index(d) for d in range(len(order)))
        spikes, v_out = spikes.permute(0, *(d + 1 for d in back)), v_out.permute(back)
        count_out = None if count_out is None else count_out.permute(back)
    return spikes, v_out, count_out


def check_state_fits(state: IFState, shape: torch.Size) -> None:
    """Raise ``ValueError`` unless the potential and count of ``state`` broadcast to ``shape``
    (one step's ``[B, ...]``) without growing it."""
    for name, t in (("potential", state.v), ("spike count", state.count)):
        try:
            fits = torch.broadcast_shapes(t.shape, shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"the IF state's {name} has shape {tuple(t.shape)} but one step of the input has shape "
                f"{tuple(shape)}: a state kept from a batch of another size or from another layer "
                "(call simulator.reset_states(model), or the layer's reset_state(), between such batches)"
            )


def if_advance(
    x: torch.Tensor, state: IFState, p: IFParams, steps: int | None = None, donate: bool = False
) -> tuple[torch.Tensor, IFState]:
    """Advance one IF layer by a chunk of time steps: :func:`if_step` repeated, from ``state``.

    Picks the fast kernel (:func:`if_scan_bool`) when ``p.binary``, :func:`if_scan_signed` for
    ``spike_rule="signed"``, else the per-step loop (:func:`if_scan`); the spike count is
    advanced with the spikes emitted (the net count for signed spikes).

    Args:
        x: input currents ``[T, B, ...]``; or, with ``steps`` given, one current ``[B, ...]``
            that is the same at every step (never expanded over time on the fast path).
        state: the layer's :class:`IFState` before the first step (not modified unless ``donate``).
        p: the layer's :class:`IFParams`.
        steps: number of time steps for a constant current; ``None`` when ``x`` has a time axis.
        donate: the caller gives ``state`` up: on the fast path its tensors may be updated in
            place and returned (saves a copy of V and of the count per call; the multi-step
            executor does this). ``False`` (default): ``state`` is not modified.

    Returns:
        ``(spikes, state)``: spikes ``[T, B, ...]``, ``bool`` when ``p.binary``, else the spikes
        per step as a float count (0., 1., 2., ... with ``spike_rule="multi"``; 1., 0., -1. with
        ``"signed"``) in ``x``'s dtype;
        and the new :class:`IFState` after the last step.

    Raises:
        ValueError: ``steps < 1``; a state that does not fit the input (``[B, ...]`` of another
            batch size or layer: e.g. an :class:`IFNeuron` called on a batch of another size
            without :meth:`IFNeuron.reset_state` in between).

    Example:
        >>> p = IFParams(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0))
        >>> state = IFState(torch.zeros(1), torch.zeros(1, dtype=torch.int32))  # [B=1]
        >>> s, state = if_advance(torch.tensor([0.75]), state, p, steps=4)  # s: [T=4, B=1]
        >>> state.v.tolist(), state.count.tolist()  # V: 0.75, 1.5-1, 1.25-1, 1.0-1
        ([0.0], [3])
    """
    check_state_fits(state, x.shape if steps is not None else x.shape[1:])
    if p.binary:
        spikes, v, count = _scan_bool(x, state.v, p, steps, state.count, donate)
        return spikes, IFState(v, cast(torch.Tensor, count))
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        x = x.unsqueeze(0).expand(steps, *x.shape)
    if p.spike_rule == "signed":
        spikes, v, count = if_scan_signed(x, state.v, state.count, p)
        return spikes, IFState(v, count)
    spikes, v = if_scan(x, state.v, p)
    return spikes, IFState(v, state.count + spikes.sum(0).to(state.count.dtype))


class IFNeuron(nn.Module):
    """A layer of IF neurons with reset by subtraction (or to a value), multi-step aware.

    The layer takes the currents of ``steps`` consecutive time steps folded into the batch
    axis, ``[steps * B, ...]`` (time-major), so that the stateless layers around it run once
    on all steps; ``steps = 1`` (the default) is single-step mode. ``forward`` advances the
    layer's :class:`IFState` (``self.state``, ``None`` until the first call and after
    :meth:`reset_state`) with :func:`if_advance`; the multi-step executor of
    :func:`simulator.simulate` does not call ``forward`` but calls :func:`if_advance` itself with
    :meth:`params` and :meth:`initial_state`, keeping the states by layer, and leaves each
    layer's final state in ``self.state`` afterwards. ``v`` and ``spike_count`` read the state.

    Args:
        v_threshold: threshold V_th, a float or a tensor broadcastable to ``[B, ...]``
            without the batch axis (per neuron or per channel). Must be > 0.
        reset: ``"subtract"`` (soft reset, default) or ``"zero"`` (reset to ``v_reset``).
        spike_rule: ``">="`` (default), ``">"`` (NIR's strict rule), ``"multi"`` (several
            spikes per step, Sinabs' rule; simulated by a slower per-step loop) or
            ``"signed"`` (a negative spike takes back a positive one, :func:`if_scan_signed`;
            reset by subtraction only; also a per-step loop).
        v_init: initial potential as a fraction of ``v_threshold`` (dimensionless).
        v_reset: potential after a spike with ``reset="zero"`` (default 0).
        r: input resistance (dimensionless), default 1.
        v_min: clamp of the potential after the reset, a fraction of ``v_threshold``
            (``None``, the default: no clamp; Sinabs: -1).
        state_bits: M (2 to 53): saturate the potential to ``[-2^(M-1), 2^(M-1) - 1]`` right
            after the integration of each step, before the threshold comparison (in V's units;
            see the module docstring). ``None`` (default): no saturation.
        integer: hold the state as float64 integers (exact; set by :func:`converter.quantize`,
            which makes W, b, V_th and V[0] integers). Default ``False``: the input's dtype.

    Shape:
        Input ``[steps * B, ...]``; output spikes of the same shape, 0./1. floats (counts with
        ``spike_rule="multi"``, 1./0./-1. with ``"signed"``).

    Raises:
        ValueError: unknown ``reset`` or ``spike_rule``, ``spike_rule="signed"`` without
            ``reset="subtract"``, a non-positive threshold, a
            ``state_bits`` outside 2..53 or one the threshold or ``v_reset`` does not fit, or
            an input whose leading size is not a multiple of ``steps``.
        TypeError: a ``state_bits`` that is not an int.
    """

    v_threshold: torch.Tensor
    v_reset: torch.Tensor
    r: torch.Tensor

    def __init__(
        self,
        v_threshold: float | torch.Tensor = 1.0,
        reset: str = "subtract",
        spike_rule: str = ">=",
        v_init: float = 0.0,
        v_reset: float | torch.Tensor = 0.0,
        r: float | torch.Tensor = 1.0,
        v_min: float | None = None,
        state_bits: int | None = None,
        integer: bool = False,
    ) -> None:
        super().__init__()
        self.reset = check_choice("reset", reset, RESETS)
        self.spike_rule = check_choice("spike_rule", spike_rule, SPIKE_RULES)
        check_signed_reset(spike_rule, reset)
        threshold = torch.as_tensor(v_threshold, dtype=torch.float32)
        if not bool((threshold > 0).all()):
            raise ValueError(f"v_threshold must be > 0, got min {threshold.min().item()}")
        self.register_buffer("v_threshold", threshold)
        self.register_buffer("v_reset", torch.as_tensor(v_reset, dtype=torch.float32))
        self.register_buffer("r", torch.as_tensor(r, dtype=torch.float32))
        self.v_init = float(v_init)
        self.v_min = None if v_min is None else float(v_min)
        self.state_bits = check_state_bits(state_bits, threshold, self.v_reset)
        self.integer = bool(integer)
        self.steps = 1
        self.state: IFState | None = None

    @property
    def v(self) -> torch.Tensor | None:
        """Membrane potential ``[B, ...]`` after the last step (``None`` before the first)."""
        return None if self.state is None else self.state.v

    @property
    def spike_count(self) -> torch.Tensor | None:
        """Spikes emitted since the reset, ``[B, ...]`` in the potential's dtype (``None`` before
        the first step; the net count for ``spike_rule="signed"``)."""
        return None if self.state is None else self.state.count.to(self.state.v.dtype)

    def params(self) -> IFParams:
        """The layer's parameters for :func:`if_step` and :func:`if_advance`."""
        return IFParams(
            self.v_threshold, self.v_reset, self.r, self.reset, self.spike_rule, self.v_min, self.state_bits
        )

    def reset_state(self) -> None:
        """Forget the membrane potential and spike counts (the next call starts at ``v_init``)."""
        self.state = None

    def state_dtype(self, like: torch.Tensor) -> torch.dtype:
        """The potential's dtype for inputs like ``like``: float64 for an ``integer`` layer."""
        return torch.float64 if self.integer else like.dtype

    def initial_potential(self, like: torch.Tensor) -> torch.Tensor:
        """``V[0] = v_init * V_th`` as a new tensor shaped like ``like`` (``[B, ...]``), in
        :meth:`state_dtype` (rounded to an integer for an ``integer`` layer)."""
        v0 = self.v_init * self.v_threshold
        if self.integer:
            v0 = torch.round(v0.double())
        return v0.to(device=like.device, dtype=self.state_dtype(like)).expand_as(like).clone()

    def initial_state(self, like: torch.Tensor) -> IFState:
        """The :class:`IFState` before the first step for inputs shaped and typed like ``like``
        (``[B, ...]``): ``V[0] = v_init * V_th``, no spikes."""
        return IFState(self.initial_potential(like), torch.zeros(like.shape, dtype=torch.int32, device=like.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.steps:
            raise ValueError(f"input batch {x.shape[0]} is not a multiple of steps={self.steps}")
        xt = x.reshape(self.steps, x.shape[0] // self.steps, *x.shape[1:])
        state = self.initial_state(xt[0]) if self.state is None else self.state
        spikes, self.state = if_advance(xt, state, self.params())
        return spikes.to(x.dtype).reshape(x.shape)

    def extra_repr(self) -> str:
        th = self.v_threshold
        th_repr = f"{th.item():g}" if th.numel() == 1 else f"[{tuple(th.shape)}]"
        clamp = "" if self.v_min is None else f", v_min={self.v_min:g}"
        clamp += "" if self.state_bits is None else f", state_bits={self.state_bits}"
        clamp += ", integer=True" if self.integer else ""
        return (
            f"v_threshold={th_repr}, reset={self.reset!r}, spike_rule={self.spike_rule!r}, "
            f"v_init={self.v_init:g}{clamp}"
        )
