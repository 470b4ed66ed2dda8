"""Free atoms: the ground-state spin of each neutral atom, and element lists for labelers.

A labeler's :meth:`~amondask.label.base.Labeler.atom_energies` computes each isolated neutral
atom in its ground-state spin multiplicity, at the labeler's own level of theory; the energies
turn molecular energies into atomization energies
(:func:`amondask.store.labels.atomization_energy`).
The multiplicities are those of the atoms' experimental ground terms (NIST Atomic Spectra
Database): Hund's rules for the main group (H, B, F, Al, Cl, Br, I doublets; C, O, Si, S, Se
triplets; N, P, As quartets), and the measured terms for the transition metals, where the
4s/3d order breaks the simple filling (Cr 7S, Cu 2S, Nb 6D, Pd 1S, Pt 3D, ...). The
lanthanides (Z = 58-71) are left out: their open 4f shells have no single-determinant
ground state worth a reference energy.
"""

from __future__ import annotations

from collections.abc import Iterable

from amondask.errors import LabelError

# Unpaired electrons (2S) of the neutral atom's ground term, by atomic number.
_UNPAIRED_ELECTRONS: dict[int, int] = {
    1: 1, 2: 0,
    3: 1, 4: 0, 5: 1, 6: 2, 7: 3, 8: 2, 9: 1, 10: 0,
    11: 1, 12: 0, 13: 1, 14: 2, 15: 3, 16: 2, 17: 1, 18: 0,
    19: 1, 20: 0,
    21: 1, 22: 2, 23: 3, 24: 6, 25: 5, 26: 4, 27: 3, 28: 2, 29: 1, 30: 0,
    31: 1, 32: 2, 33: 3, 34: 2, 35: 1, 36: 0,
    37: 1, 38: 0,
    39: 1, 40: 2, 41: 5, 42: 6, 43: 5, 44: 4, 45: 3, 46: 0, 47: 1, 48: 0,
    49: 1, 50: 2, 51: 3, 52: 2, 53: 1, 54: 0,
    55: 1, 56: 0, 57: 1,
    72: 2, 73: 3, 74: 4, 75: 5, 76: 4, 77: 3, 78: 2, 79: 1, 80: 0,
    81: 1, 82: 2, 83: 3, 84: 2, 85: 1, 86: 0,
}  # fmt: skip


def unpaired_electrons(atomic_number: int) -> int:
    """Number of unpaired electrons (2S = multiplicity - 1) of the neutral atom's ground state.

    Raises LabelError for an element without a tabulated ground state (Z < 1, Z > 86, and
    the lanthanides Ce-Lu).
    """
    z = int(atomic_number)
    if z not in _UNPAIRED_ELECTRONS:
        raise LabelError(
            f"no ground-state spin multiplicity is tabulated for element Z={z} (amondask knows "
            "Z = 1-57 and 72-86); atomization energies are not available for molecules with it"
        )
    return _UNPAIRED_ELECTRONS[z]


def multiplicity(atomic_number: int) -> int:
    """Spin multiplicity 2S + 1 of the neutral atom's ground state (H 2, C 3, N 4, O 3)."""
    return unpaired_electrons(atomic_number) + 1


def element_list(elements: Iterable[int]) -> list[int]:
    """Distinct atomic numbers of ``elements`` as sorted Python ints (a ValueError if Z < 1)."""
    found = sorted({int(z) for z in elements})
    if found and found[0] < 1:
        raise ValueError(f"atomic numbers must be >= 1, got {found[0]}")
    return found
