"""3D geometry for graph-only molecules: RDKit ETKDGv3 embedding, then MMFF94 relaxation.

Deterministic: the same molecule and seed give the same coordinates (RDKit's embedding is
seeded and run single-threaded). When MMFF94 has no parameters for a molecule, UFF is used
instead; when neither applies the ETKDG geometry is kept. Failure to embed raises
:class:`~amondask.errors.GeometryError`.
"""

from __future__ import annotations

import time

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom, rdForceFieldHelpers

from amondask import config
from amondask.chem.molecule import Molecule
from amondask.errors import GeometryError

#: Metadata key recording where generated coordinates come from ("etkdg+mmff94", ...).
COORDINATES_KEY = "coordinates"


def _embed_parameters(
    seed: int, random_coordinates: bool, timeout_s: int = 0
) -> rdDistGeom.EmbedParameters:
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    params.useRandomCoords = random_coordinates
    params.timeout = int(timeout_s)  # seconds per attempt; 0: no limit
    return params


def relax_force_field(mol: Chem.Mol, *, max_iterations: int = 2000) -> str:
    """Relax the first conformer of ``mol`` in place with MMFF94 (or UFF); returns the field used.

    Returns ``"mmff94"``, ``"uff"`` or ``"none"`` when no force field has parameters.
    """
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=max_iterations)
        return "mmff94"
    if rdForceFieldHelpers.UFFHasAllMoleculeParams(mol):
        rdForceFieldHelpers.UFFOptimizeMolecule(mol, maxIters=max_iterations)
        return "uff"
    return "none"


def embed_molecule(
    molecule: Molecule,
    *,
    seed: int | None = None,
    max_attempts: int | None = None,
    relax: bool = True,
) -> Molecule:
    """A copy of ``molecule`` with 3D positions (angstrom) from ETKDGv3 (+ MMFF94 when ``relax``).

    The copy's metadata records the method under ``"coordinates"`` (e.g. ``"etkdg+mmff94"``).

    ``seed`` defaults to ``amondask.geometry.seed``; each further attempt (up to
    ``amondask.geometry.max-attempts``) uses seed + attempt, the last ones from random
    coordinates, which helps with cages and strained rings. Each attempt may take at most
    ``amondask.geometry.embed-timeout-s`` seconds (0: no limit): ETKDG's time grows steeply with
    size (minutes for a few hundred heavy atoms), so an attempt past the budget is given up
    rather than holding a worker. Raises GeometryError on failure or when every attempt timed out.
    """
    seed = int(config.get("geometry.seed", seed))
    max_attempts = int(config.get("geometry.max-attempts", max_attempts))
    timeout_s = int(config.get("geometry.embed-timeout-s"))
    mol = molecule.rdkit_mol
    mol.RemoveAllConformers()
    conformer_id = -1
    timed_out = 0
    for attempt in range(max_attempts):
        random_coordinates = attempt >= max(1, max_attempts - 1)
        params = _embed_parameters(seed + attempt, random_coordinates, timeout_s)
        started = time.monotonic()
        conformer_id = AllChem.EmbedMolecule(mol, params)
        if conformer_id >= 0:
            break
        timed_out += bool(timeout_s) and time.monotonic() - started >= timeout_s
    if conformer_id < 0 and timed_out == max_attempts:
        raise GeometryError(
            f"RDKit ETKDG did not embed this molecule ({mol.GetNumHeavyAtoms()} heavy atoms) "
            f"within the {timeout_s} s per attempt of amondask.geometry.embed-timeout-s "
            f"({max_attempts} attempts); give it with coordinates (SDF/XYZ/PDB) or raise the "
            "limit (0: none)",
            record_id=molecule.id,
            stage="geometry",
        )
    if conformer_id < 0:
        raise GeometryError(
            f"RDKit ETKDG could not embed {molecule.smiles!r} in 3D after {max_attempts} "
            "attempts; give the molecule with coordinates (SDF/XYZ) or raise "
            "amondask.geometry.max-attempts",
            record_id=molecule.id,
            stage="geometry",
        )
    method = "etkdg"
    if relax:
        field = relax_force_field(
            mol, max_iterations=int(config.get("geometry.mmff-max-iterations"))
        )
        method = f"etkdg+{field}" if field != "none" else method
    positions = np.asarray(mol.GetConformer(conformer_id).GetPositions(), dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        raise GeometryError(
            "embedding produced non-finite coordinates; give the molecule with coordinates",
            record_id=molecule.id,
            stage="geometry",
        )
    embedded = molecule.with_positions(positions)
    return Molecule(
        id=embedded.id,
        numbers=embedded.numbers,
        bonds=embedded.bonds,
        formal_charges=embedded.formal_charges,
        positions=embedded.positions,
        metadata={**molecule.metadata, COORDINATES_KEY: method},
    )


def ensure_positions(molecule: Molecule, *, seed: int | None = None) -> Molecule:
    """``molecule`` itself when it has positions, else an embedded copy."""
    return molecule if molecule.has_positions else embed_molecule(molecule, seed=seed)


def closest_contact(positions: np.ndarray) -> float:
    """Smallest interatomic distance in angstrom of an (n, 3) array (inf for n < 2)."""
    positions = np.asarray(positions, dtype=np.float64)
    if len(positions) < 2:
        return float("inf")
    diff = positions[:, None, :] - positions[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    dist[np.diag_indices_from(dist)] = np.inf
    return float(dist.min())
