"""The NIR edge-list helpers: successors, predecessors, topological order and its cycles."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporters.nir_graph import CycleError, nodes_on_cycles, predecessors, successors, topological_order


def test_neighbours_keep_edge_order_and_repeated_edges():
    edges = [("x", "b"), ("x", "a"), ("a", "out"), ("x", "a"), ("b", "out")]
    assert successors(edges, "x") == ["b", "a", "a"]
    assert predecessors(edges, "out") == ["a", "b"]
    assert successors(edges, "out") == [] and predecessors(edges, "x") == []


def test_order_follows_edges_and_otherwise_the_given_order():
    edges = [("input", "left"), ("input", "right"), ("right", "join"), ("left", "join"), ("join", "output")]
    assert topological_order(["input", "left", "right", "join", "output"], edges) == [
        "input",
        "left",
        "right",
        "join",
        "output",
    ]
    assert topological_order(["output", "right", "join", "left", "input"], edges) == [
        "input",
        "right",
        "left",
        "join",
        "output",
    ]


def test_a_cycle_is_raised_with_only_the_nodes_on_it():
    nodes = ["input", "i", "th", "fb", "after", "output"]
    edges = [("input", "i"), ("i", "th"), ("th", "fb"), ("fb", "i"), ("th", "after"), ("after", "output")]
    with pytest.raises(CycleError, match=r"cycle through \['fb', 'i', 'th'\]") as info:
        topological_order(nodes, edges)
    assert info.value.nodes == ["fb", "i", "th"]  # not 'after' or 'output', which only follow it


def test_a_self_loop_is_a_cycle_and_cycles_last_appends_in_the_given_order():
    nodes = ["input", "rec", "output"]
    edges = [("input", "rec"), ("rec", "rec"), ("rec", "output")]
    with pytest.raises(CycleError, match=r"\['rec'\]"):
        topological_order(nodes, edges)
    assert topological_order(nodes, edges, cycles="last") == ["input", "rec", "output"]
    assert topological_order(["output", "rec", "input"], edges, cycles="last") == ["input", "output", "rec"]


def test_unknown_nodes_and_options_are_refused():
    with pytest.raises(ValueError, match=r"edge \('a', 'ghost'\) names a node that does not exist: 'ghost'"):
        topological_order(["a"], [("a", "ghost")])
    with pytest.raises(ValueError, match="cycles must be"):
        topological_order(["a"], [], cycles="ignore")


def _first_ready_each_time(nodes, edges):
    """The definition: repeatedly place the first node (in ``nodes`` order) whose predecessors are placed."""
    order, pending = [], list(nodes)
    while pending:
        ready = next((n for n in pending if all(p in order for p in predecessors(edges, n))), None)
        if ready is None:
            return order, pending
        order.append(ready)
        pending.remove(ready)
    return order, []


@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.permutations([f"n{i}" for i in range(n)]),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
        )
    )
)
def test_order_is_the_first_ready_node_each_time_whatever_the_edge_order(case):
    nodes, pairs = case
    edges = [(f"n{a}", f"n{b}") for a, b in pairs]
    expected, stuck = _first_ready_each_time(nodes, edges)
    for listed in (edges, edges[::-1]):
        if stuck:
            with pytest.raises(CycleError) as info:
                topological_order(nodes, listed)
            assert info.value.nodes == sorted(nodes_on_cycles(stuck, edges)) and info.value.nodes
            assert topological_order(nodes, listed, cycles="last") == expected + stuck
        else:
            assert topological_order(nodes, listed) == expected
