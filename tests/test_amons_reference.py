"""The fast amon engine against the brute-force reference (tests/amon_reference.py).

Every molecule of tests/data/amon_test_molecules.smi (hand-picked structures with rings, fused
aromatics, heteroatoms, charges, cumulenes and strained rings, then a QM9 sample), both rule sets,
N_I = 1..7: the same keys with the same counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from amon_reference import reference_amons
from rdkit import Chem

from amondask.amons.graphs import find_amon_graphs
from amondask.amons.query import query_graph

DATA = Path(__file__).parent / "data"


def _molecules() -> list[tuple[str, str]]:
    out = []
    for line in (DATA / "amon_test_molecules.smi").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            smiles, name = line.split()
            out.append((smiles, name))
    return out


MOLECULES = _molecules()
# the brute force grows as C(n, 7): the few molecules above 12 heavy atoms run with -m slow
SLOW_ABOVE_HEAVY_ATOMS = 12
CASES = [
    pytest.param(
        smiles,
        name,
        id=name,
        marks=[pytest.mark.slow]
        if Chem.MolFromSmiles(smiles).GetNumAtoms() > SLOW_ABOVE_HEAVY_ATOMS
        else [],
    )
    for smiles, name in MOLECULES
]


def test_molecule_set_is_large_and_varied():
    fast = [
        s for s, _ in MOLECULES if Chem.MolFromSmiles(s).GetNumAtoms() <= SLOW_ABOVE_HEAVY_ATOMS
    ]
    assert len(fast) >= 200
    mols = [Chem.MolFromSmiles(s) for s, _ in MOLECULES]
    elements = {a.GetAtomicNum() for m in mols for a in m.GetAtoms()}
    assert {5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53} <= elements
    assert any(a.GetFormalCharge() for m in mols for a in m.GetAtoms())
    assert sum(m.GetRingInfo().NumRings() >= 2 for m in mols) >= 30


@pytest.mark.parametrize("rules", ["plain", "paper"])
@pytest.mark.parametrize(("smiles", "name"), CASES)
def test_engine_matches_brute_force(smiles, name, rules):
    reference = reference_amons(smiles, 7, rules)
    sizes = {key: Chem.MolFromSmiles(key).GetNumAtoms() for key in reference}
    graph = query_graph(Chem.MolFromSmiles(smiles))
    for max_heavy_atoms in range(1, 8):
        expected = {k: c for k, c in reference.items() if sizes[k] <= max_heavy_atoms}
        found = find_amon_graphs(graph, max_heavy_atoms, rules)
        got = {amon.key: len(amon.occurrences) for amon in found}
        assert got == expected, f"{name} N_I={max_heavy_atoms}"


@pytest.mark.slow
@pytest.mark.parametrize("rules", ["plain", "paper"])
def test_engine_matches_brute_force_on_random_qm9(rules):
    """1000 random QM9 molecules at N_I=7 (~3 min): the rules do not depend on N_I, so equal
    N_I=7 sets imply equal sets for every smaller N_I."""
    import random

    pd = pytest.importorskip("pandas")
    qm9pack = pytest.importorskip("qm9pack")
    directory = Path(qm9pack.__file__).parent / "data"
    smiles = []
    for part in (1, 2, 3):
        smiles += list(pd.read_csv(directory / f"qm9_part{part}.csv", usecols=["SMILES"]).SMILES)
    for query in random.Random(11).sample(smiles, 1000):
        graph = query_graph(Chem.MolFromSmiles(query))
        got = {amon.key: len(amon.occurrences) for amon in find_amon_graphs(graph, 7, rules)}
        assert got == reference_amons(query, 7, rules), query
