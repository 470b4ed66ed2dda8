"""In-memory local kernels against a brute-force double loop and qmllib, plus invariances."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from amondask.kernels import (
    element_max_distances,
    element_sigmas,
    l1_distances,
    local_kernel,
)
from amondask.kernels.local import max_pair_distance
from amondask.represent import ElementBlock, element_blocks, slatm, slatm_mbtypes

sys.path.insert(0, str(Path(__file__).parent))
from test_represent_slatm import qm9_sample  # noqa: E402

qmllib_kernels = pytest.importorskip("qmllib.kernels")


@pytest.fixture(scope="module")
def molecules():
    return qm9_sample(10, 211)  # 30 molecules, H C N O F


@pytest.fixture(scope="module")
def mbtypes(molecules):
    return slatm_mbtypes([n for n, _ in molecules])


@pytest.fixture(scope="module")
def split(molecules, mbtypes):
    rows, cols = molecules[:12], molecules[12:]
    return (
        rows,
        cols,
        element_blocks(rows, mbtypes),
        element_blocks(cols, mbtypes),
        [slatm(n, p, mbtypes) for n, p in rows],
        [slatm(n, p, mbtypes) for n, p in cols],
    )


def brute_force(rows, cols, row_reps, col_reps, sigma, kernel):
    """K[i, j] = sum over same-element atom pairs, one pair at a time."""
    out = np.zeros((len(rows), len(cols)))
    for i, (numbers_i, _) in enumerate(rows):
        for j, (numbers_j, _) in enumerate(cols):
            for a, z_a in enumerate(numbers_i):
                for b, z_b in enumerate(numbers_j):
                    if z_a != z_b:
                        continue
                    s = sigma[int(z_a)] if isinstance(sigma, dict) else sigma
                    diff = row_reps[i][a] - col_reps[j][b]
                    if kernel == "gaussian":
                        out[i, j] += math.exp(-float(diff @ diff) / (2 * s * s))
                    else:
                        out[i, j] += math.exp(-float(np.abs(diff).sum()) / s)
    return out


def padded(representations):
    n_max = max(len(r) for r in representations)
    out = np.zeros((len(representations), n_max, representations[0].shape[1]))
    for i, r in enumerate(representations):
        out[i, : len(r)] = r
    return out


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
@pytest.mark.parametrize("per_element", [False, True])
def test_matches_brute_force(split, kernel, per_element):
    rows, cols, row_blocks, col_blocks, row_reps, col_reps = split
    sigma = element_sigmas(row_blocks, kernel=kernel) if per_element else None
    if sigma is None:
        sigma = 2.0 if kernel == "gaussian" else 40.0
    expected = brute_force(rows, cols, row_reps, col_reps, sigma, kernel)
    assert np.ptp(expected) > 0.2 * expected.max() > 0  # neither saturated nor vanishing
    got = local_kernel(row_blocks, col_blocks, sigma=sigma, kernel=kernel, atom_chunk=17)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_gaussian_matches_qmllib_get_local_kernel(split):
    rows, cols, row_blocks, col_blocks, row_reps, col_reps = split
    sigma = 1.7
    reference = qmllib_kernels.get_local_kernel(
        padded(row_reps), padded(col_reps), [n for n, _ in rows], [n for n, _ in cols], sigma
    )
    assert reference.shape == (len(cols), len(rows))  # qmllib returns K transposed
    got = local_kernel(row_blocks, col_blocks, sigma=sigma)
    np.testing.assert_allclose(got, reference.T, rtol=1e-8)
    symmetric_reference = qmllib_kernels.get_local_symmetric_kernel(
        padded(row_reps), [n for n, _ in rows], sigma
    )
    np.testing.assert_allclose(
        local_kernel(row_blocks, sigma=sigma), symmetric_reference, rtol=1e-8
    )


def test_laplacian_matches_qmllib_per_element(split):
    """qmllib's local Laplacian kernel ignores elements: feed it one element at a time."""
    rows, cols, row_blocks, col_blocks, _, _ = split
    sigma = 30.0
    expected = np.zeros((len(rows), len(cols)))
    for z, block in row_blocks.items():
        if len(block.molecule_index) == 0 or len(col_blocks[z].molecule_index) == 0:
            continue
        n_rows = np.bincount(block.molecule_index, minlength=len(rows))
        n_cols = np.bincount(col_blocks[z].molecule_index, minlength=len(cols))
        expected += qmllib_kernels.get_local_kernels_laplacian(
            block.x, col_blocks[z].x, n_rows, n_cols, [sigma]
        )[0]
    got = local_kernel(row_blocks, col_blocks, sigma=sigma, kernel="laplacian")
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_symmetric_and_chunking(split, kernel):
    _, _, row_blocks, _, _, _ = split
    sigma = element_sigmas(row_blocks, kernel=kernel)
    full = local_kernel(row_blocks, row_blocks, sigma=sigma, kernel=kernel)
    for chunk in (5, 23, 4096):
        symmetric = local_kernel(row_blocks, sigma=sigma, kernel=kernel, atom_chunk=chunk)
        np.testing.assert_allclose(symmetric, full, rtol=1e-12)
        np.testing.assert_array_equal(symmetric, symmetric.T)


