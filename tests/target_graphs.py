"""Small NIR graphs with one planted violation each, for tests/test_targets*.py.

``chain()`` builds ``input [1, size, size] -> conv -> IF -> sum pool 2 -> conv -> IF -> flatten ->
affine -> IF -> output`` as our exporter writes it (quantised: integer weights, one integer
threshold per layer, reset by subtraction, rate input, no biases), which fits every target but
Loihi 2 (reset, pools); each keyword plants one change.
"""

from __future__ import annotations

import json

import nir
import numpy as np


def _if(shape, threshold=100.0, reset="subtract", v_reset=0.0, spike_rule=">="):
    thr = np.full(shape, float(threshold))
    return nir.IF(
        r=np.ones(shape),
        v_threshold=thr,
        v_reset=np.full(shape, float(v_reset)),
        metadata={"reset": reset, "spike_rule": spike_rule, "v_init_fraction": 0.5, "dt": 1.0, "integer": True},
    )


def chain(
    *,
    kernel=3,
    stride=1,
    channels=4,
    weight_max=127.0,
    thresholds=None,
    bias=0.0,
    reset="subtract",
    v_reset=0.0,
    spike_rule=">=",
    quantised=True,
    encoding="rate",
    pool=2,
    readout="spike_count",
    size=16,
    quant_bias=None,
):
    """The graph described in the module docstring, with the planted change.

    ``thresholds``: the first IF layer's per-channel thresholds (default: 100 for all);
    ``bias``: every conv's bias value; ``pool``: the sum pool's kernel (0: none);
    ``readout``: ``"spike_count"`` (an IF node last) or ``"membrane"`` (an I node);
    ``size``: the input's height and width; ``quant_bias``: the quantisation record's ``bias``
    (``"leak"``: converted with ``--target-bias leak``).
    """
    rng = np.random.default_rng(0)
    w0 = rng.integers(-60, 60, size=(channels, 1, kernel, kernel)).astype(float)
    w0.flat[0] = weight_max
    conv0 = nir.Conv2d((size, size), w0, stride, 0, 1, 1, np.full(channels, float(bias)))
    h = (size - kernel) // stride + 1
    if0 = _if((channels, h, h), reset=reset, v_reset=v_reset, spike_rule=spike_rule)
    if thresholds is not None:
        if0.v_threshold = np.broadcast_to(np.asarray(thresholds, float)[:, None, None], (channels, h, h)).copy()
    nodes = {"input": nir.Input(input_type={"input": np.array([1, size, size])}), "conv0": conv0, "if0": if0}
    edges = [("input", "conv0"), ("conv0", "if0")]
    last, hw = "if0", h
    if pool:
        nodes["pool0"] = nir.SumPool2d(np.array([pool, pool]), np.array([pool, pool]), np.array([0, 0]))
        edges.append(("if0", "pool0"))
        last, hw = "pool0", h // pool
    w1 = rng.integers(-60, 60, size=(4, channels, 3, 3)).astype(float)
    nodes["conv1"] = nir.Conv2d((hw, hw), w1, 1, 0, 1, 1, np.full(4, float(bias)))
    h1 = hw - 2
    nodes["if1"] = _if((4, h1, h1), reset=reset, v_reset=v_reset, spike_rule=spike_rule)
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([4, h1, h1])}, start_dim=0, end_dim=-1)
    w2 = rng.integers(-60, 60, size=(3, 4 * h1 * h1)).astype(float)
    nodes["fc"] = nir.Affine(w2, np.zeros(3))
    nodes["out_neuron"] = _if((3,), reset=reset, v_reset=v_reset, spike_rule=spike_rule)
    if readout == "membrane":
        nodes["out_neuron"] = nir.I(r=np.ones(3))
    nodes["output"] = nir.Output(output_type={"output": np.array([3])})
    edges += [(last, "conv1"), ("conv1", "if1"), ("if1", "flat"), ("flat", "fc"), ("fc", "out_neuron")]
    edges.append(("out_neuron", "output"))
    metadata: dict = {"input_encoding": encoding}
    if quantised:
        record = {"weight_bits": 8, "layers": {}, **({"bias": quant_bias} if quant_bias else {})}
        metadata["quantization"] = json.dumps(record)
    else:
        for name in ("conv0", "conv1", "fc"):
            nodes[name].weight = nodes[name].weight / 127.0
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def fan_out(destinations=3):
    """``input -> conv -> IF`` feeding ``destinations`` convs (each -> IF -> output)."""
    graph = chain(pool=0)
    w = np.ones((2, 4, 3, 3))
    for i in range(1, destinations):
        graph.nodes[f"extra{i}"] = nir.Conv2d((14, 14), w, 1, 0, 1, 1, np.zeros(2))
        graph.nodes[f"extra_if{i}"] = _if((2, 12, 12))
        graph.edges += [("if0", f"extra{i}"), (f"extra{i}", f"extra_if{i}"), (f"extra_if{i}", "output")]
    return graph
