"""Walks over a NIR graph's edge list: successors, predecessors and a topological order.

A NIR graph is a dict of named nodes and a list of ``(source, target)`` edges; a node's input
is the sum of its incoming edges. These helpers take the names and the edges (for a
``nir.NIRGraph`` ``g``: ``g.nodes`` and ``g.edges``), look only at one level (nested graphs
are single nodes here) and keep the edge list's order, repeated edges included.

Example:
    >>> edges = [("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")]
    >>> successors(edges, "input"), predecessors(edges, "output")
    (['a', 'b'], ['a', 'b'])
    >>> topological_order(["output", "b", "a", "input"], edges)
    ['input', 'b', 'a', 'output']
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

Edge = tuple[str, str]
N = TypeVar("N", bound=Hashable)  # a node: a name, or anything hashable (e.g. an edge, to order edges)


class CycleError(ValueError):
    """The graph has a cycle; ``nodes`` are the names on one (sorted)."""

    def __init__(self, nodes: list) -> None:
        super().__init__(f"the graph has a cycle through {nodes}")
        self.nodes = nodes


def successors(edges: Iterable[Edge], name: str) -> list[str]:
    """The targets of the edges leaving ``name``, in edge order."""
    return [b for a, b in edges if a == name]


def predecessors(edges: Iterable[Edge], name: str) -> list[str]:
    """The sources of the edges entering ``name``, in edge order (the order a reader sums them in)."""
    return [a for a, b in edges if b == name]


def nodes_on_cycles(nodes: Iterable[N], edges: Sequence[tuple[N, N]]) -> list[N]:
    """The names among ``nodes`` that lie on a cycle through ``nodes`` only (each reaches itself
    along edges between them; a self-loop counts), in the order of ``nodes``."""
    names = list(nodes)
    inside = set(names)
    succ = {n: [b for a, b in edges if a == n and b in inside] for n in names}

    def reaches_itself(start: N) -> bool:
        seen: set[N] = set()
        stack = list(succ[start])
        while stack:
            n = stack.pop()
            if n == start:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(succ[n])
        return False

    return [n for n in names if reaches_itself(n)]


def topological_order(nodes: Iterable[N], edges: Sequence[tuple[N, N]], cycles: str = "raise") -> list[N]:
    """``nodes`` ordered so that each comes after all its predecessors, otherwise in the order given.

    Deterministic: of the nodes whose predecessors are all placed, the one first in ``nodes`` comes
    next (for the nodes of a graph we exported, that is the order the layers were written in).

    Args:
        nodes: the node names (e.g. ``graph.nodes``), in the order to keep where edges allow.
        edges: ``(source, target)`` pairs between those names.
        cycles: what to do with nodes that no order can place (on a cycle, self-loops included,
            or after one): ``"raise"`` (:class:`CycleError`) or ``"last"`` (append them in the
            order of ``nodes``).

    Raises:
        CycleError: ``cycles="raise"`` and the graph has a cycle; its ``nodes`` are the names on
            cycles. ValueError: an edge names a node not in ``nodes``, or an unknown ``cycles``.
    """
    if cycles not in ("raise", "last"):
        raise ValueError(f"cycles must be 'raise' or 'last', got {cycles!r}")
    names = list(nodes)
    position = {n: i for i, n in enumerate(names)}
    waiting = dict.fromkeys(names, 0)  # incoming edges from nodes not yet placed
    succ: dict[N, list[N]] = {n: [] for n in names}
    for a, b in edges:
        for end in (a, b):
            if end not in position:
                raise ValueError(f"edge ({a!r}, {b!r}) names a node that does not exist: {end!r}")
        waiting[b] += 1
        succ[a].append(b)
    ready = [position[n] for n in names if waiting[n] == 0]
    heapq.heapify(ready)
    order: list[N] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for b in succ[name]:
            waiting[b] -= 1
            if waiting[b] == 0:
                heapq.heappush(ready, position[b])
    if len(order) < len(names):
        rest = [n for n in names if waiting[n] > 0]
        if cycles == "raise":
            raise CycleError(sorted(nodes_on_cycles(rest, edges)))
        order.extend(rest)
    return order
