"""Post-training bias calibration: correct each IF layer's mean rate error, layer by layer.

After normalisation an IF layer's firing rate differs from the (clipped, normalised) ANN
activation by quantisation and by errors inherited from earlier layers; the mean of that
difference per channel is systematic, and adding it to the bias of the Conv/Linear feeding the
layer removes it (Li et al., ICML 2021, "A free lunch from ANN: towards efficient, accurate
spiking neural networks calibration": bias calibration). Layers are corrected in order, each
after re-simulating the network with the earlier corrections, for the time budget T the SNN
will run with. Only biases change (weights and thresholds stay); a layer with no single
Conv/Linear producer (e.g. after a residual add) is left as it is.
"""

from __future__ import annotations

import logging

import torch
import torch.fx as fx

from converter.channelwise import _producer
from simulator import IFNeuron, simulate

log = logging.getLogger(__name__)


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
        The IF module names whose producers were corrected.
    """
    modules = dict(snn.named_modules())
    corrected = []
    for node in snn.graph.nodes:
        if node.op != "call_module" or node.target not in targets or not isinstance(modules[node.target], IFNeuron):
            continue
        producer = _producer(node, modules)
        layer = modules[producer.target] if producer is not None else None
        if layer is None or layer.bias is None:
            log.info("bias calibration: %s has no Conv/Linear producer with a bias; skipped", node.target)
            continue
        counts = simulate(snn, x, T).spike_counts[node.target]
        error = (targets[node.target].to(counts.device) - counts / T).transpose(0, 1).reshape(counts.shape[1], -1)
        layer.bias.add_(error.mean(1).to(layer.bias.dtype))
        corrected.append(node.target)
    return corrected
