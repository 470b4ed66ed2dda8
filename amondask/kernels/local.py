"""In-memory local kernels between molecules from per-element atomic representations.

K[i, j] = sum over atoms a of molecule i and b of molecule j with Z_a = Z_b of k_Z(x_a, x_b),

* Gaussian ``k_Z = exp(-|x_a - x_b|_2^2 / (2 sigma_Z^2))``: the squared distances come from one
  GEMM per element and atom chunk (``|a|^2 + |b|^2 - 2 a.b``), then exp, then a segment sum of
  rows and columns onto molecules (atoms are stored sorted by molecule);
* Laplacian ``k_Z = exp(-|x_a - x_b|_1 / sigma_Z)``: the L1 distances come from a compiled,
  cache-blocked loop.

Inputs are per-element blocks ``{Z: ElementBlock(x (n_atoms_Z, d_Z), molecule_index)}``
(:func:`amondask.represent.element_blocks`); ``sigma`` is one float or ``{Z: sigma_Z}``
(:func:`element_sigmas`). Symmetric kernels (``cols=None``) compute each atom-chunk pair once.
Temporaries are bounded by ``atom_chunk`` (about ``atom_chunk**2 * 8`` bytes for the atom
kernel plus two ``atom_chunk * d_Z * 8`` slices); the result is dense (n_rows, n_cols) float64.

Pure NumPy/Numba: no Dask, no Zarr (see :mod:`amondask.kernels.blocked` for that layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numba
import numpy as np

from amondask.represent.blocks import ElementBlock

KernelName = Literal["gaussian", "laplacian"]
DEFAULT_ATOM_CHUNK = 4096


def _as_sorted_block(block: ElementBlock) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(block.x, dtype=np.float64)
    owner = np.asarray(block.molecule_index, dtype=np.int64)
    if x.ndim != 2 or owner.shape != (x.shape[0],):
        raise ValueError(
            f"an element block needs x (n_atoms, d) and molecule_index (n_atoms,), got "
            f"{x.shape} and {owner.shape}"
        )
    if owner.size > 1 and np.any(np.diff(owner) < 0):
        order = np.argsort(owner, kind="stable")
        x, owner = x[order], owner[order]
    return x, owner


def _sigma_for(sigma: float | Mapping[int, float], z: int) -> float:
    if isinstance(sigma, Mapping):
        if z not in sigma:
            raise ValueError(f"no kernel width for element {z}; give sigma[{z}] (element_sigmas)")
        value = float(sigma[z])
    else:
        value = float(sigma)
    if not value > 0:
        raise ValueError(f"kernel width for element {z} must be > 0, got {value}")
    return value


@numba.njit(cache=True, fastmath=True)
def l1_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_a, n_b) L1 distances between the rows of a (n_a, d) and b (n_b, d).

    Cache-blocked over columns of b and depth, and register-blocked over four rows of a (each
    b[j, k] loaded once for four differences): about 2x a plain double loop.
    """
    n_a, d = a.shape
    n_b = b.shape[0]
    out = np.zeros((n_a, n_b))
    tile_cols, tile_depth = 64, 256
    for k0 in range(0, d, tile_depth):
        k1 = min(k0 + tile_depth, d)
        for j0 in range(0, n_b, tile_cols):
            j1 = min(j0 + tile_cols, n_b)
            i = 0
            while i + 4 <= n_a:
                for j in range(j0, j1):
                    s0 = 0.0
                    s1 = 0.0
                    s2 = 0.0
                    s3 = 0.0
                    for k in range(k0, k1):
                        bk = b[j, k]
                        s0 += abs(a[i, k] - bk)
                        s1 += abs(a[i + 1, k] - bk)
                        s2 += abs(a[i + 2, k] - bk)
                        s3 += abs(a[i + 3, k] - bk)
                    out[i, j] += s0
                    out[i + 1, j] += s1
                    out[i + 2, j] += s2
                    out[i + 3, j] += s3
                i += 4
            while i < n_a:
                for j in range(j0, j1):
                    s = 0.0
                    for k in range(k0, k1):
                        s += abs(a[i, k] - b[j, k])
                    out[i, j] += s
                i += 1
    return out


