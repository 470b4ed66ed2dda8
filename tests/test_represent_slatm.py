"""aSLATM / SLATM against qmllib's generate_slatm, invariances, and the compact per-element form."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from amondask.chem import Molecule
from amondask.represent import (
    SlatmLayout,
    compact_memory_report,
    element_blocks,
    element_column_masks,
    element_columns,
    slatm,
    slatm_mbtypes,
)

qmllib_representations = pytest.importorskip("qmllib.representations")
qm9pack = pytest.importorskip("qm9pack")

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
# Values below this are denormal noise (exp underflow); qmllib and we may round them differently.
TINY = 1e-300
EXTRA_SMILES = ["CCS", "ClCC(=O)O", "c1ccsc1C", "CP(C)CC", "BrC=CCl", "FC(F)(F)c1ccncc1"]


def qm9_sample(n_per_part: int, stride: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every ``stride``-th of the first rows of each QM9 part: (numbers, positions) pairs."""
    import pandas as pd

    data = Path(qm9pack.__file__).parent / "data"
    molecules = []
    for part in (1, 2, 3):
        frame = pd.read_csv(
            data / f"qm9_part{part}.csv", nrows=n_per_part * stride, usecols=["Elements", "XYZ_Ang"]
        )
        for elements, xyz in zip(frame.Elements[::stride], frame.XYZ_Ang[::stride], strict=True):
            numbers = np.array([SYMBOLS[s] for s in ast.literal_eval(elements)])
            positions = np.array(ast.literal_eval(xyz.replace("0.]", "0.0]")), dtype=float)
            molecules.append((numbers, positions))
    return molecules


def embedded(smiles: str) -> tuple[np.ndarray, np.ndarray]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    return numbers, mol.GetConformer().GetPositions()


@pytest.fixture(scope="module")
def molecules() -> list[tuple[np.ndarray, np.ndarray]]:
    """48 QM9 molecules from the three parts plus 6 with S, Cl, P, Br and CF3."""
    return qm9_sample(16, 97) + [embedded(s) for s in EXTRA_SMILES]


@pytest.fixture(scope="module")
def mbtypes(molecules) -> list[list[int]]:
    return slatm_mbtypes([numbers for numbers, _ in molecules])


def test_mbtypes_match_qmllib(molecules, mbtypes):
    reference = qmllib_representations.get_slatm_mbtypes([n for n, _ in molecules])
    reference = [[int(z) for z in t] for t in reference]

    def canonical(types):  # [a, b, c] and [c, b, a] are one type
        return sorted(min(tuple(t), tuple(t[::-1])) for t in types)

    assert canonical(mbtypes) == canonical(reference)
    # same order whenever qmllib happens to visit the elements in increasing order
    elements_in_order = [t[0] for t in reference if len(t) == 1]
    if elements_in_order == sorted(elements_in_order):
        assert mbtypes == reference


def test_mbtypes_respect_element_counts():
    # one F at most: no F-X-F triple; two O: O-C-O allowed
    types = slatm_mbtypes([[6, 8, 8, 9, 1]])
    assert [9, 6, 9] not in types and [8, 6, 8] in types
    assert [[1], [6], [8], [9]] == types[:4]


def test_local_slatm_matches_qmllib(molecules, mbtypes):
    assert len(molecules) >= 50
    for numbers, positions in molecules:
        ours = slatm(numbers, positions, mbtypes, local=True)
        reference = np.asarray(
            qmllib_representations.generate_slatm(numbers, positions, mbtypes, local=True)
        )
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=TINY)
        assert np.count_nonzero(ours) > 0.2 * ours.shape[0] * 100


def test_global_slatm_matches_qmllib(molecules, mbtypes):
    for numbers, positions in molecules:
        ours = slatm(numbers, positions, mbtypes, local=False)
        reference = qmllib_representations.generate_slatm(numbers, positions, mbtypes, local=False)
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=TINY)


@pytest.mark.parametrize(
    "params",
    [
        dict(dgrid=(0.04, 0.04)),
        dict(rcut=3.5, sigmas=(0.1, 0.08)),
        dict(rpower=4, dgrid=(0.05, 0.02)),
    ],
)
def test_other_parameters_match_qmllib(molecules, mbtypes, params):
    qml_params = dict(params)
    if "dgrid" in qml_params:
        qml_params["dgrids"] = qml_params.pop("dgrid")
    for numbers, positions in molecules[::9]:
        ours = slatm(numbers, positions, mbtypes, **params)
        reference = qmllib_representations.generate_slatm(
            numbers, positions, mbtypes, local=True, **qml_params
        )
        np.testing.assert_allclose(ours, np.asarray(reference), rtol=1e-6, atol=TINY)


