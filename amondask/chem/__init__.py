"""Molecules: the Molecule type, readers for SMILES/CSV/SDF/XYZ, validation and 3D geometry."""

from amondask.chem.geometry import embed_molecule
from amondask.chem.molecule import Molecule, canonical_key
from amondask.chem.readers import ReadResult, iter_batches, iter_molecules, read_molecules

__all__ = [
    "Molecule",
    "ReadResult",
    "canonical_key",
    "embed_molecule",
    "iter_batches",
    "iter_molecules",
    "read_molecules",
]