def atom_kernel(
    x_rows: np.ndarray,
    x_cols: np.ndarray,
    sigma: float,
    kernel: KernelName = "gaussian",
    *,
    row_norms: np.ndarray | None = None,
    col_norms: np.ndarray | None = None,
) -> np.ndarray:
    """(n_rows, n_cols) atom-pair kernel values k(x_a, x_b) for rows of x_rows and x_cols."""
    if kernel == "gaussian":
        if row_norms is None:
            row_norms = np.einsum("ij,ij->i", x_rows, x_rows)
        if col_norms is None:
            col_norms = np.einsum("ij,ij->i", x_cols, x_cols)
        # -(|a|^2 + |b|^2 - 2 a.b) / (2 sigma^2) with the scale folded into the GEMM operand:
        # four passes over the (n_rows, n_cols) matrix after the GEMM
        half_inverse = 1.0 / (2.0 * sigma * sigma)
        if x_rows.shape[0] <= x_cols.shape[0]:
            values = (x_rows * (2.0 * half_inverse)) @ x_cols.T
        else:
            values = x_rows @ (x_cols * (2.0 * half_inverse)).T
        values -= (row_norms * half_inverse)[:, None]
        values -= (col_norms * half_inverse)[None, :]
        np.minimum(values, 0.0, out=values)  # clipped against rounding
    elif kernel == "laplacian":
        values = l1_distances(
            np.ascontiguousarray(x_rows, dtype=np.float64),
            np.ascontiguousarray(x_cols, dtype=np.float64),
        )
        values *= -1.0 / sigma
    else:
        raise ValueError(f"unknown kernel {kernel!r}; use 'gaussian' or 'laplacian'")
    np.exp(values, out=values)
    return values