def test_layout_widths(mbtypes):
    layout = SlatmLayout.from_mbtypes(mbtypes, dgrid=(0.03, 0.03))
    assert layout.n_distance_bins == int(4.7 / 0.03) + 1
    n_types = [sum(len(t) == k for t in mbtypes) for k in (1, 2, 3)]
    width = n_types[0] + n_types[1] * layout.n_distance_bins + n_types[2] * layout.n_angle_bins
    assert layout.n_features == width


def test_rotation_translation_permutation_invariance(molecules, mbtypes):
    rng = np.random.default_rng(3)
    for numbers, positions in molecules[::7]:
        reference = slatm(numbers, positions, mbtypes)
        rotation = Rotation.random(random_state=rng).as_matrix()
        moved = positions @ rotation.T + rng.normal(scale=5.0, size=3)
        np.testing.assert_allclose(
            slatm(numbers, moved, mbtypes), reference, rtol=1e-7, atol=1e-9 * reference.max()
        )
        order = rng.permutation(len(numbers))
        permuted = slatm(numbers[order], positions[order], mbtypes)
        np.testing.assert_allclose(permuted, reference[order], rtol=1e-9, atol=TINY)


def test_global_is_sum_of_atomic(molecules, mbtypes):
    numbers, positions = molecules[5]
    np.testing.assert_allclose(
        slatm(numbers, positions, mbtypes, local=False),
        slatm(numbers, positions, mbtypes).sum(axis=0),
        rtol=1e-12,
    )


def test_unknown_element_is_an_error(mbtypes):
    with pytest.raises(ValueError, match="not in mbtypes"):
        slatm(np.array([14, 1]), np.array([[0.0, 0, 0], [1.5, 0, 0]]), mbtypes)


def test_bad_positions_shape(mbtypes):
    with pytest.raises(ValueError, match="n_atoms, 3"):
        slatm(np.array([6, 1]), np.zeros((3, 3)), mbtypes)


def test_atoms_are_zero_outside_their_element_columns(molecules, mbtypes):
    masks = element_column_masks(mbtypes)
    for numbers, positions in molecules[::5]:
        atomic = slatm(numbers, positions, mbtypes)
        for z, mask in masks.items():
            of_z = numbers == z
            assert not np.any(atomic[np.ix_(of_z, ~mask)])
            np.testing.assert_array_equal(np.flatnonzero(mask), element_columns(mbtypes, z))


def test_element_blocks_slice_the_full_vectors(molecules, mbtypes):
    subset = molecules[:10]
    blocks = element_blocks(subset, mbtypes, first_molecule_index=100)
    full = [slatm(n, p, mbtypes) for n, p in subset]
    for z, block in blocks.items():
        expected_rows = [
            f[n == z][:, element_columns(mbtypes, z)]
            for f, (n, _) in zip(full, subset, strict=True)
        ]
        np.testing.assert_array_equal(block.x, np.concatenate(expected_rows))
        expected_owner = np.concatenate(
            [np.full(int((n == z).sum()), 100 + i) for i, (n, _) in enumerate(subset)]
        )
        np.testing.assert_array_equal(block.molecule_index, expected_owner)


def test_element_blocks_accept_molecule_objects(molecules, mbtypes):
    numbers, positions = molecules[2]
    molecule = Molecule(id="m", numbers=numbers, bonds=np.zeros((0, 3)), positions=positions)
    from_object = element_blocks([molecule], mbtypes)
    from_pair = element_blocks([(numbers, positions)], mbtypes)
    for z in from_pair:
        np.testing.assert_array_equal(from_object[z].x, from_pair[z].x)
    with pytest.raises(ValueError, match="no 3D positions"):
        element_blocks([Molecule(id="g", numbers=numbers, bonds=np.zeros((0, 3)))], mbtypes)


def test_compact_form_saves_memory(molecules, mbtypes):
    blocks = element_blocks(molecules, mbtypes)
    report = compact_memory_report(blocks, mbtypes)
    n_atoms = sum(len(n) for n, _ in molecules)
    assert sum(report["n_atoms"].values()) == n_atoms
    assert report["full_bytes"] == 8 * n_atoms * report["n_features"]
    # 9 elements here: each keeps well under a third of the columns
    assert report["saved_fraction"] > 0.6
