"""GFN2-xTB labels through tblite: geometry relaxation with an ASE optimizer, then a single point.

The relaxation drives tblite's ASE calculator with an ASE optimizer (BFGS by default) until the
largest atomic force is below ``fmax`` (default 0.01 eV/angstrom = 1.9e-4 hartree/bohr, close to
xtb's ``vtight`` gradient criterion of 2e-4 hartree/bohr). The energy of the label is then a
fresh single point at the final geometry with ``tblite.interface.Calculator`` (superposition of
atomic densities as the guess), so it does not depend on the optimization path: the same
geometry always gives the same energy, to the SCF's precision.

Free-atom energies (:meth:`XTBLabeler.atom_energies`, for atomization energies) are tblite
single points on one atom with ``uhf`` = its ground-state unpaired electrons and the same
method and SCF settings. Plain GFN2-xTB has no spin-dependent term, so the spin state changes
the energy only through the Fermi-smeared occupations (an electronic-entropy term of a few
1e-3 hartree at 300 K); tblite's optional spin polarization is used neither for molecules nor
for atoms. GFN2-xTB atomization energies are large: 123 kcal/mol for H2 and 507 for CH4 at
GFN2-xTB geometries (experiment, De: 109.5 and 420).
"""

from __future__ import annotations

import importlib.metadata
import io

import numpy as np

from amondask import config
from amondask.chem.molecule import Molecule
from amondask.errors import LabelError, LabelerSetupError, SCFConvergenceError
from amondask.label._threads import limited_threads
from amondask.label.base import (
    CachingLabeler,
    Label,
    LevelOfTheory,
    cell_arguments,
    finish_label,
    require_closed_shell,
)

XTB_METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")
DEFAULT_ELECTRONIC_TEMPERATURE_KELVIN = 300.0
"""tblite's (and xtb's) default Fermi smearing temperature; other values appear in the level."""
OPTIMIZERS = ("BFGS", "LBFGS", "FIRE", "BFGSLineSearch")


def _tblite_version() -> str:
    try:
        from tblite.library import get_version

        return ".".join(str(part) for part in get_version())
    except Exception:  # pragma: no cover - fall back to the wheel's metadata
        return importlib.metadata.version("tblite")