def _segments(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of each run of equal molecule index in a sorted owner array, and the molecules."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return starts, owner[starts]


def molecule_sum(
    values: np.ndarray, row_owner: np.ndarray, col_owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum an atom-pair matrix onto molecules: (summed (n_row_mols, n_col_mols), row molecules,
    col molecules) for atoms sorted by molecule."""
    row_starts, row_mols = _segments(row_owner)
    col_starts, col_mols = _segments(col_owner)
    summed = np.add.reduceat(values, row_starts, axis=0)
    summed = np.add.reduceat(summed, col_starts, axis=1)
    return summed, row_mols, col_mols


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _read_rows(x, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x[start:stop]), dtype=np.float64)


def accumulate_element_kernel(
    out: np.ndarray,
    x_rows,
    row_owner: np.ndarray,
    x_cols,
    col_owner: np.ndarray | None,
    sigma: float,
    kernel: KernelName = "gaussian",
    *,
    row_offset: int = 0,
    col_offset: int = 0,
    atom_chunk: int = DEFAULT_ATOM_CHUNK,
    column_cache_bytes: int = 0,
) -> None:
    """Add one element's contribution to a molecule kernel block ``out`` in place.

    ``out[m - row_offset, n - col_offset] += sum k(x_a, x_b)`` over atoms a of molecule m and b
    of molecule n. ``x_rows`` / ``x_cols`` are (n_atoms, d_Z) arrays or anything that returns
    one for a row slice (a zarr array, a lazy view): they are read ``atom_chunk`` rows at a time,
    so memory stays at two chunks plus one (atom_chunk, atom_chunk) matrix; when all column atoms
    fit in ``column_cache_bytes`` they are read once and kept instead. The owners are
    (n_atoms,) sorted molecule indices. With ``x_cols=None`` the block is symmetric (cols = rows;
    out square) and every atom-chunk pair is computed once.
    """
    symmetric = x_cols is None
    if symmetric:
        x_cols, col_owner, col_offset = x_rows, row_owner, row_offset
    n_row_atoms, n_col_atoms = len(row_owner), len(col_owner)
    if n_row_atoms == 0 or n_col_atoms == 0:
        return
    row_chunks = _chunks(n_row_atoms, atom_chunk)
    col_chunks = row_chunks if symmetric else _chunks(n_col_atoms, atom_chunk)
    gaussian = kernel == "gaussian"
    cache: dict[int, tuple[np.ndarray, np.ndarray | None]] | None = None
    if not isinstance(x_cols, np.ndarray) and len(col_chunks) > 1:
        width = int(getattr(x_cols, "shape", (0, 0))[1])
        if 0 < 8 * n_col_atoms * width <= column_cache_bytes:
            cache = {}

    def read_columns(cj: int) -> tuple[np.ndarray, np.ndarray | None]:
        if cache is not None and cj in cache:
            return cache[cj]
        c0, c1 = col_chunks[cj]
        cols_x = _read_rows(x_cols, c0, c1)
        col_norms = np.einsum("ij,ij->i", cols_x, cols_x) if gaussian else None
        if cache is not None:
            cache[cj] = (cols_x, col_norms)
        return cols_x, col_norms

    for ci, (r0, r1) in enumerate(row_chunks):
        if symmetric:
            rows_x, row_norms = read_columns(ci)
        else:
            rows_x = _read_rows(x_rows, r0, r1)
            row_norms = np.einsum("ij,ij->i", rows_x, rows_x) if gaussian else None
        for cj, (c0, c1) in enumerate(col_chunks):
            if symmetric and cj < ci:
                continue
            if symmetric and cj == ci:
                cols_x, col_norms = rows_x, row_norms
            else:
                cols_x, col_norms = read_columns(cj)
            values = atom_kernel(
                rows_x, cols_x, sigma, kernel, row_norms=row_norms, col_norms=col_norms
            )
            summed, rows, cols = molecule_sum(values, row_owner[r0:r1], col_owner[c0:c1])
            del values
            rows = rows - row_offset
            cols = cols - col_offset
            out[np.ix_(rows, cols)] += summed
            if symmetric and cj > ci:
                out[np.ix_(cols, rows)] += summed.T
        if cache is not None and symmetric:
            cache.pop(ci, None)  # never needed again


def local_kernel(
    rows: Mapping[int, ElementBlock],
    cols: Mapping[int, ElementBlock] | None = None,
    *,
    sigma: float | Mapping[int, float],
    kernel: KernelName = "gaussian",
    n_row_molecules: int | None = None,
    n_col_molecules: int | None = None,
    atom_chunk: int = DEFAULT_ATOM_CHUNK,
) -> np.ndarray:
    """The local kernel matrix between two sets of molecules.

    Args:
        rows: {Z: ElementBlock(x (n_atoms_Z, d_Z), molecule_index (n_atoms_Z,))} of the row
            molecules.
        cols: the same for the column molecules (same d_Z per element), or None for the
            symmetric kernel of ``rows`` with itself.
        sigma: kernel width, one float or {Z: sigma_Z}.
        kernel: "gaussian" or "laplacian".
        n_row_molecules, n_col_molecules: number of molecules (default: largest index + 1).
        atom_chunk: atoms per chunk of the atom-pair matrices (bounds temporary memory).

    Returns:
        (n_row_molecules, n_col_molecules) float64 kernel matrix.
    """
    symmetric = cols is None
    n_rows = _n_molecules(rows, n_row_molecules)
    n_cols = n_rows if symmetric else _n_molecules(cols, n_col_molecules)
    out = np.zeros((n_rows, n_cols))
    for z, row_block in rows.items():
        x_rows, row_owner = _as_sorted_block(row_block)
        if symmetric:
            x_cols = col_owner = None
        else:
            if z not in cols:
                continue
            x_cols, col_owner = _as_sorted_block(cols[z])
            if x_cols.shape[1] != x_rows.shape[1]:
                raise ValueError(
                    f"element {z}: rows have {x_rows.shape[1]} features, cols "
                    f"{x_cols.shape[1]}; both must use the same mbtypes and grid"
                )
        accumulate_element_kernel(
            out,
            x_rows,
            row_owner,
            x_cols,
            col_owner,
            _sigma_for(sigma, z),
            kernel,
            atom_chunk=atom_chunk,
        )
    if symmetric:  # GEMM rounding is not bitwise symmetric
        out = 0.5 * (out + out.T)
    return out


def gaussian_local_kernel(rows, cols=None, *, sigma, **kwargs) -> np.ndarray:
    """:func:`local_kernel` with the Gaussian kernel."""
    return local_kernel(rows, cols, sigma=sigma, kernel="gaussian", **kwargs)


def laplacian_local_kernel(rows, cols=None, *, sigma, **kwargs) -> np.ndarray:
    """:func:`local_kernel` with the Laplacian kernel."""
    return local_kernel(rows, cols, sigma=sigma, kernel="laplacian", **kwargs)


def _n_molecules(blocks: Mapping[int, ElementBlock], given: int | None) -> int:
    largest = max(
        (int(np.max(b.molecule_index)) for b in blocks.values() if len(b.molecule_index)),
        default=-1,
    )
    if given is None:
        return largest + 1
    if largest >= given:
        raise ValueError(f"molecule index {largest} out of range for {given} molecules")
    return int(given)


def element_max_distances(
    blocks: Mapping[int, ElementBlock],
    *,
    metric: Literal["l2", "l1"] = "l2",
    atom_chunk: int = DEFAULT_ATOM_CHUNK,
) -> dict[int, float]:
    """{Z: largest distance between two atoms of element Z} in the blocks (0 for < 2 atoms).

    Exact. Up to ``2 * atom_chunk`` atoms of an element, every pair is compared; above, the
    atoms are grouped into clusters (a few k-means rounds) and a pair of clusters is compared
    only when the triangle-inequality bound ``d(c_p, c_q) + r_p + r_q`` (centres c, radii r)
    can beat the largest distance found so far (see :func:`max_pair_distance`).
    """
    largest: dict[int, float] = {}
    for z, block in blocks.items():
        x = np.asarray(block.x, dtype=np.float64)
        largest[int(z)] = max_pair_distance(x, metric=metric, atom_chunk=atom_chunk)
    return largest


def max_pair_distance(
    x: np.ndarray,
    *,
    metric: Literal["l2", "l1"] = "l2",
    atom_chunk: int = DEFAULT_ATOM_CHUNK,
    cluster_size: int = 512,
    kmeans_rounds: int = 3,
) -> float:
    """The largest distance (L2 or L1) between two rows of ``x`` (n, d); 0 for n < 2.

    Exact, by a branch-and-bound over clusters: the clusters (about ``cluster_size`` rows,
    ``kmeans_rounds`` Lloyd rounds from seeded rows) only decide how much is compared, never
    the answer. Representations of chemically similar atoms cluster tightly, so that on QM9
    amons most cluster pairs are never compared.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return 0.0
    norms = np.einsum("ij,ij->i", x, x)
    if n <= 2 * atom_chunk:
        return _max_over_pairs(x, norms, _chunks(n, atom_chunk), metric)
    members, centres, radii = _clusters(x, metric, cluster_size, kmeans_rounds)
    best = _farthest_point_bound(x, metric)
    k = len(members)
    between = _center_distances(centres, metric)
    bound = between + radii[:, None] + radii[None, :]
    first, second = np.triu_indices(k)
    order = np.argsort(-bound[first, second], kind="stable")
    margin = 1e-9
    for index in order.tolist():
        p, q = int(first[index]), int(second[index])
        if bound[p, q] * (1.0 + margin) + margin < best:
            break  # sorted: no remaining pair of clusters can hold a larger distance
        rows, cols = members[p], members[q]
        best = max(best, _block_max(x[rows], x[cols], norms[rows], norms[cols], metric))
    return best


def _block_max(
    a: np.ndarray, b: np.ndarray, norms_a: np.ndarray, norms_b: np.ndarray, metric: str
) -> float:
    if metric == "l2":
        sq = norms_a[:, None] + norms_b[None, :] - 2.0 * (a @ b.T)
        return math.sqrt(max(float(sq.max()), 0.0))
    return float(l1_distances(a, b).max())


def _max_over_pairs(
    x: np.ndarray, norms: np.ndarray, chunks: list[tuple[int, int]], metric: str
) -> float:
    best = 0.0
    for ci, (r0, r1) in enumerate(chunks):
        for c0, c1 in chunks[ci:]:
            best = max(best, _block_max(x[r0:r1], x[c0:c1], norms[r0:r1], norms[c0:c1], metric))
    return best


def _distances_to(x: np.ndarray, point: np.ndarray, metric: str, rows: int = 8192) -> np.ndarray:
    """(n,) distances of the rows of x to one point, from differences (no cancellation)."""
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], rows):
        diff = x[start : start + rows] - point
        if metric == "l2":
            out[start : start + rows] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        else:
            out[start : start + rows] = np.abs(diff).sum(axis=1)
    return out