def test_invariance_to_rotation_translation_and_permutation(molecules, mbtypes):
    rng = np.random.default_rng(11)
    reference_blocks = element_blocks(molecules, mbtypes)
    sigma = element_sigmas(reference_blocks)
    reference = local_kernel(reference_blocks, sigma=sigma)
    order = rng.permutation(len(molecules))
    moved = []
    for index in order:
        numbers, positions = molecules[index]
        atoms = rng.permutation(len(numbers))
        rotation = Rotation.random(random_state=rng).as_matrix()
        moved.append((numbers[atoms], positions[atoms] @ rotation.T + rng.normal(size=3)))
    got = local_kernel(element_blocks(moved, mbtypes), sigma=sigma)
    np.testing.assert_allclose(got, reference[np.ix_(order, order)], rtol=1e-7)


def test_unsorted_atoms_are_sorted_by_molecule(split):
    _, _, row_blocks, col_blocks, _, _ = split
    rng = np.random.default_rng(0)
    shuffled = {}
    for z, block in row_blocks.items():
        order = rng.permutation(len(block.molecule_index))
        shuffled[z] = ElementBlock(block.x[order], block.molecule_index[order])
    np.testing.assert_allclose(
        local_kernel(shuffled, col_blocks, sigma=3.0),
        local_kernel(row_blocks, col_blocks, sigma=3.0),
        rtol=1e-12,
    )


def test_l1_distances_match_scipy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(37, 1100)), rng.normal(size=(45, 1100))
    np.testing.assert_allclose(l1_distances(a, b), cdist(a, b, "cityblock"), rtol=1e-10)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_element_sigmas_put_farthest_pair_at_one_half(split, kernel):
    _, _, row_blocks, _, _, _ = split
    metric = "euclidean" if kernel == "gaussian" else "cityblock"
    sigmas = element_sigmas(row_blocks, kernel=kernel, atom_chunk=7)
    distances = element_max_distances(row_blocks, metric="l2" if kernel == "gaussian" else "l1")
    for z, block in row_blocks.items():
        if len(block.x) < 2:
            continue
        farthest = cdist(block.x, block.x, metric).max()
        assert distances[z] == pytest.approx(farthest, rel=1e-9)
        if kernel == "gaussian":
            value = math.exp(-(farthest**2) / (2 * sigmas[z] ** 2))
        else:
            value = math.exp(-farthest / sigmas[z])
        assert value == pytest.approx(0.5, rel=1e-9)


def _brute_max(x: np.ndarray, metric: str) -> float:
    return float(cdist(x, x, "euclidean" if metric == "l2" else "cityblock").max())


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("shape", ["clustered", "uniform", "duplicates"])
def test_max_pair_distance_is_the_brute_force_maximum(metric, shape):
    rng = np.random.default_rng({"clustered": 1, "uniform": 2, "duplicates": 3}[shape])
    if shape == "clustered":  # like atoms of a few chemical environments
        centres = rng.normal(size=(12, 40)) * 4
        x = np.concatenate([c + rng.normal(size=(90, 40)) * rng.uniform(0.05, 1) for c in centres])
    elif shape == "uniform":
        x = rng.uniform(size=(900, 40))
    else:  # many identical rows (one conformer seen by many queries) and one far outlier
        x = np.repeat(rng.normal(size=(30, 40)), 30, axis=0)
        x[417] += 25.0
    x = x[rng.permutation(len(x))]
    expected = _brute_max(x, metric)
    # atom_chunk small enough that the clustered branch-and-bound runs
    found = max_pair_distance(x, metric=metric, atom_chunk=64, cluster_size=40)
    assert found == pytest.approx(expected, rel=1e-12)
    # the clusters decide the work, never the answer
    for cluster_size, rounds in ((7, 0), (300, 5)):
        other = max_pair_distance(
            x[::-1], metric=metric, atom_chunk=64, cluster_size=cluster_size, kmeans_rounds=rounds
        )
        assert other == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_max_pair_distance_on_aslatm_atoms_and_small_inputs(split, metric):
    _, _, row_blocks, _, _, _ = split
    for block in row_blocks.values():
        expected = _brute_max(block.x, metric) if len(block.x) > 1 else 0.0
        found = max_pair_distance(block.x, metric=metric, atom_chunk=8, cluster_size=6)
        assert found == pytest.approx(expected, rel=1e-12)
    assert max_pair_distance(np.zeros((1, 5)), metric=metric) == 0.0
    assert max_pair_distance(np.zeros((0, 5)), metric=metric) == 0.0


def test_errors(split):
    _, _, row_blocks, col_blocks, _, _ = split
    with pytest.raises(ValueError, match="no kernel width for element"):
        local_kernel(row_blocks, col_blocks, sigma={1: 1.0})
    with pytest.raises(ValueError, match="must be > 0"):
        local_kernel(row_blocks, col_blocks, sigma=0.0)
    narrow = {z: ElementBlock(b.x[:, :-1], b.molecule_index) for z, b in col_blocks.items()}
    with pytest.raises(ValueError, match="same mbtypes"):
        local_kernel(row_blocks, narrow, sigma=1.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        local_kernel(row_blocks, col_blocks, sigma=1.0, kernel="cosine")