class XTBLabeler(CachingLabeler):
    """GFN2-xTB energies (hartree) at geometries relaxed with GFN2-xTB, computed by tblite.

    Args:
        method: ``GFN2-xTB`` (default), ``GFN1-xTB`` or ``IPEA1-xTB``.
        relax: relax the geometry first (default True); False gives a single point at the input.
        fmax_ev_per_angstrom: convergence threshold on the largest atomic force, eV/angstrom.
        max_steps: relaxation step limit; reaching it gives status ``not-converged``.
        max_steps_per_atom: the limit grows to this many steps per atom for large molecules
            (the limit is ``max(max_steps, max_steps_per_atom * n_atoms)``; 0: a fixed limit).
        optimizer: ASE optimizer name: ``BFGS``, ``LBFGS``, ``FIRE`` or ``BFGSLineSearch``.
        accuracy: tblite accuracy multiplier (smaller is tighter; 1.0 is tblite's default).
        scf_max_iterations: SCF iteration limit; an SCF that does not converge raises
            SCFConvergenceError for that molecule.
        electronic_temperature_kelvin: Fermi smearing temperature (tblite default 300 K).
        threads: OpenMP/BLAS threads while labeling (default 1: one task per core).
        check_topology: compare bonds before and after relaxation (default True).
        cache_size: labels kept in memory per process, keyed by structure.

    Every argument defaults to ``None``, filled from ``amondask.label.xtb.*``.
    """

    name = "xtb"

    def __init__(
        self,
        method: str | None = None,
        *,
        relax: bool | None = None,
        fmax_ev_per_angstrom: float | None = None,
        max_steps: int | None = None,
        max_steps_per_atom: int | None = None,
        optimizer: str | None = None,
        accuracy: float | None = None,
        scf_max_iterations: int | None = None,
        electronic_temperature_kelvin: float | None = None,
        threads: int | None = None,
        check_topology: bool = True,
        cache_size: int = 256,
        embed_seed: int | None = None,
    ) -> None:
        super().__init__(cache_size=cache_size, embed_seed=embed_seed)
        try:
            import ase  # noqa: F401
            from tblite.interface import Calculator  # noqa: F401
        except ImportError as exc:
            raise LabelerSetupError(
                f"the xtb labeler needs tblite and ase ({exc}); install them with "
                "`pip install tblite ase`"
            ) from exc
        self.method = str(config.get("label.xtb.method", method))
        known = {m.lower(): m for m in XTB_METHODS}
        if self.method.lower() not in known:
            raise LabelerSetupError(
                f"unknown xTB method {self.method!r}; choose one of {', '.join(XTB_METHODS)}"
            )
        self.method = known[self.method.lower()]
        self.relax = bool(config.get("label.xtb.relax", relax))
        self.fmax_ev_per_angstrom = float(
            config.get("label.xtb.fmax-ev-per-angstrom", fmax_ev_per_angstrom)
        )
        self.max_steps = int(config.get("label.xtb.max-steps", max_steps))
        self.max_steps_per_atom = int(
            config.get("label.xtb.max-steps-per-atom", max_steps_per_atom)
        )
        self.optimizer = str(config.get("label.xtb.optimizer", optimizer))
        if self.optimizer not in OPTIMIZERS:
            raise LabelerSetupError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.fmax_ev_per_angstrom <= 0 or self.max_steps < 1 or self.max_steps_per_atom < 0:
            raise LabelerSetupError(
                "fmax_ev_per_angstrom must be > 0, max_steps >= 1 and max_steps_per_atom >= 0; "
                f"got {self.fmax_ev_per_angstrom}, {self.max_steps} and {self.max_steps_per_atom}"
            )
        self.accuracy = float(config.get("label.xtb.accuracy", accuracy))
        self.scf_max_iterations = int(
            config.get("label.xtb.scf-max-iterations", scf_max_iterations)
        )
        self.electronic_temperature_kelvin = float(
            config.get("label.xtb.electronic-temperature-kelvin", electronic_temperature_kelvin)
        )
        self.threads = int(config.get("label.xtb.threads", threads))
        self.check_topology = bool(check_topology)
        self.program_version = _tblite_version()
        if self.relax:
            ase_version = importlib.metadata.version("ase")
            geometry = (
                f"relaxed, fmax {self.fmax_ev_per_angstrom:g} eV/A (ASE {ase_version} "
                f"{self.optimizer})"
            )
        else:
            geometry = "input"
        # The electronic temperature hardly moves closed-shell molecules but shifts open-shell
        # free atoms (1.8e-3 hartree for C at 300 K, see _atom_energy); a non-default one is
        # part of the level, so that stored atom energies are never reused across temperatures.
        details = ""
        if self.electronic_temperature_kelvin != DEFAULT_ELECTRONIC_TEMPERATURE_KELVIN:
            details = f"electronic temperature {self.electronic_temperature_kelvin:g} K"
        self._level = LevelOfTheory(
            method=self.method,
            basis="",
            program="tblite",
            program_version=self.program_version,
            geometry=geometry,
            details=details,
        )

    @property
    def implemented_properties(self) -> tuple[str, ...]:
        return ("energy", "positions") if self.relax else ("energy",)

    # ---- the calculation -----------------------------------------------------------------
    def single_point(
        self,
        numbers: np.ndarray,
        positions_angstrom: np.ndarray,
        charge: int = 0,
        unpaired_electrons: int = 0,
        lattice_angstrom: np.ndarray | None = None,
        pbc: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """Energy (hartree) and gradient ((n_atoms, 3) hartree/bohr) from a fresh tblite run.

        ``unpaired_electrons`` is tblite's ``uhf`` (2S, multiplicity - 1). With
        ``lattice_angstrom`` ((3, 3) cell vectors) and ``pbc`` ((3,) bool), the energy of the
        periodic system per cell (tblite samples the Gamma point only: use a cell large enough
        for the energy per atom to converge). Raises SCFConvergenceError when tblite's SCF
        fails.
        """
        from ase.units import Bohr
        from tblite.interface import Calculator

        periodic = {}
        if lattice_angstrom is not None:
            periodic = {
                "lattice": np.asarray(lattice_angstrom, dtype=np.float64) / Bohr,
                "periodic": np.asarray(pbc if pbc is not None else [True] * 3, dtype=bool),
            }
        calculator = Calculator(
            self.method,
            np.asarray(numbers),
            np.asarray(positions_angstrom, dtype=np.float64) / Bohr,
            charge=float(charge),
            uhf=int(unpaired_electrons),
            **periodic,
        )
        calculator.set("verbosity", 0)
        calculator.set("accuracy", self.accuracy)
        calculator.set("max-iter", self.scf_max_iterations)
        calculator.set("temperature", self.electronic_temperature_kelvin * _KELVIN_TO_HARTREE)
        try:
            result = calculator.singlepoint()
        except RuntimeError as exc:  # tblite's TBLiteRuntimeError derives from RuntimeError
            raise SCFConvergenceError(f"tblite {self.method} single point failed: {exc}") from exc
        return float(result.get("energy")), np.asarray(result.get("gradient"))

    def step_limit(self, n_atoms: int) -> int:
        """The relaxation step limit for a molecule of ``n_atoms`` atoms: ``max_steps``, or
        ``max_steps_per_atom`` per atom when that is more (a 177-atom peptide took 650 BFGS
        steps from an MMFF94 geometry; small amons take tens)."""
        return max(self.max_steps, self.max_steps_per_atom * int(n_atoms))

    def _relax(self, molecule: Molecule) -> tuple[np.ndarray, int, bool]:
        """Relaxed positions (angstrom), steps taken, converged flag."""
        import ase.optimize
        from ase import Atoms
        from ase.calculators.calculator import CalculationFailed
        from tblite.ase import TBLite

        atoms = Atoms(numbers=molecule.numbers, positions=molecule.positions)
        atoms.calc = TBLite(
            method=self.method,
            charge=float(molecule.charge),
            multiplicity=1,
            accuracy=self.accuracy,
            max_iterations=self.scf_max_iterations,
            electronic_temperature=self.electronic_temperature_kelvin,
            verbosity=0,
        )
        optimizer_class = getattr(ase.optimize, self.optimizer)
        optimizer = optimizer_class(atoms, logfile=io.StringIO())
        try:
            converged = bool(
                optimizer.run(fmax=self.fmax_ev_per_angstrom, steps=self.step_limit(len(atoms)))
            )
        except CalculationFailed as exc:
            raise SCFConvergenceError(
                f"tblite {self.method} failed during relaxation after {optimizer.nsteps} "
                f"steps: {exc}"
            ) from exc
        positions = atoms.get_positions()
        if not np.all(np.isfinite(positions)):
            raise LabelError("relaxation produced non-finite coordinates")
        return positions, int(optimizer.nsteps), converged

    def _atom_energy(self, atomic_number: int) -> float:
        """GFN2-xTB (this labeler's method and SCF settings) energy of one free atom, hartree.

        tblite's ``uhf`` is set to the ground state's unpaired electrons (C 2, N 3, O 2).
        GFN2-xTB has no spin-dependent term (tblite's optional spin polarization is not used,
        as it is not for the molecules), so the spin state enters only through the orbital
        occupations: with Fermi smearing at ``electronic_temperature_kelvin`` the free
        energy of C with ``uhf=2`` lies k_B T * 1.91 (1.8e-3 hartree at 300 K) above that of
        the smeared ``uhf=0`` occupation, the difference of the occupations' entropies.
        """
        from amondask.label.atoms import unpaired_electrons

        unpaired = unpaired_electrons(atomic_number)
        with limited_threads(self.threads):
            try:
                energy, _ = self.single_point(
                    np.array([atomic_number]), np.zeros((1, 3)), 0, unpaired
                )
            except LabelError:
                raise
            except Exception as exc:  # tblite rejects elements it has no parameters for
                raise LabelError(
                    f"tblite {self.method} cannot compute the free atom Z={atomic_number}: {exc}"
                ) from exc
        return energy

    def _compute(self, molecule: Molecule) -> Label:
        require_closed_shell(molecule)
        cell = cell_arguments(
            molecule, moves_atoms=self.relax, how_to_fix="set amondask.label.xtb.relax false"
        )
        with limited_threads(self.threads):
            try:
                if self.relax:
                    positions, n_steps, converged = self._relax(molecule)
                else:
                    positions, n_steps, converged = np.array(molecule.positions), 0, True
                energy, _ = self.single_point(molecule.numbers, positions, molecule.charge, **cell)
            except LabelError as exc:
                exc.record_id = molecule.id
                raise
        return finish_label(
            molecule,
            energy_hartree=energy,
            positions=positions,
            n_steps=n_steps,
            converged=converged,
            level_of_theory=self.level_of_theory,
            check_topology=self.check_topology and self.relax,
            max_steps=self.step_limit(molecule.n_atoms),
        )


_KELVIN_TO_HARTREE = 3.166811563e-6
"""Boltzmann constant in hartree per kelvin (CODATA 2018)."""
