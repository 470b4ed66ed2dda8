"""The building blocks of the amon engine against brute force and hand-checked values:
connected-subgraph enumeration, perfect matchings, rings R(M)/SR(M) and iconj."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem

from amondask.amons.pi_bonds import has_perfect_matching, perfect_matchings
from amondask.amons.query import bits, query_graph
from amondask.amons.rings import (
    conjugation_classes,
    relevant_rings,
    simple_cycles,
    strained_rings,
)
from amondask.amons.subgraphs import connected_subgraphs


@st.composite
def graphs(draw, max_nodes=10):
    n = draw(st.integers(1, max_nodes))
    pairs = list(itertools.combinations(range(n), 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=2 * n)) if pairs else []
    neighbours = [0] * n
    for i, j in chosen:
        neighbours[i] |= 1 << j
        neighbours[j] |= 1 << i
    return n, chosen, neighbours


def _nx_graph(n, edges):
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges)
    return graph


@settings(max_examples=150, deadline=None)
@given(graphs(), st.integers(1, 6))
def test_connected_subgraphs_equal_brute_force(graph, max_size):
    n, edges, neighbours = graph
    nx_graph = _nx_graph(n, edges)
    expected = set()
    for size in range(1, min(max_size, n) + 1):
        for nodes in itertools.combinations(range(n), size):
            if nx.is_connected(nx_graph.subgraph(nodes)):
                expected.add(sum(1 << v for v in nodes))
    found = list(connected_subgraphs(neighbours, max_size))
    assert len(found) == len(set(found))  # each exactly once
    assert set(found) == expected


@settings(max_examples=150, deadline=None)
@given(graphs(max_nodes=8))
def test_perfect_matchings_equal_brute_force(graph):
    n, edges, neighbours = graph
    expected = set()
    for k in range(len(edges) + 1):
        for chosen in itertools.combinations(edges, k):
            covered = [v for e in chosen for v in e]
            if len(covered) == n and len(set(covered)) == n:
                expected.add(tuple(sorted(tuple(sorted(e)) for e in chosen)))
    everything = (1 << n) - 1
    found = perfect_matchings(everything, neighbours)
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert has_perfect_matching(everything, neighbours) == bool(expected)


@settings(max_examples=100, deadline=None)
@given(graphs(max_nodes=9))
def test_simple_cycles_equal_networkx(graph):
    n, edges, neighbours = graph
    expected = {
        sum(1 << v for v in cycle)
        for cycle in nx.simple_cycles(_nx_graph(n, edges), length_bound=7)
        if len(cycle) >= 3
    }
    assert set(simple_cycles(neighbours)) == expected


def _rings(smiles):
    graph = query_graph(Chem.MolFromSmiles(smiles))
    return graph, relevant_rings(simple_cycles(graph.neighbours))


def test_relevant_rings_drop_unions_of_two_rings():
    _, rings = _rings("C1C2CC12")  # bicyclo[1.1.0]butane: the 4-cycle is two triangles
    assert sorted(r.bit_count() for r in rings) == [3, 3]
    _, rings = _rings("C1CC2CC12")  # housane: the 5-cycle is the 3- and the 4-ring
    assert sorted(r.bit_count() for r in rings) == [3, 4]
    _, rings = _rings("C1CC2CCC1C2")  # norbornane: 5, 5 and the 6-ring all stay
    assert sorted(r.bit_count() for r in rings) == [5, 5, 6]
    # cubane: six faces; a 6-cycle around two faces sharing an edge is their union (dropped),
    # the four 6-cycles around a body diagonal are not (kept); bipartite, so no odd cycles
    _, rings = _rings("C12C3C4C1C5C2C3C45")
    assert sorted(r.bit_count() for r in rings) == [4] * 6 + [6] * 4


@pytest.mark.parametrize(
    ("smiles", "expected"),
    [
        ("Nc1ccccc1", [2, 1, 1, 1, 1, 1, 1]),  # aniline N: 3 connections, not aromatic -> 2
        ("CC(N)=O", [3, 1, 1, 1]),  # amide N (next to C=O) is 1
        ("C[N+](=O)[O-]", [3, 1, 1, 1]),  # nitro N: valence 4 -> 1
        ("CN(C)C", [0, 0, 0, 0]),
        ("CSc1ccccc1", [0, 2, 1, 1, 1, 1, 1, 1]),  # thioether S next to the ring -> 2
        ("C1=CCC=C1", [1, 1, 3, 1, 1]),
    ],
)
def test_conjugation_classes(smiles, expected):
    mol = Chem.MolFromSmiles(smiles)
    assert conjugation_classes(mol, range(mol.GetNumAtoms())) == expected


def test_strained_rings():
    # cyclopropane, cyclobutane: always; cyclopentane: no (iconj 0); 6-rings never
    for smiles, n_strained in [("C1CC1", 1), ("C1CCC1", 1), ("C1CCCC1", 0), ("c1ccccc1", 0)]:
        graph, rings = _rings(smiles)
        iconj = conjugation_classes(graph.mol, graph.query_index)
        assert len(strained_rings(rings, iconj)) == n_strained, smiles
    # cyclopentadiene: every atom has iconj != 0 (1 or 3), so its 5-ring counts as strained
    graph, rings = _rings("C1=CCC=C1")
    iconj = conjugation_classes(graph.mol, graph.query_index)
    assert len(strained_rings(rings, iconj)) == 1
    # bicyclo[2.2.0]hexane's 6-cycle is not in R (union of the two 4-rings); both 4-rings are
    graph, rings = _rings("C1CC2CCC12")
    iconj = conjugation_classes(graph.mol, graph.query_index)
    assert sorted(r.bit_count() for r in strained_rings(rings, iconj)) == [4, 4]


def test_bits_roundtrip():
    assert bits(0) == []
    assert bits(0b101001) == [0, 3, 5]
