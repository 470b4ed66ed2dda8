"""SLATM and aSLATM: the spectrum of London and Axilrod-Teller-Muto potentials.

Huang & von Lilienfeld, Nat. Chem. 12, 945 (2020), arXiv:1707.04146. The layout and values equal
``qmllib.representations.generate_slatm`` for the same ``mbtypes`` and parameters; the
difference is speed: one compiled pass per molecule over atom pairs and triples instead of one
call per atom and many-body type.

A SLATM vector is the concatenation, in ``mbtypes`` order, of

* one-body blocks ``[Z]`` (1 column): ``Z`` times the number of atoms of element ``Z``;
* two-body blocks ``[Z1, Z2]`` (``n_distance_bins`` columns): a Gaussian-smeared spectrum of
  London potentials ``Z1 Z2 / r**rpower`` over distances ``r`` on the grid 0.1 .. ``rcut``
  angstrom;
* three-body blocks ``[Z1, Z2, Z3]`` (``n_angle_bins`` columns): a Gaussian-smeared spectrum of
  Axilrod-Teller-Muto potentials over the angle at the central atom (element ``Z2``) on the
  grid -20 .. 200 degrees (in radians).

The local (atomic) form gives every atom its own vector: the one-body entry of its element, half
of every pair it belongs to, and every triple it is the center of. The global form is the sum of
the atomic vectors over the molecule. An atom of element ``Z`` therefore has non-zero entries
only in ``[Z]``, the pair blocks containing ``Z`` and the triple blocks centered on ``Z``
(see :mod:`amondask.represent.blocks` for the compact per-element form).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

#: Start of the distance grid of the two-body blocks, in angstrom (fixed by the definition).
DISTANCE_GRID_START_ANGSTROM = 0.1
#: Ends of the angle grid of the three-body blocks, in radians (-20 and 200 degrees).
ANGLE_GRID_START_RADIAN = -20.0 * np.pi / 180.0
ANGLE_GRID_END_RADIAN = np.pi + 20.0 * np.pi / 180.0

# Distances at or below this count as "the same atom" in the three-body terms (as in qmllib).
_SAME_POSITION = float(np.finfo(np.float64).eps)


def slatm_mbtypes(list_of_atomic_numbers: Iterable[Sequence[int] | np.ndarray]) -> list[list[int]]:
    """The many-body types of SLATM for a data set: the basis all its vectors share.

    Same rule as ``qmllib.representations.get_slatm_mbtypes`` with the elements in increasing
    order: one-body ``[Z]`` per element, two-body ``[Z, Z]`` then ``[Z1, Z2]`` (``Z1 < Z2``),
    three-body ``[Z1, Z2, Z3]`` (center ``Z2``) for every triple that no molecule could hold more
    of one element than the data set's largest count, each unordered triple once.

    Args:
        list_of_atomic_numbers: per molecule, its (n_atoms,) atomic numbers, H included.

    Returns:
        list of [Z], [Z1, Z2] and [Z1, Z2, Z3] lists of ints. Store it with the representations:
        amons and queries must share one basis.
    """
    max_count: dict[int, int] = {}
    for numbers in list_of_atomic_numbers:
        values, counts = np.unique(np.asarray(numbers, dtype=np.int64), return_counts=True)
        for z, count in zip(values.tolist(), counts.tolist(), strict=True):
            max_count[z] = max(max_count.get(z, 0), count)
    elements = sorted(max_count)
    one_body = [[z] for z in elements]
    two_body = [[z, z] for z in elements] + [list(p) for p in itertools.combinations(elements, 2)]
    three_body: list[list[int]] = []
    seen: set[tuple[int, int, int]] = set()
    for center_candidate in elements:
        for j, k in two_body:
            for triple in (
                (center_candidate, j, k),
                (center_candidate, k, j),
                (j, center_candidate, k),
            ):
                if triple in seen or triple[::-1] in seen:
                    continue
                if all(triple.count(z) <= max_count[z] for z in set(triple)):
                    seen.add(triple)
                    three_body.append(list(triple))
    return one_body + two_body + three_body


def n_distance_bins(rcut: float, dgrid: float) -> int:
    """Number of columns of a two-body block (qmllib's rule: int((rcut - 0.1) / dgrid) + 1)."""
    return int((rcut - DISTANCE_GRID_START_ANGSTROM) / dgrid) + 1


def n_angle_bins(dgrid: float) -> int:
    """Number of columns of a three-body block (qmllib's rule over -20 .. 200 degrees)."""
    return int((ANGLE_GRID_END_RADIAN - ANGLE_GRID_START_RADIAN) / dgrid) + 1


@dataclass(frozen=True)
class SlatmLayout:
    """Where each many-body type's block sits in a SLATM vector.

    Attributes:
        mbtypes: the many-body types, as given.
        n_distance_bins: columns per two-body block.
        n_angle_bins: columns per three-body block.
    """

    mbtypes: tuple[tuple[int, ...], ...]
    n_distance_bins: int
    n_angle_bins: int

    @classmethod
    def from_mbtypes(
        cls, mbtypes: Sequence[Sequence[int]], *, rcut: float = 4.8, dgrid=(0.03, 0.03)
    ) -> SlatmLayout:
        types = tuple(tuple(int(z) for z in mbtype) for mbtype in mbtypes)
        if any(len(t) not in (1, 2, 3) for t in types):
            raise ValueError("every many-body type must have 1, 2 or 3 atomic numbers")
        return cls(types, n_distance_bins(rcut, dgrid[0]), n_angle_bins(dgrid[1]))

    def block_width(self, mbtype: Sequence[int]) -> int:
        return (1, self.n_distance_bins, self.n_angle_bins)[len(mbtype) - 1]

    @cached_property
    def block_offsets(self) -> np.ndarray:
        """(n_mbtypes + 1,) int64 column where each block starts; the last entry is the width."""
        widths = [self.block_width(t) for t in self.mbtypes]
        return np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)

    @property
    def n_features(self) -> int:
        return int(self.block_offsets[-1])

    @cached_property
    def elements(self) -> np.ndarray:
        """(n_elements,) int64 sorted atomic numbers that occur in mbtypes."""
        return np.array(sorted({z for t in self.mbtypes for z in t}), dtype=np.int64)

    @cached_property
    def lookup_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offsets indexed by element slot: one-body (n_el,), pair (n_el, n_el), triple
        (n_el, n_el, n_el) with the center in the middle; -1 where the type is not in mbtypes."""
        slot = {int(z): i for i, z in enumerate(self.elements)}
        n_el = len(slot)
        one = np.full(n_el, -1, np.int64)
        pair = np.full((n_el, n_el), -1, np.int64)
        triple = np.full((n_el, n_el, n_el), -1, np.int64)
        for mbtype, offset in zip(self.mbtypes, self.block_offsets[:-1].tolist(), strict=False):
            s = [slot[z] for z in mbtype]
            if len(s) == 1 and one[s[0]] < 0:
                one[s[0]] = offset
            elif len(s) == 2 and pair[s[0], s[1]] < 0:
                pair[s[0], s[1]] = pair[s[1], s[0]] = offset
            elif len(s) == 3 and triple[s[0], s[1], s[2]] < 0:
                triple[s[0], s[1], s[2]] = triple[s[2], s[1], s[0]] = offset
        return one, pair, triple

    def element_columns(self, z: int) -> np.ndarray:
        """(d_Z,) int64 sorted columns where an atom of element ``z`` can be non-zero:
        ``[z]``, the pair blocks containing ``z`` and the triple blocks centered on ``z``."""
        columns = []
        for mbtype, start, stop in zip(
            self.mbtypes, self.block_offsets[:-1], self.block_offsets[1:], strict=True
        ):
            if (len(mbtype) < 3 and z in mbtype) or (len(mbtype) == 3 and mbtype[1] == z):
                columns.append(np.arange(start, stop, dtype=np.int64))
        if not columns:
            return np.zeros(0, np.int64)
        return np.concatenate(columns)


@numba.njit(cache=True, inline="always")
def _add_smeared(out, row, offset, factor, weights, grid_start, grid_step, center, inv_two_sigma2):
    """out[row, offset + m] += factor * weights[m] * exp(inv_two_sigma2 * (x_m - center)**2)
    on the grid x_m = grid_start + m * grid_step.

    The Gaussian is built outward from the bin nearest ``center`` by the exact recurrence
    g(m + 1) = g(m) q(m), q(m + 1) = q(m) c, c = exp(2 inv_two_sigma2 step**2): two products per
    bin instead of an exp (relative error ~ n_bins * 1e-16), stopping once g underflows to 0.
    """
    n = weights.shape[0]
    peak = int(np.floor((center - grid_start) / grid_step + 0.5))
    peak = min(max(peak, 0), n - 1)
    h = grid_step
    c = np.exp(2.0 * inv_two_sigma2 * h * h)
    delta = grid_start + peak * h - center
    g_peak = np.exp(inv_two_sigma2 * delta * delta)
    # upward: (x_{m+1} - a)^2 - (x_m - a)^2 = 2 h (x_m - a) + h^2
    g = g_peak
    q = np.exp(inv_two_sigma2 * (2.0 * h * delta + h * h))
    for m in range(peak, n):
        if g == 0.0:
            break
        out[row, offset + m] += factor * weights[m] * g
        g *= q
        q *= c
    # downward: (x_{m-1} - a)^2 - (x_m - a)^2 = -2 h (x_m - a) + h^2
    g = g_peak * np.exp(inv_two_sigma2 * (-2.0 * h * delta + h * h))
    q = np.exp(inv_two_sigma2 * (-2.0 * h * (delta - h) + h * h))
    for m in range(peak - 1, -1, -1):
        if g == 0.0:
            break
        out[row, offset + m] += factor * weights[m] * g
        g *= q
        q *= c


@numba.njit(cache=True, fastmath=False)
def _atomic_slatm_into(
    slots,
    element_z,
    positions,
    one_offsets,
    pair_offsets,
    triple_offsets,
    rcut,
    two_body_sigma,
    two_body_dgrid,
    n_distance,
    rpower,
    three_body_sigma,
    three_body_dgrid,
    n_angle,
    out,
):
    """Fill out (n_atoms, n_features), zeroed by the caller, with the atomic SLATM vectors."""
    n_atoms = slots.shape[0]
    # distances
    dist = np.zeros((n_atoms, n_atoms))
    for a in range(n_atoms):
        for b in range(a + 1, n_atoms):
            dx = positions[a, 0] - positions[b, 0]
            dy = positions[a, 1] - positions[b, 1]
            dz = positions[a, 2] - positions[b, 2]
            r = np.sqrt(dx * dx + dy * dy + dz * dz)
            dist[a, b] = r
            dist[b, a] = r

    # one-body
    for a in range(n_atoms):
        offset = one_offsets[slots[a]]
        if offset >= 0:
            out[a, offset] = element_z[slots[a]]

    # two-body: each atom gets half of every pair it is in
    r0 = 0.1
    step = (rcut - r0) / (n_distance - 1)
    grid_r = np.empty(n_distance)
    scale_r = np.empty(n_distance)
    norm2 = 1.0 / np.sqrt(2.0 * two_body_sigma**2 * np.pi)
    for k in range(n_distance):
        grid_r[k] = r0 + k * step
        scale_r[k] = norm2 / grid_r[k] ** rpower * two_body_dgrid
    inv2 = -0.5 / two_body_sigma**2
    rcut2 = rcut * rcut
    for a in range(n_atoms):
        for b in range(n_atoms):
            if b == a:
                continue
            offset = pair_offsets[slots[a], slots[b]]
            if offset < 0:
                continue
            dx = positions[a, 0] - positions[b, 0]
            dy = positions[a, 1] - positions[b, 1]
            dz = positions[a, 2] - positions[b, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if not r2 < rcut2:
                continue
            r = np.sqrt(r2)
            c0 = 0.5 * element_z[slots[a]] * element_z[slots[b]]
            _add_smeared(out, a, offset, c0, scale_r, r0, step, r, inv2)

    # three-body: every unordered pair (i, k) of neighbours of the center j
    a0 = -20.0 * np.pi / 180.0
    a1 = np.pi + 20.0 * np.pi / 180.0
    step_a = (a1 - a0) / (n_angle - 1)
    grid_a = np.empty(n_angle)
    cos_grid = np.empty(n_angle)
    for k in range(n_angle):
        grid_a[k] = a0 + k * step_a
        cos_grid[k] = np.cos(grid_a[k])
    norm3 = 1.0 / np.sqrt(2.0 * three_body_sigma**2 * np.pi)
    inv3 = -1.0 / (2.0 * three_body_sigma**2)
    eps = _SAME_POSITION
    angular = np.empty(n_angle)
    for j in range(n_atoms):
        for i in range(n_atoms):
            dij = dist[i, j]
            if not (dij > eps and dij <= rcut):
                continue
            for k in range(i + 1, n_atoms):
                dkj = dist[k, j]
                if not (dkj > eps and dkj <= rcut):
                    continue
                dik = dist[i, k]
                if dik > rcut:
                    continue
                offset = triple_offsets[slots[i], slots[j], slots[k]]
                if offset < 0:
                    continue
                # angle at j between i and k; cosines at k and at i
                cos_j = 0.0
                cos_k = 0.0
                cos_i = 0.0
                for c in range(3):
                    cos_j += (positions[i, c] - positions[j, c]) * (
                        positions[k, c] - positions[j, c]
                    )
                    cos_k += (positions[i, c] - positions[k, c]) * (
                        positions[j, c] - positions[k, c]
                    )
                    cos_i += (positions[k, c] - positions[i, c]) * (
                        positions[j, c] - positions[i, c]
                    )
                cos_j /= dij * dkj
                cos_k /= dik * dkj
                cos_i /= dik * dij
                cos_j = min(1.0, max(-1.0, cos_j))
                angle = np.arccos(cos_j)
                r = dij * dik * dkj
                c0 = (
                    (1.0 / 3.0)
                    * element_z[slots[i]]
                    * element_z[slots[j]]
                    * element_z[slots[k]]
                    * norm3
                    * three_body_dgrid
                )
                c0_over_r3 = c0 / (r * r * r)
                cos_product = cos_k * cos_i
                for m in range(n_angle):
                    angular[m] = 1.0 + cos_grid[m] * cos_product
                _add_smeared(out, j, offset, c0_over_r3, angular, a0, step_a, angle, inv3)


@functools.lru_cache(maxsize=16)
def _cached_layout(mbtypes: tuple, rcut: float, dgrid: tuple) -> SlatmLayout:
    return SlatmLayout.from_mbtypes(mbtypes, rcut=rcut, dgrid=dgrid)


def _element_slots(numbers: np.ndarray, layout: SlatmLayout) -> np.ndarray:
    elements = layout.elements
    slots = np.searchsorted(elements, numbers)
    slots = np.minimum(slots, len(elements) - 1)
    missing = elements[slots] != numbers
    if missing.any():
        raise ValueError(
            f"elements {sorted(set(numbers[missing].tolist()))} are not in mbtypes "
            f"(elements {elements.tolist()}); build mbtypes with slatm_mbtypes over every "
            "molecule (amons and queries) that shares the representation"
        )
    return slots.astype(np.int64)


def slatm(
    numbers: np.ndarray,
    positions: np.ndarray,
    mbtypes: Sequence[Sequence[int]],
    *,
    local: bool = True,
    rcut: float = 4.8,
    sigmas: tuple[float, float] = (0.05, 0.05),
    dgrid: tuple[float, float] = (0.03, 0.03),
    rpower: float = 6,
) -> np.ndarray:
    """The (a)SLATM representation of one molecule.

    Args:
        numbers: (n_atoms,) int atomic numbers, H included.
        positions: (n_atoms, 3) float Cartesian coordinates in angstrom.
        mbtypes: the many-body types (:func:`slatm_mbtypes`) of the whole data set.
        local: atomic vectors (aSLATM) if True, the molecular vector if False.
        rcut: cut-off radius in angstrom.
        sigmas: Gaussian widths of the two-body (angstrom) and three-body (radian) spectra.
        dgrid: grid spacings of the two-body (angstrom) and three-body (radian) spectra; the
            authors' aSLATM uses (0.04, 0.04).
        rpower: power of the distance in the two-body potential (6: London).

    Returns:
        float64 (n_atoms, n_features) if local else (n_features,), in the layout of
        ``qmllib.representations.generate_slatm``.
    """
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.shape != (numbers.shape[0], 3):
        raise ValueError(
            f"positions must have shape (n_atoms, 3) = ({numbers.shape[0]}, 3), "
            f"got {positions.shape}"
        )
    layout = _cached_layout(
        tuple(tuple(int(z) for z in t) for t in mbtypes), float(rcut), tuple(map(float, dgrid))
    )
    atomic = slatm_with_layout(
        numbers, positions, layout, rcut=rcut, sigmas=sigmas, dgrid=dgrid, rpower=rpower
    )
    return atomic if local else atomic.sum(axis=0)


def slatm_with_layout(
    numbers: np.ndarray,
    positions: np.ndarray,
    layout: SlatmLayout,
    *,
    rcut: float = 4.8,
    sigmas: tuple[float, float] = (0.05, 0.05),
    dgrid: tuple[float, float] = (0.03, 0.03),
    rpower: float = 6,
) -> np.ndarray:
    """Atomic SLATM (n_atoms, layout.n_features) with a prebuilt :class:`SlatmLayout`.

    The layout must have been built with the same ``rcut`` and ``dgrid``; reuse one layout for
    many molecules to skip re-deriving the block offsets.
    """
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if layout.n_distance_bins != n_distance_bins(rcut, dgrid[0]) or (
        layout.n_angle_bins != n_angle_bins(dgrid[1])
    ):
        raise ValueError("layout was built with another rcut/dgrid than this call asks for")
    slots = _element_slots(numbers, layout)
    one, pair, triple = layout.lookup_tables
    out = np.zeros((numbers.shape[0], layout.n_features))
    _atomic_slatm_into(
        slots,
        layout.elements.astype(np.float64),
        positions,
        one,
        pair,
        triple,
        float(rcut),
        float(sigmas[0]),
        float(dgrid[0]),
        layout.n_distance_bins,
        float(rpower),
        float(sigmas[1]),
        float(dgrid[1]),
        layout.n_angle_bins,
        out,
    )
    return out
