"""Did relaxation change the molecule? Bonds perceived from a geometry vs. the input graph.

Connectivity is perceived with the covalent-radius rule: atoms i and j are bonded when their
distance is below ``factor * (r_i + r_j)``, with RDKit's covalent radii (angstrom) and
``factor`` 1.15 by default (``amondask.label.topology.covalent-radius-factor``); this is the
rule of RDKit's ``rdDetermineBonds.DetermineConnectivity`` (whose default factor is 1.3). The
factor was chosen on QM9's B3LYP geometries: at 1.3 or 1.2 the 1,3 C...C distance of
bicyclo[1.1.1]pentanes (about 1.87 angstrom) reads as a bond and hundreds of QM9 molecules
look changed; at 1.15 all QM9 molecules with <= 8 heavy atoms keep their bonds except five
1,2,3-oxadiazoles whose ring O-N bond is stretched to about 1.6 angstrom (1.18 times the
radii sum; typical O-N bonds are 1.40). No single factor separates every long bond from every
short non-bonded contact; 1.15 errs towards flagging strongly stretched bonds.

RDKit's covalent radius of H (0.31 angstrom; 0.23 in older tables) makes the H-H threshold
shorter than the H2 bond (0.74 angstrom), so an H-H pair is bonded below
:data:`H_H_BOND_ANGSTROM` instead (non-bonded H...H contacts are beyond 1.5 angstrom).

Only connectivity is compared, not bond orders: a relaxed structure in which an H atom moved
to another atom, or a bond stretched beyond the threshold, has a changed topology.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rdkit import Chem

from amondask import config
from amondask.chem.molecule import Molecule

#: H-H pairs closer than this (angstrom) are bonded, whatever the radius factor (H2: 0.74).
H_H_BOND_ANGSTROM = 1.0


@lru_cache(maxsize=128)
def _covalent_radius_angstrom(atomic_number: int) -> float:
    return float(Chem.GetPeriodicTable().GetRcovalent(int(atomic_number)))


def covalent_radii_angstrom(numbers: np.ndarray) -> np.ndarray:
    """(n_atoms,) covalent radii in angstrom (RDKit's table) for atomic numbers ``numbers``."""
    return np.array([_covalent_radius_angstrom(int(z)) for z in numbers], dtype=np.float64)


def perceive_bonds(
    numbers: np.ndarray, positions: np.ndarray, *, factor: float | None = None
) -> np.ndarray:
    """Bonds perceived from a geometry, as an (n_bonds, 2) int array of pairs ``i < j``, sorted.

    ``numbers`` (n_atoms,) atomic numbers; ``positions`` (n_atoms, 3) angstrom; atoms are bonded
    when closer than ``factor`` times the sum of their covalent radii.
    """
    factor = float(config.get("label.topology.covalent-radius-factor", factor))
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (len(numbers), 3):
        raise ValueError(f"positions must have shape ({len(numbers)}, 3), got {positions.shape}")
    radii = covalent_radii_angstrom(numbers)
    i, j = np.triu_indices(len(numbers), k=1)
    distances = np.linalg.norm(positions[i] - positions[j], axis=1)
    threshold = factor * (radii[i] + radii[j])
    both_hydrogen = (numbers[i] == 1) & (numbers[j] == 1)
    threshold[both_hydrogen] = np.maximum(threshold[both_hydrogen], H_H_BOND_ANGSTROM)
    bonded = distances < threshold
    return np.column_stack([i[bonded], j[bonded]]).astype(np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class TopologyComparison:
    """Bonds of the input graph missing from a geometry, and bonds the geometry adds.

    ``broken`` and ``formed`` are tuples of atom-index pairs ``(i, j)`` with ``i < j``.
    """

    broken: tuple[tuple[int, int], ...]
    formed: tuple[tuple[int, int], ...]

    @property
    def changed(self) -> bool:
        return bool(self.broken or self.formed)

    def describe(self, symbols: list[str]) -> str:
        """E.g. ``"broken C0-H5; formed O2-H5"`` (atom symbol + index), or ``""`` if unchanged."""

        def pairs(bonds: tuple[tuple[int, int], ...]) -> str:
            return ", ".join(f"{symbols[i]}{i}-{symbols[j]}{j}" for i, j in bonds)

        parts = []
        if self.broken:
            parts.append(f"broken {pairs(self.broken)}")
        if self.formed:
            parts.append(f"formed {pairs(self.formed)}")
        return "; ".join(parts)


def compare_topology(
    molecule: Molecule, positions: np.ndarray, *, factor: float | None = None
) -> TopologyComparison:
    """Compare the bonds of ``molecule`` with those perceived from ``positions`` (angstrom)."""
    graph = {(int(i), int(j)) for i, j, _ in molecule.bonds.tolist()}
    perceived = {
        (int(i), int(j)) for i, j in perceive_bonds(molecule.numbers, positions, factor=factor)
    }
    return TopologyComparison(
        broken=tuple(sorted(graph - perceived)), formed=tuple(sorted(perceived - graph))
    )


def topology_changed(
    molecule: Molecule, positions: np.ndarray, *, factor: float | None = None
) -> bool:
    """True when the bonds perceived from ``positions`` differ from the graph of ``molecule``."""
    return compare_topology(molecule, positions, factor=factor).changed