def _farthest_point_bound(x: np.ndarray, metric: str, rounds: int = 3) -> float:
    """A large distance that two rows really have (the start of the branch-and-bound): from
    the row farthest from the mean, hop to the farthest row a few times."""
    current = int(np.argmax(_distances_to(x, x.mean(axis=0), metric)))
    best = 0.0
    for _ in range(rounds):
        distances = _distances_to(x, x[current], metric)
        current = int(np.argmax(distances))
        best = max(best, float(distances[current]))
    return best


def _clusters(
    x: np.ndarray, metric: str, cluster_size: int, rounds: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Rows grouped by nearest centre (Euclidean k-means rounds from seeded rows): the member
    rows of each non-empty cluster, the centres (k, d) and radii (k,) in ``metric``."""
    n = x.shape[0]
    k = max(2, math.ceil(n / cluster_size))
    start = np.sort(np.random.default_rng(0).choice(n, size=k, replace=False))
    centres = x[start].copy()
    for _ in range(rounds):  # Lloyd: assign, then move each centre to its members' mean
        assignment = _nearest_centre(x, centres)
        counts = np.bincount(assignment, minlength=len(centres))
        sums = np.zeros_like(centres)
        _add_rows(sums, assignment, x)
        keep = counts > 0
        centres = sums[keep] / counts[keep, None]
    assignment = _nearest_centre(x, centres)
    order = np.argsort(assignment, kind="stable")
    bounds = np.searchsorted(assignment[order], np.arange(len(centres) + 1))
    members, kept_centres, radii = [], [], []
    for c in range(len(centres)):
        rows = order[bounds[c] : bounds[c + 1]]
        if len(rows) == 0:
            continue
        centre = x[rows].mean(axis=0)
        members.append(rows)
        kept_centres.append(centre)
        radii.append(float(_distances_to(x[rows], centre, metric).max()))
    return members, np.array(kept_centres), np.array(radii)


def _add_rows(sums: np.ndarray, assignment: np.ndarray, x: np.ndarray, rows: int = 8192) -> None:
    """sums[assignment[i]] += x[i], a bounded block of rows at a time."""
    for start in range(0, x.shape[0], rows):
        block = assignment[start : start + rows]
        order = np.argsort(block, kind="stable")
        labels, first = np.unique(block[order], return_index=True)
        sums[labels] += np.add.reduceat(x[start : start + rows][order], first, axis=0)


def _nearest_centre(x: np.ndarray, centres: np.ndarray, rows: int = 8192) -> np.ndarray:
    """(n,) index of each row's nearest centre (squared Euclidean, by GEMM; a row's own norm
    does not change which centre is nearest)."""
    centre_norms = np.einsum("ij,ij->i", centres, centres)
    out = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], rows):
        sq = centre_norms[None, :] - 2.0 * (x[start : start + rows] @ centres.T)
        out[start : start + rows] = np.argmin(sq, axis=1)
    return out


def _center_distances(centres: np.ndarray, metric: str) -> np.ndarray:
    """(k, k) distances between the centres, from differences (no cancellation)."""
    return np.stack([_distances_to(centres, centre, metric) for centre in centres])


def element_sigmas(
    blocks: Mapping[int, ElementBlock],
    *,
    kernel: KernelName = "gaussian",
    atom_chunk: int = DEFAULT_ATOM_CHUNK,
) -> dict[int, float]:
    """Per-element kernel widths as the authors set them: the farthest pair of same-element
    atoms in ``blocks`` scores 0.5.

    Gaussian: sigma_Z = d_max,Z / sqrt(2 ln 2) with d_max,Z the largest L2 distance;
    Laplacian (the same rule): sigma_Z = d_max,Z / ln 2 with the largest L1 distance.
    Elements with fewer than two atoms (d_max = 0) get width 1.0.
    """
    metric = "l2" if kernel == "gaussian" else "l1"
    factor = math.sqrt(2.0 * math.log(2.0)) if kernel == "gaussian" else math.log(2.0)
    distances = element_max_distances(blocks, metric=metric, atom_chunk=atom_chunk)
    return {z: (d / factor if d > 0 else 1.0) for z, d in distances.items()}
