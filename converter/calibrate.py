"""Post-training bias calibration: correct each IF layer's mean rate error, layer by layer.

After normalisation an IF layer's firing rate differs from the (clipped, normalised) ANN
activation by quantisation and by errors inherited from earlier layers; the mean of that
difference per channel is systematic, and adding it to the bias of the Conv/Linear feeding the
layer removes it (Li et al., ICML 2021, "A free lunch from ANN: towards efficient, accurate
spiking neural networks calibration": bias calibration). Layers are corrected in order, each
after re-simulating the network with the earlier corrections, for the time budget T the SNN
will run with. Only biases change (weights and thresholds stay). A layer fed by a residual join
(``IF(branch + shortcut)``) is corrected through the branch's last Conv/Linear, the shortcut's
current staying as it is: the errors the join propagates (both operands carry spikes) are then
corrected where they arrive, as for any other layer. Calibrating layer ``k`` simulates only the
part of the network that computes it (layers after ``k`` are not run).

Under ``torch.distributed`` these fits are not sharded: :class:`converter.Converter` runs them on
every rank on the same first calibration samples (seeded draws, so the same parameters as one
process on those samples) and broadcasts rank 0's result, rather than all-reducing gradients of
a sharded fit, whose sums in another order would not be bit-equal to one process.

Cost: calibrating layer ``k`` needs the SNN's values just before it, on every calibration
sample, for T steps. Rather than simulating layers 1..k again for every ``k`` (a cost that grows
with the square of the depth), each pass keeps the spike trains of the IF layers it has already
finished (their parameters no longer change), bit-packed, and computes layer ``k``'s inputs from
the nearest kept trains (:class:`_Trains`); a train is dropped once every IF layer it feeds is
kept. Trains beyond :data:`TRAIN_CACHE_BYTES` are not kept, and what needs them is computed from
the start again (the same values, at the old cost).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import torch
import torch.fx as fx

from converter.channelwise import _producer
from simulator import IFNeuron, Integrator
from simulator.executor import _attr, call_node
from simulator.graph import WEIGHTED, is_add
from simulator.integrator import integrate
from simulator.neuron import if_advance
from simulator.simulate import AUTO_CHUNK_VALUES, Encoder, model_encoding

log = logging.getLogger(__name__)

#: Bytes of bit-packed spike trains a calibration pass keeps between layers (:class:`_Trains`):
#: 1 bit per neuron, step and calibration sample (2,000 samples of a 16 x 32 x 32 layer for
#: T = 32: 128 MiB). Beyond it, what needs a train that was not kept is computed from the start.
TRAIN_CACHE_BYTES = 2**31

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack(spikes: torch.Tensor) -> torch.Tensor:
    """``bool`` spikes of any shape → ``uint8`` ``[ceil(numel / 8)]``, 8 spikes per byte."""
    flat = spikes.reshape(-1)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)])
    return (flat.view(-1, 8).to(torch.uint8) * _BITS.to(flat.device)).sum(1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """The inverse of :func:`_pack`: spikes 0./1. of ``shape`` in ``dtype``."""
    bits = (packed.unsqueeze(1) & _BITS.to(packed.device)) != 0
    return bits.reshape(-1)[: shape.numel()].view(shape).to(dtype)


def _compact(values: torch.Tensor) -> torch.Tensor:
    """A non-binary train (burst spike counts or signed spikes per step) as ``int8`` or ``int16``
    when that is exact, else as it is."""
    values = values.detach()
    if values.is_floating_point() and values.numel() and bool((values == values.round()).all()):
        largest = float(values.abs().max())
        for dtype in (torch.int8, torch.int16):
            if largest <= torch.iinfo(dtype).max:
                return values.to(dtype)
    return values


def _nbytes(entries: list[tuple[torch.Tensor, torch.Size, torch.dtype]]) -> int:
    """Bytes held by one layer's kept train (its per-batch entries)."""
    return sum(data.numel() * data.element_size() for data, _, _ in entries)


