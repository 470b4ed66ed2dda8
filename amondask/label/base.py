"""The labeling contract: :class:`Label`, :class:`LevelOfTheory` and the :class:`Labeler` protocol.

A labeler turns one :class:`~amondask.chem.Molecule` into one :class:`Label`: an energy in
hartree at a stated level of theory, the geometry it belongs to, and a status. Set-up problems
(program missing, unknown method or basis) raise at construction; problems with one molecule
(SCF not converged, no 3D geometry) raise a :class:`~amondask.errors.LabelError`, which
:func:`amondask.label.label_many` turns into a failed label plus an error row.

Status values:

``ok``
    converged, and the relaxed structure has the input's bonds.
``topology-changed``
    converged, but bonds perceived from the relaxed geometry differ from the input graph
    (an H migrated, a ring opened); left out of training by default.
``not-converged``
    the relaxation stopped at its step limit; the energy is that of the last geometry.
``failed``
    no energy (``energy_hartree`` is NaN); ``message`` says why.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from amondask.chem.molecule import Molecule
from amondask.errors import GeometryError, LabelError, MixedLevelsError

STATUS_OK = "ok"
STATUS_TOPOLOGY_CHANGED = "topology-changed"
STATUS_NOT_CONVERGED = "not-converged"
STATUS_FAILED = "failed"
STATUSES = (STATUS_OK, STATUS_TOPOLOGY_CHANGED, STATUS_NOT_CONVERGED, STATUS_FAILED)
TRAINABLE_STATUSES = frozenset({STATUS_OK})
"""Statuses whose labels enter training by default."""


@dataclass(frozen=True)
class LevelOfTheory:
    """What a label's energy means: method, basis, program and version, and the geometry protocol.

    ``str(level)`` is the canonical level-of-theory string, e.g.
    ``"B3LYP/6-31G(2df,p) | pyscf 2.14.0 | geometry: input | grid level 3"``; two labels may be
    combined in one model only when these strings are equal. ``basis`` is empty for methods
    with a built-in basis (GFN2-xTB); ``details`` holds settings that change the numbers
    (integration grid, density fitting).
    """

    method: str
    basis: str
    program: str
    program_version: str
    geometry: str
    details: str = ""

    def __str__(self) -> str:
        method = f"{self.method}/{self.basis}" if self.basis else self.method
        text = f"{method} | {self.program} {self.program_version} | geometry: {self.geometry}"
        return f"{text} | {self.details}" if self.details else text


def level_slug(level_of_theory: str) -> str:
    """A path-safe name for a level-of-theory string (for Zarr groups such as ``labels/<slug>``).

    Lower case; runs of characters other than letters, digits, ``.``, ``_`` and ``-`` become one
    ``_``. Different levels give different slugs in practice (the mapping keeps every letter
    and digit in order), but store the full string next to the slug.

    >>> level_slug("B3LYP/6-31G(2df,p) | pyscf 2.14.0 | geometry: input")
    'b3lyp_6-31g_2df_p_pyscf_2.14.0_geometry_input'
    """
    return re.sub(r"[^a-z0-9._-]+", "_", level_of_theory.lower()).strip("_")


@dataclass(frozen=True, eq=False)
class Label:
    """The result of labeling one molecule.

    Attributes:
        energy_hartree: total electronic energy in hartree (NaN when ``status == "failed"``).
        positions: (n_atoms, 3) float64 angstrom, the geometry the energy belongs to (the relaxed
            one when the labeler relaxes), in the molecule's atom order; None when unknown.
        converged: True when the SCF and (if any) the relaxation converged.
        n_steps: relaxation steps taken (0 for single points and table look-ups).
        wall_time_s: wall time of the labeling in seconds, embedding included.
        status: one of ``ok``, ``topology-changed``, ``not-converged``, ``failed``.
        message: free text: why it failed, which bonds changed, where a table value came from.
        level_of_theory: the labeler's level-of-theory string.
        molecule_id: the id of the labeled molecule.
    """

    energy_hartree: float
    positions: np.ndarray | None
    converged: bool
    n_steps: int
    wall_time_s: float
    status: str
    message: str
    level_of_theory: str
    molecule_id: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.positions is not None:
            positions = np.array(self.positions, dtype=np.float64, copy=True)
            if positions.ndim != 2 or positions.shape[1] != 3:
                raise ValueError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
            positions.setflags(write=False)
            object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "energy_hartree", float(self.energy_hartree))
        object.__setattr__(self, "n_steps", int(self.n_steps))
        object.__setattr__(self, "wall_time_s", float(self.wall_time_s))
        object.__setattr__(self, "converged", bool(self.converged))

    @property
    def ok(self) -> bool:
        """True when the label may enter training by default (status ``ok``)."""
        return self.status in TRAINABLE_STATUSES

    @classmethod
    def failed(
        cls,
        message: str,
        *,
        level_of_theory: str,
        molecule_id: str = "",
        wall_time_s: float = 0.0,
    ) -> Label:
        """A label that carries no energy, only the reason."""
        return cls(
            energy_hartree=float("nan"),
            positions=None,
            converged=False,
            n_steps=0,
            wall_time_s=wall_time_s,
            status=STATUS_FAILED,
            message=message,
            level_of_theory=level_of_theory,
            molecule_id=molecule_id,
        )

    def to_dict(self) -> dict:
        """A plain dict (positions as a nested list or None), e.g. for a table row or JSON."""
        return {
            "molecule_id": self.molecule_id,
            "energy_hartree": self.energy_hartree,
            "positions": None if self.positions is None else self.positions.tolist(),
            "converged": self.converged,
            "n_steps": self.n_steps,
            "wall_time_s": self.wall_time_s,
            "status": self.status,
            "message": self.message,
            "level_of_theory": self.level_of_theory,
        }


@runtime_checkable
class Labeler(Protocol):
    """What every labeler provides.

    ``name`` is the registry name (``xtb``, ``pyscf``, ``table``, ``qm9``); ``level_of_theory``
    pins method, basis, program and version; ``implemented_properties`` lists what ``label``
    computes (``energy``, ``positions`` when it relaxes). ``label`` returns a Label or raises a
    :class:`~amondask.errors.LabelError` for a problem with this one molecule; it never raises
    for set-up problems, which the constructor reports. ``atom_energies`` gives the free-atom
    reference energies (hartree) at the same level, for atomization energies; a labeler that
    has none raises LabelError there (the labeling stage then stores none).
    """

    name: str

    @property
    def level_of_theory(self) -> str: ...

    @property
    def implemented_properties(self) -> tuple[str, ...]: ...

    def label(self, molecule: Molecule) -> Label: ...

    def atom_energies(self, elements: Iterable[int]) -> dict[int, float]:
        """Energies (hartree) of the isolated neutral atoms ``elements`` (atomic numbers).

        Each atom is in its ground-state spin multiplicity
        (:func:`amondask.label.atoms.multiplicity`: H doublet, C triplet, N quartet, ...), at
        exactly this labeler's level of theory, so that ``E(molecule) - sum E(atoms)`` is the
        atomization energy at that level. Returns ``{Z: energy_hartree}`` for the distinct
        elements asked for; raises :class:`~amondask.errors.LabelError` when the labeler
        cannot give one of them (a table without atom energies, an element without a
        tabulated ground state).
        """
        ...


def require_single_level(levels_of_theory: Iterable[str]) -> str:
    """The one level of theory of a set of labels; MixedLevelsError if there are several.

    Training calls this on the labels it is given: energies of different levels (xTB and DFT,
    or one functional in two programs) must never be fitted together.
    """
    found = sorted(set(levels_of_theory))
    if len(found) == 1:
        return found[0]
    if not found:
        raise MixedLevelsError("no labels given; label the molecules first (amondask label)")
    listing = "; ".join(repr(level) for level in found)
    raise MixedLevelsError(
        f"labels of {len(found)} levels of theory were given together: {listing}; train on "
        "one level (select labels/<level>) or relabel everything with one labeler"
    )


def structure_fingerprint(molecule: Molecule, *, decimals: int = 6) -> tuple:
    """A hashable summary of a structure (elements, bonds, charges, rounded positions)."""
    positions = None
    if molecule.positions is not None:
        positions = np.round(molecule.positions, decimals).tobytes()
    return (
        molecule.numbers.tobytes(),
        molecule.bonds.tobytes(),
        molecule.formal_charges.tobytes(),
        positions,
    )


class CachingLabeler:
    """Shared machinery for labelers: embedding of graph-only input, timing, a small result cache.

    Subclasses set ``name`` and ``_level`` and implement ``_compute(molecule) -> Label`` for a
    molecule that has positions (the wall time is filled in here). The cache keys on the
    structure (not the id), holds up to ``cache_size`` labels, and is per process.
    """

    name: str = ""
    _level: LevelOfTheory
    needs_positions: bool = True

    def __init__(self, *, cache_size: int = 256, embed_seed: int | None = None) -> None:
        self._cache: OrderedDict[tuple, Label] = OrderedDict()
        self._cache_size = int(cache_size)
        self._embed_seed = embed_seed
        self._atom_energy_cache: dict[int, float] = {}

    @property
    def level(self) -> LevelOfTheory:
        return self._level

    @property
    def level_of_theory(self) -> str:
        return str(self._level)

    def label(self, molecule: Molecule) -> Label:
        """Label one molecule (embedding it in 3D first when it has no positions).

        Raises LabelError (or another RecordError, e.g. GeometryError) for a per-molecule problem.
        """
        start = time.perf_counter()
        fingerprint = structure_fingerprint(molecule)
        cached = self._cache.get(fingerprint)
        if cached is not None:
            self._cache.move_to_end(fingerprint)
            return replace(cached, molecule_id=molecule.id)
        prepared = molecule
        if self.needs_positions and not molecule.has_positions:
            prepared = _embed(molecule, seed=self._embed_seed)
        result = self._compute(prepared)
        result = replace(result, molecule_id=molecule.id, wall_time_s=time.perf_counter() - start)
        if self._cache_size > 0:
            self._cache[fingerprint] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _compute(self, molecule: Molecule) -> Label:  # pragma: no cover - abstract
        raise NotImplementedError

    def atom_energies(self, elements: Iterable[int]) -> dict[int, float]:
        """Free-atom energies ``{Z: hartree}`` in the ground-state multiplicity, at this level.

        Each element is computed once per labeler instance (``_atom_energy``) and cached; see
        :meth:`Labeler.atom_energies`. Raises LabelError when an element cannot be computed.
        """
        from amondask.label.atoms import element_list

        # setdefault: instances unpickled from before the cache existed still work
        cache = self.__dict__.setdefault("_atom_energy_cache", {})
        energies = {}
        for atomic_number in element_list(elements):
            if atomic_number not in cache:
                cache[atomic_number] = float(self._atom_energy(atomic_number))
            energies[atomic_number] = cache[atomic_number]
        return energies

    def _atom_energy(self, atomic_number: int) -> float:
        """Energy (hartree) of one free neutral atom in its ground-state multiplicity."""
        raise LabelError(
            f"the {self.name or type(self).__name__} labeler does not compute free-atom "
            "energies, so atomization energies are not available at its level of theory"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.level_of_theory!r})"


def _embed(molecule: Molecule, *, seed: int | None) -> Molecule:
    """ETKDG+MMFF 3D structure for a graph-only molecule (via amondask.chem.geometry)."""
    try:
        from amondask.chem.geometry import embed_molecule
    except ImportError:  # pragma: no cover - the geometry module ships with amondask.chem
        return _embed_with_rdkit(molecule, seed=seed)
    return embed_molecule(molecule, seed=seed)


def _embed_with_rdkit(molecule: Molecule, *, seed: int | None) -> Molecule:  # pragma: no cover
    from rdkit.Chem import AllChem

    mol = molecule.rdkit_mol
    params = AllChem.ETKDGv3()
    params.randomSeed = 42 if seed is None else int(seed)
    if AllChem.EmbedMolecule(mol, params) < 0:
        raise GeometryError(
            f"cannot embed {molecule.smiles!r} in 3D; give the molecule with coordinates",
            record_id=molecule.id,
            stage="label",
        )
    AllChem.MMFFOptimizeMolecule(mol)
    return molecule.with_positions(mol.GetConformer().GetPositions())


def require_closed_shell(molecule: Molecule) -> None:
    """Raise LabelError unless the molecule has an even number of electrons."""
    n_electrons = int(molecule.numbers.sum()) - molecule.charge
    if n_electrons % 2:
        raise LabelError(
            f"{molecule.smiles!r} has {n_electrons} electrons (open shell); amondask labels "
            "closed-shell molecules only: check the charges and hydrogens",
            record_id=molecule.id,
        )


def cell_arguments(molecule: Molecule, *, moves_atoms: bool, how_to_fix: str) -> dict:
    """``{"lattice_angstrom": (3, 3), "pbc": (3,)}`` for a periodic query, ``{}`` for a
    molecule: the keyword arguments of a labeler's ``single_point``. A periodic cell is
    labeled at its own geometry, so a labeler that ``moves_atoms`` raises LabelError, saying
    ``how_to_fix`` it."""
    from amondask.chem.periodic import cell_of, is_periodic

    if not is_periodic(molecule):
        return {}
    if moves_atoms:
        raise LabelError(
            f"a periodic cell is labeled at its own geometry: {how_to_fix} (cell relaxation "
            "is not supported)",
            record_id=molecule.id,
        )
    lattice, pbc = cell_of(molecule)
    return {"lattice_angstrom": lattice, "pbc": pbc}


def finish_label(
    molecule: Molecule,
    *,
    energy_hartree: float,
    positions: np.ndarray,
    n_steps: int,
    converged: bool,
    level_of_theory: str,
    check_topology: bool,
    max_steps: int,
) -> Label:
    """The Label for a finished calculation: status from convergence and the topology check."""
    status, message = STATUS_OK, ""
    if not converged:
        status = STATUS_NOT_CONVERGED
        message = f"relaxation not converged in {max_steps} steps; energy of the last geometry"
    elif check_topology:
        from amondask.label.topology import compare_topology

        comparison = compare_topology(molecule, positions)
        if comparison.changed:
            status = STATUS_TOPOLOGY_CHANGED
            message = "bonds changed on relaxation: " + comparison.describe(molecule.symbols)
    return Label(
        energy_hartree=energy_hartree,
        positions=positions,
        converged=converged,
        n_steps=n_steps,
        wall_time_s=0.0,
        status=status,
        message=message,
        level_of_theory=level_of_theory,
        molecule_id=molecule.id,
    )
