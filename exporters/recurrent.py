"""Reset by subtraction in pure NIR: an ``I`` node, a ``Threshold`` node and a ``Scale`` feedback.

NIR 1.0.8's ``IF`` resets *to* ``v_reset``; it cannot say "subtract the threshold". Standard
nodes can, with one recurrent edge. Each IF node with ``reset="subtract"`` becomes a nested
graph (the ``"recurrent"`` export profile)::

    input ──► integrator (I, r) ──► threshold (Threshold, θ') ──► output
                   ▲                        │
                   └──── feedback (Scale, −V_th / r) ◄─┘

A reader that honours cycles delivers a node's output to its successors at the next step
(the only causal reading of a cycle in discrete time), so the integrator's state is
``U[t] = U[t-1] + r·(I[t] − (V_th/r)·s[t-1])`` and ``s[t] = [U[t] ≥ θ']``: exactly the
pre-reset potential of our IF neuron, ``V[t] = U[t] + V[0]``, when ``θ' = V_th − V[0]`` — so
the initial potential ``V[0] = v_init·V_th``, which NIR cannot state, is carried by the
threshold. The comparison (``>=`` or ``>``) is in the Threshold node's ``spike_rule``
metadata (NIR's Threshold does not say; without metadata we read ``>``, like NIR's IF).

:func:`fuse_subtraction` finds this pattern in an imported graph (ours or anyone's) and
turns it back into one IF node with reset by subtraction, so the fast simulator runs it; the
reader rules of :data:`exporters.semantics.READER_RULES` do not apply to it (it needs no
metadata to be exact). Any other cycle is refused by the importer, naming its nodes.
"""

from __future__ import annotations

import nir
import numpy as np

from exporters.nir_graph import predecessors, successors

#: Metadata of the nested graph that encodes one IF node (so that tools can recognise it).
ENCODING = "if_reset_by_subtraction"
#: The spike rules the recurrent encoding can express: one spike per step (no burst, no signed spikes).
ONE_SPIKE_RULES = (">=", ">")


def encode_subtraction(node: nir.IF) -> nir.NIRGraph:
    """The nested graph (Input, I, Threshold, Scale, Output) equivalent to ``node``.

    Args:
        node: an IF node we exported, with metadata ``reset="subtract"``, ``spike_rule`` and
            ``v_init_fraction`` (:mod:`exporters.semantics`).

    Raises:
        ValueError: the node resets to a value (``reset="zero"``: NIR's IF already says that),
            or fires several spikes per step (``spike_rule="multi"``: no single Threshold) or
            signed spikes (``"signed"``).
    """
    meta = dict(node.metadata or {})
    if meta.get("reset") != "subtract" or meta.get("spike_rule") not in ONE_SPIKE_RULES:
        raise ValueError(
            f"only IF nodes with reset='subtract' and spike_rule '>=' or '>' have a recurrent "
            f"encoding (this one: reset={meta.get('reset')!r}, spike_rule={meta.get('spike_rule')!r})"
        )
    threshold, r = np.asarray(node.v_threshold, np.float32), np.asarray(node.r, np.float32)
    fraction = float(meta.get("v_init_fraction", 0.0))
    shape = np.array(threshold.shape)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": shape}),
            "integrator": nir.I(r=r.copy(), metadata={"dt": 1.0}),
            "threshold": nir.Threshold(
                threshold=(threshold * np.float32(1.0 - fraction)).astype(np.float32),
                metadata={k: meta[k] for k in ("spike_rule", "v_init_fraction") if k in meta},
            ),
            "feedback": nir.Scale(scale=(-threshold / r).astype(np.float32)),
            "output": nir.Output(output_type={"output": shape}),
        },
        edges=[
            ("input", "integrator"),
            ("integrator", "threshold"),
            ("threshold", "feedback"),
            ("feedback", "integrator"),
            ("threshold", "output"),
        ],
        metadata={"encodes": ENCODING},
    )


def encode_graph(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with every subtracting IF node replaced by :func:`encode_subtraction`'s subgraph
    under the same name (edges unchanged: they now enter the subgraph's Input and leave its
    Output). Modifies and returns ``graph``.

    Raises:
        ValueError: an IF node without a recurrent encoding (named).
    """
    for name, node in list(graph.nodes.items()):
        if isinstance(node, nir.IF):
            try:
                graph.nodes[name] = encode_subtraction(node)
            except ValueError as exc:
                raise ValueError(f"IF node {name!r}: {exc}") from None
    return graph


def fuse_subtraction(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]):
    """Replace each ``I → Threshold → Scale → I`` cycle by one ``nir.IF`` node with our metadata
    ``reset="subtract"``, named like the Threshold node (its spikes leave from there), or like
    the subgraph for our encoding (``x.threshold`` → ``x``, the name the IF node had).

    The IF node gets ``r`` from the I node, ``V_th = −scale·r`` from the feedback and
    ``v_init_fraction`` from the Threshold's metadata, else the median of ``1 − θ'/V_th``;
    ``spike_rule`` from the Threshold's metadata, else ``">"``; and ``fused = 1``, which tells
    the importer to apply no reader rules to it.

    Args:
        nodes, edges: a flat graph (:func:`exporters.nir_torch.inline_subgraphs`).

    Returns:
        ``(nodes, edges)``: the new flat graph.
    """
    nodes, edges = dict(nodes), list(edges)
    for t_name, t_node in list(nodes.items()):
        if not isinstance(t_node, nir.Threshold):
            continue
        loop = [
            (s, i)
            for s in successors(edges, t_name)
            if isinstance(nodes.get(s), nir.Scale)
            for i in successors(edges, s)
            if isinstance(nodes.get(i), nir.I)
        ]
        loop = [
            (s, i)
            for s, i in loop
            if successors(edges, s) == [i] and successors(edges, i) == [t_name] and predecessors(edges, t_name) == [i]
        ]
        if len(loop) != 1:
            continue
        s_name, i_name = loop[0]
        r = np.asarray(nodes[i_name].r, np.float32)
        threshold = (-np.asarray(nodes[s_name].scale, np.float32) * r).astype(np.float32)
        if not np.all(threshold > 0):  # not a subtraction of the threshold: some other recurrence
            continue
        meta = {k: v.decode() if isinstance(v, bytes) else v for k, v in (t_node.metadata or {}).items()}
        if "v_init_fraction" in meta:
            fraction = float(meta["v_init_fraction"])
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = 1.0 - np.asarray(t_node.threshold, np.float32) / threshold
            fraction = float(np.median(ratios)) if ratios.size else 0.0
        nodes[t_name] = nir.IF(
            r=r,
            v_threshold=threshold,
            v_reset=np.zeros_like(threshold),
            metadata={
                "reset": "subtract",
                "spike_rule": meta.get("spike_rule", ">"),
                "v_init_fraction": fraction,
                "dt": 1.0,
                "fused": 1,
            },
        )
        del nodes[i_name], nodes[s_name]
        edges = [
            (a, t_name if b == i_name else b)
            for a, b in edges
            if (a, b) not in ((t_name, s_name), (s_name, i_name), (i_name, t_name))
        ]
        outer = t_name.rpartition(".")[0]  # our encoding: the IF node's name is the subgraph's
        if t_name.endswith(".threshold") and outer not in nodes:
            nodes[outer] = nodes.pop(t_name)
            edges = [(outer if a == t_name else a, outer if b == t_name else b) for a, b in edges]
    return nodes, edges