class _Trains:
    """The values of an SNN's nodes over ``T`` steps on calibration inputs ``x`` (``[N, ...]``),
    keeping the spike trains of finished IF layers so that each query runs only the layers
    between the kept trains and the node asked for.

    A query (:meth:`mean`, :meth:`counts`) evaluates the node's ancestors back to the nearest
    kept trains (or the input), in graph order, over all ``T`` steps at once, a batch of samples
    at a time: a stateless layer on ``[T * b, ...]``, an IF layer by :func:`if_advance` from its
    initial state (what :mod:`simulator.executor` does with a single chunk), the input encoded as
    :func:`simulator.simulate` encodes it (:class:`simulator.simulate.Encoder`). The caller
    promises that every IF layer a query computes is final (the calibration only changes what
    follows it), except the IF layer a :meth:`counts` query asks for; their trains are kept,
    bit-packed, within ``cache_bytes`` (default :data:`TRAIN_CACHE_BYTES`). A kept train is
    dropped once every IF layer it feeds through stateless layers is kept and no output depends
    on it that way.
    """

    def __init__(self, snn: fx.GraphModule, x: torch.Tensor, T: int, cache_bytes: int | None = None) -> None:
        self.snn, self.x, self.T = snn, x, T
        self.cache_bytes = TRAIN_CACHE_BYTES if cache_bytes is None else cache_bytes
        self.modules = dict(snn.named_modules())
        self.order = {node: i for i, node in enumerate(snn.graph.nodes)}
        self.input = next((n for n in snn.graph.nodes if n.op == "placeholder"), None)
        self.encoding = model_encoding(snn)
        self.kept: dict[fx.Node, list[tuple[torch.Tensor, torch.Size, torch.dtype]]] = {}
        self.kept_bytes = 0
        # the samples' batches, the same in every query (kept trains are stored per batch): a first
        # batch of 1 sample measures the widest value, which sizes the others
        self.bounds = [0, min(1, len(x))]
        self.widest = 0

    def _layer(self, node: fx.Node) -> IFNeuron | None:
        module = self.modules.get(str(node.target)) if node.op == "call_module" else None
        return module if isinstance(module, IFNeuron) else None

    def _cut(self, node: fx.Node) -> list[fx.Node]:
        """``node`` and its ancestors back to the kept trains, in graph order."""
        cut: set[fx.Node] = set()
        stack = [node]
        while stack:
            current = stack.pop()
            if current not in cut:
                cut.add(current)
                if current not in self.kept:
                    stack.extend(current.all_input_nodes)
        return sorted(cut, key=self.order.__getitem__)

    def _evaluate(self, node: fx.Node, reduce, final: bool) -> torch.Tensor:
        """``reduce(value of node [T, b, ...])`` for each batch of samples, concatenated."""
        cut = self._cut(node)
        fresh: dict[fx.Node, list[tuple[torch.Tensor, torch.Size, torch.dtype]]] = {
            n: [] for n in cut if self._layer(n) is not None and n not in self.kept and (final or n is not node)
        }
        generator = torch.Generator(device=self.x.device).manual_seed(0) if self.encoding == "poisson" else None
        encoder, T = Encoder(self.encoding, generator), self.T
        results: list[torch.Tensor] = []
        pending = 0  # bytes of the trains in ``fresh``
        while len(results) < len(self.bounds) - 1 or self.bounds[-1] < len(self.x):
            if len(results) == len(self.bounds) - 1:  # the first query sizes the batches after the first one
                batch = max(1, AUTO_CHUNK_VALUES // (T * max(self.widest, 1)))
                self.bounds.extend(range(self.bounds[-1] + batch, len(self.x), batch))
                self.bounds.append(len(self.x))
            xb = self.x[self.bounds[len(results)] : self.bounds[len(results) + 1]]
            encoder.t, b = 0, len(xb)
            env: dict[fx.Node, Any] = {}
            for current in cut:
                if current in self.kept:
                    data, shape, dtype = self.kept[current][len(results)]
                    env[current] = _unpack(data, shape, dtype) if data.dtype == torch.uint8 else data.to(dtype)
                elif current.op == "placeholder":
                    env[current] = encoder(xb, T) if current is self.input else (current.args or [None])[0]
                else:
                    env[current] = value = self._run(current, env, T, b)
                    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == T * b:
                        self.widest = max(self.widest, value[0].numel())
                if current in fresh:
                    value = env[current]
                    binary = cast(IFNeuron, self._layer(current)).params().binary
                    entry = (_pack(value != 0) if binary else _compact(value), value.shape, value.dtype)
                    fresh[current].append(entry)
                    pending += _nbytes([entry])
                    if self.kept_bytes + pending > self.cache_bytes:  # beyond the budget: not kept
                        pending -= _nbytes(fresh.pop(current))
            value = env[node]
            results.append(reduce(value.reshape(T, b, *value.shape[1:])))
        self._keep(fresh)
        return torch.cat(results)

    def _run(self, node: fx.Node, env: dict, T: int, b: int) -> Any:
        """The value of ``node`` over ``T`` steps of ``b`` samples, from its inputs' in ``env``."""
        args: Any = fx.node.map_arg(node.args, env.__getitem__)
        kwargs: Any = fx.node.map_arg(node.kwargs, env.__getitem__)
        if node.op == "get_attr":
            return _attr(self.snn, str(node.target))
        module = self.modules[str(node.target)] if node.op == "call_module" else None
        if isinstance(module, (IFNeuron, Integrator)):
            current = args[0].reshape(T, b, *args[0].shape[1:])
            if isinstance(module, Integrator):
                return integrate(current, None, module.r)[0].reshape(args[0].shape)
            spikes, _ = if_advance(current, module.initial_state(current[0]), module.params())
            return spikes.to(current.dtype).reshape(args[0].shape)
        return call_node(node, module, args, kwargs)

    def _keep(self, fresh: dict[fx.Node, list]) -> None:
        for node, entries in fresh.items():
            size = _nbytes(entries)
            if self.kept_bytes + size <= self.cache_bytes:
                self.kept[node] = entries
                self.kept_bytes += size
        for node in [n for n in self.kept if self._spent(n)]:
            self.kept_bytes -= _nbytes(self.kept.pop(node))

    def _spent(self, node: fx.Node) -> bool:
        """Whether every IF layer ``node`` feeds through stateless layers is kept and no output
        is fed that way (nothing needs ``node``'s train any more)."""
        stack, seen = list(node.users), set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current.op == "output":
                return False
            if self._layer(current) is None:
                stack.extend(current.users)
            elif current not in self.kept:
                return False
        return True

    def mean(self, node: fx.Node) -> torch.Tensor:
        """``node``'s value averaged over the ``T`` steps, ``[N, ...]`` (``node`` is final)."""
        return self._evaluate(node, lambda v: v.mean(0), final=True)

    def counts(self, node: fx.Node) -> torch.Tensor:
        """IF layer ``node``'s spike counts over the ``T`` steps, ``[N, ...]`` (``node`` may still
        change: its train is not kept)."""
        return self._evaluate(node, lambda v: v.sum(0), final=False)


def _calibrated_producer(node: fx.Node, modules) -> tuple[fx.Node, fx.Node | None] | None:
    """``(Conv/Linear node, join node or None)`` whose parameters calibrate IF layer ``node``.

    The single Conv/Linear producer (:func:`converter.channelwise._producer`) when there is one;
    for ``IF(a + b)`` (the add used by the IF layer alone), the first operand, in argument order,
    that is a Conv/Linear whose output goes to the add alone (the residual branch's last layer;
    the other operand is the shortcut), and the add. None otherwise.
    """
    producer = _producer(node, modules)
    if producer is not None:
        return producer, None
    join = node.args[0] if node.args else None
    if not (isinstance(join, fx.Node) and is_add(join) and len(join.users) == 1):
        return None
    for operand in join.args[:2]:
        if (
            isinstance(operand, fx.Node)
            and operand.op == "call_module"
            and isinstance(modules[operand.target], WEIGHTED)
            and len(operand.users) == 1
        ):
            return operand, join
    return None


@torch.no_grad()
def calibrate_biases(
    snn: fx.GraphModule,
    targets: dict[str, torch.Tensor],
    x: torch.Tensor,
    T: int,
    cache_bytes: int | None = None,
) -> list[str]:
    """Shift biases so that each IF layer's mean rate per channel matches its target.

    Args:
        snn: the converted SNN, modified in place (biases only).
        targets: IF module name → target rates ``[N, C, ...]`` in [0, 1] for the inputs ``x``
            (the ANN activation over the layer's λ, clipped at 1).
        x: calibration inputs ``[N, ...]`` (at most about 1,000 images suffice).
        T: the number of time steps the SNN will be run for.
        cache_bytes: the spike trains kept between layers (:class:`_Trains`; default
            :data:`TRAIN_CACHE_BYTES`); 0 simulates every layer's inputs from the start.

    Returns:
        The IF module names whose producers were corrected (a layer after a residual join
        through its branch's last Conv/Linear, see :func:`_calibrated_producer`).
    """
    modules = dict(snn.named_modules())
    trains = _Trains(snn, x, T, cache_bytes)
    corrected = []
    for node in list(snn.graph.nodes):
        if node.op != "call_module" or node.target not in targets or not isinstance(modules[node.target], IFNeuron):
            continue
        found = _calibrated_producer(node, modules)
        layer = modules[found[0].target] if found is not None else None
        if layer is None or layer.bias is None:
            log.info("bias calibration: %s has no Conv/Linear producer with a bias; skipped", node.target)
            continue
        _correct_bias(layer, modules[node.target], targets[node.target], trains.counts(node), T)
        corrected.append(node.target)
    return corrected


def _shortcut_operand(join: fx.Node, producer: fx.Node) -> fx.Node:
    """The operand of residual join ``join`` (``branch + shortcut``) that is not ``producer``,
    the branch's last Conv/Linear (:func:`_calibrated_producer`)."""
    return cast(fx.Node, join.args[1] if join.args[0] is producer else join.args[0])


def _rate_error(target: torch.Tensor, counts: torch.Tensor, T: int, neuron: IFNeuron) -> torch.Tensor:
    """Mean of ``(target - counts / T) · V_th`` per channel (dim 1 of ``[N, C, ...]``), ``[C]``:
    the rate error as a current (``neuron``'s threshold scalar, per channel or per neuron)."""
    error = (target.to(counts.device) - counts / T) * neuron.v_threshold.to(counts.device)
    return error.transpose(0, 1).reshape(counts.shape[1], -1).mean(1)


def _correct_bias(layer: torch.nn.Module, neuron: IFNeuron, target: torch.Tensor, counts: torch.Tensor, T: int) -> None:
    """Add to ``layer``'s bias the mean rate error per channel of IF layer ``neuron`` (``target``
    rates minus ``counts / T``, both ``[N, C, ...]``) as a current (a rate error e is e V_th)."""
    bias = cast(torch.Tensor, layer.bias)
    bias.add_(_rate_error(target, counts, T, neuron).to(bias.device, bias.dtype))


def _fit(
    layer: torch.nn.Module,
    inputs: torch.Tensor,
    loss_fn,
    iterations: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """Adam on ``layer``'s parameters: ``iterations`` steps, each on ``batch_size`` rows of
    ``inputs`` drawn with ``generator``, minimising ``loss_fn(layer(rows), row_indices)``.
    Returns the last loss."""
    params = [p for p in layer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(iterations):
            idx = torch.randint(0, len(inputs), (min(batch_size, len(inputs)),), generator=generator)
            idx = idx.to(inputs.device)
            loss = loss_fn(layer(inputs[idx]), idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for p in params:
        p.grad = None
    return loss.item()


def _sees_spikes(node: fx.Node, modules) -> bool:
    """Whether some IF layer lies upstream of ``node`` (else it sees the analog input exactly
    as the ANN does, and only the quantisation of its own output is left, which the bias
    calibration already centres)."""
    stack, seen = list(node.all_input_nodes), set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.op == "call_module" and isinstance(modules.get(current.target), IFNeuron):
            return True
        stack.extend(current.all_input_nodes)
    return False


def calibrate_weights(
    snn: fx.GraphModule,
    targets: dict[str, torch.Tensor],
    x: torch.Tensor,
    T: int,
    iterations: int = 300,
    lr: float = 1e-3,
    batch_size: int = 250,
    seed: int = 0,
    cache_bytes: int | None = None,
    correct_biases: bool = True,
) -> list[str]:
    """Fit each IF layer's producing Conv/Linear so that its rate matches the ANN, layer by layer.

    For IF layer ``l`` (in graph order), the producer's input is measured in the SNN itself
    (its mean over ``T`` steps, with the earlier layers already calibrated), and the producer's
    weights and bias are moved by Adam to minimise ``mean((clamp(z / V_th, 0, 1) - target)²)``
    where ``z`` is the producer's output: the IF layer's rate for a constant current ``z``
    (up to the 1/T quantisation). This is the weight calibration of Li et al., ICML 2021 ("A
    free lunch from ANN", advanced calibration), on the SNN's own inputs so that the errors of
    earlier layers are compensated. For an IF layer after a residual join ``IF(branch +
    shortcut)`` the branch's last Conv/Linear is fitted with ``z = layer(input) + shortcut``, the
    shortcut's current measured in the SNN (its mean over ``T`` steps) and held fixed. Only the
    Conv/Linear parameters feeding IF layers change; thresholds, the output layer, layers with
    no Conv/Linear to fit and layers fed by the analog input alone (the first convolution: it
    already computes what the ANN does) stay.

    The constant-current model behind the fit misses what the IF layer's inputs do over time: a
    neuron whose input turns negative after it fired cannot take the spike back (unless it is
    a signed neuron, ``spike_rule="signed"``, for which the model is nearly exact), so it fires
    more than ``z`` predicts (on the CIFAR-10 ResNet-20 at T = 4, 5-12 % of a layer's neurons
    differ by a spike and its mean rate is 0.006-0.026 too high, against rates of 0.07-0.33;
    ``benchmarks/calibration_mismatch.py``).
    After each fit the layer is therefore simulated and its bias shifted by the mean rate error
    per channel that remains (:func:`_correct_bias`, the step of :func:`calibrate_biases`),
    before the next layer is fitted on its spikes.

    Args:
        snn: the converted SNN, modified in place.
        targets: IF module name → target rates ``[N, C, ...]`` in [0, 1] for ``x``.
        x: calibration inputs ``[N, ...]`` (up to about 1,000 images).
        T: the time steps the SNN will run for.
        iterations, lr, batch_size, seed: Adam steps per layer, its learning rate, samples per
            step, and the seed of the sample draw (the result is deterministic).
        cache_bytes: as for :func:`calibrate_biases`.
        correct_biases: that bias shift after each fit (False: the fit alone).

    Returns:
        The IF module names whose producers were calibrated.
    """
    modules = dict(snn.named_modules())
    trains = _Trains(snn, x, T, cache_bytes)
    generator = torch.Generator().manual_seed(seed)
    done = []
    for node in list(snn.graph.nodes):
        if node.op != "call_module" or node.target not in targets or not isinstance(modules[node.target], IFNeuron):
            continue
        found = _calibrated_producer(node, modules)
        if found is None:
            log.info("weight calibration: %s has no Conv/Linear producer to fit; skipped", node.target)
            continue
        producer, join = found
        if not _sees_spikes(producer, modules) and join is None:
            log.info("weight calibration: %s sees the analog input as the ANN does; skipped", node.target)
            continue
        layer, neuron = modules[producer.target], modules[node.target]
        with torch.no_grad():
            inputs = trains.mean(cast(fx.Node, producer.args[0]))
            if join is None:
                shortcut = torch.zeros((), device=inputs.device)
            else:  # the add's other operand: the shortcut's mean current
                shortcut = trains.mean(_shortcut_operand(join, producer))
        target = targets[node.target].to(inputs.device)
        threshold = neuron.v_threshold.to(inputs.device)

        def rate_error(
            z: torch.Tensor, idx: torch.Tensor, target=target, threshold=threshold, shortcut=shortcut
        ) -> torch.Tensor:
            current = z + (shortcut[idx] if shortcut.dim() else shortcut)
            return ((current / threshold).clamp(0, 1) - target[idx]).pow(2).mean()

        loss = _fit(layer, inputs, rate_error, iterations, lr, batch_size, generator)
        log.info("weight calibration: %s loss %.3g", node.target, loss)
        if layer.bias is not None and correct_biases:
            with torch.no_grad():
                _correct_bias(layer, neuron, target, trains.counts(node), T)
        done.append(node.target)
    return done


def calibrate_output(
    snn: fx.GraphModule,
    logits: torch.Tensor,
    x: torch.Tensor,
    T: int,
    output_scale: float,
    iterations: int = 300,
    lr: float = 1e-3,
    batch_size: int = 250,
    seed: int = 0,
    cache_bytes: int | None = None,
) -> str | None:
    """Fit the Conv/Linear that feeds the membrane readout so that the SNN's class scores at T
    match the ANN's: minimise the KL divergence from ``softmax(logits)`` to
    ``softmax(output_scale · layer(mean input))`` (distillation without labels), where the
    layer's input is its mean over ``T`` steps in the SNN. The readout potential at T is
    ``T · layer(mean input)``, so its argmax is the class this fits. Only that layer changes.
    (Knowledge distillation: Hinton et al. 2015, "Distilling the knowledge in a neural
    network"; here at temperature 1, from the ANN to the SNN's readout layer.)

    Args:
        snn: the converted SNN with a membrane readout (:func:`converter.readout.membrane_readout`),
            modified in place.
        logits: the ANN's outputs ``[N, classes]`` for ``x``.
        x: calibration inputs ``[N, ...]``.
        T: the time steps the SNN will run for.
        output_scale: ``snn.meta['ann2snn']['output_scale']`` (rate × scale = ANN units).
        iterations, lr, batch_size, seed: as for :func:`calibrate_weights`.
        cache_bytes: as for :func:`calibrate_biases`.

    Returns:
        The calibrated layer's path, or None when the SNN has no membrane readout fed by a
        single Conv/Linear (nothing is changed then).
    """
    modules = dict(snn.named_modules())
    readout = next(
        (n for n in snn.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], Integrator)), None
    )
    producer = _producer(readout, modules) if readout is not None else None
    if producer is None:
        log.info("output calibration: no membrane readout fed by a single Conv/Linear; skipped")
        return None
    layer = modules[producer.target]
    with torch.no_grad():
        inputs = _Trains(snn, x, T, cache_bytes).mean(cast(fx.Node, producer.args[0]))
        teacher = logits.to(inputs.device).flatten(1).log_softmax(1)

    def divergence(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        student = (z * output_scale).flatten(1).log_softmax(1)
        return torch.nn.functional.kl_div(student, teacher[idx], log_target=True, reduction="batchmean")

    loss = _fit(layer, inputs, divergence, iterations, lr, batch_size, torch.Generator().manual_seed(seed))
    log.info("output calibration: %s KL %.3g", producer.target, loss)
    return str(producer.target)
