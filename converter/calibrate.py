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
"""

from __future__ import annotations

import logging
from typing import cast

import torch
import torch.fx as fx

from converter.channelwise import _producer
from simulator import IFNeuron, Integrator, simulate
from simulator.graph import WEIGHTED, is_add

log = logging.getLogger(__name__)


def _up_to(snn: fx.GraphModule, node: fx.Node) -> fx.GraphModule:
    """The part of ``snn`` that computes ``node``, as a GraphModule whose output is ``node`` and
    which shares ``snn``'s modules (and metadata): calibrating layer ``k`` needs layers 1..k only.
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for current in snn.graph.nodes:
        env[current] = graph.node_copy(current, lambda arg: env[arg])
        if current is node:
            break
    graph.output(env[node])
    sub = fx.GraphModule(snn, graph)
    sub.graph.eliminate_dead_code()
    sub.recompile()
    sub.meta = snn.meta
    return sub


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
) -> list[str]:
    """Shift biases so that each IF layer's mean rate per channel matches its target.

    Args:
        snn: the converted SNN, modified in place (biases only).
        targets: IF module name → target rates ``[N, C, ...]`` in [0, 1] for the inputs ``x``
            (the ANN activation over the layer's λ, clipped at 1).
        x: calibration inputs ``[N, ...]`` (at most about 1,000 images suffice).
        T: the number of time steps the SNN will be run for.

    Returns:
        The IF module names whose producers were corrected (a layer after a residual join
        through its branch's last Conv/Linear, see :func:`_calibrated_producer`).
    """
    modules = dict(snn.named_modules())
    corrected = []
    for node in list(snn.graph.nodes):
        if node.op != "call_module" or node.target not in targets or not isinstance(modules[node.target], IFNeuron):
            continue
        found = _calibrated_producer(node, modules)
        layer = modules[found[0].target] if found is not None else None
        if layer is None or layer.bias is None:
            log.info("bias calibration: %s has no Conv/Linear producer with a bias; skipped", node.target)
            continue
        counts = simulate(_up_to(snn, node), x, T, warn_silent=False).spike_counts[node.target]
        error = (targets[node.target].to(counts.device) - counts / T).transpose(0, 1).reshape(counts.shape[1], -1)
        layer.bias.add_(error.mean(1).to(layer.bias.dtype))
        corrected.append(node.target)
    return corrected


def _mean_value(snn: fx.GraphModule, node: fx.Node, x: torch.Tensor, T: int, batch_size: int = 100) -> torch.Tensor:
    """The value of ``node`` averaged over ``T`` steps of simulating ``x`` (``[N, ...]``):
    what a layer fed by ``node`` sees, on average, in the SNN, ``[N, ...]``. Only the part of
    ``snn`` that computes ``node`` runs (multi-step, ``batch_size`` samples at a time)."""
    part = _up_to(snn, node)
    means = [
        simulate(part, x[start : start + batch_size], T, warn_silent=False).outputs.mean(0)
        for start in range(0, len(x), batch_size)
    ]
    return torch.cat(means)


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

    Args:
        snn: the converted SNN, modified in place.
        targets: IF module name → target rates ``[N, C, ...]`` in [0, 1] for ``x``.
        x: calibration inputs ``[N, ...]`` (up to about 1,000 images).
        T: the time steps the SNN will run for.
        iterations, lr, batch_size, seed: Adam steps per layer, its learning rate, samples per
            step, and the seed of the sample draw (the result is deterministic).

    Returns:
        The IF module names whose producers were calibrated.
    """
    modules = dict(snn.named_modules())
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
            inputs = _mean_value(snn, cast(fx.Node, producer.args[0]), x, T)
            if join is None:
                shortcut = torch.zeros((), device=inputs.device)
            else:  # the add's other operand: the shortcut's mean current
                other = join.args[1] if join.args[0] is producer else join.args[0]
                shortcut = _mean_value(snn, cast(fx.Node, other), x, T)
        target = targets[node.target].to(inputs.device)
        threshold = neuron.v_threshold.to(inputs.device)

        def rate_error(
            z: torch.Tensor, idx: torch.Tensor, target=target, threshold=threshold, shortcut=shortcut
        ) -> torch.Tensor:
            current = z + (shortcut[idx] if shortcut.dim() else shortcut)
            return ((current / threshold).clamp(0, 1) - target[idx]).pow(2).mean()

        loss = _fit(layer, inputs, rate_error, iterations, lr, batch_size, generator)
        log.info("weight calibration: %s loss %.3g", node.target, loss)
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
        inputs = _mean_value(snn, cast(fx.Node, producer.args[0]), x, T)
        teacher = logits.to(inputs.device).flatten(1).log_softmax(1)

    def divergence(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        student = (z * output_scale).flatten(1).log_softmax(1)
        return torch.nn.functional.kl_div(student, teacher[idx], log_target=True, reduction="batchmean")

    loss = _fit(layer, inputs, divergence, iterations, lr, batch_size, torch.Generator().manual_seed(seed))
    log.info("output calibration: %s KL %.3g", producer.target, loss)
    return str(producer.target)
