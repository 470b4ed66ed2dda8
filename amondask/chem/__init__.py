"""Molecules: the Molecule type, readers for SMILES/CSV/SDF/XYZ, validation and 3D geometry."""

from amondask.chem.molecule import Molecule, canonical_key

__all__ = ["Molecule", "canonical_key"]
