"""DFT or Hartree-Fock labels with PySCF; optional relaxation with geomeTRIC.

The default, B3LYP/6-31G(2df,p), is the level of QM9. PySCF's ``B3LYP`` uses the VWN-RPA
(VWN3) correlation like Gaussian's, unless PySCF is configured with ``B3LYP_WITH_VWN5``, in
which case the level of theory says ``B3LYP5``. Molecules are closed-shell restricted
calculations only (RHF / RKS); the free-atom reference energies
(:meth:`PySCFLabeler.atom_energies`) are unrestricted (UHF / UKS) in the atom's ground-state
multiplicity, with the same functional, basis, grid and density fitting. When relaxing, the
label's energy is a fresh SCF at the final geometry, so it does not depend on the optimization
path.

PySCF's B3LYP/6-31G(2df,p) does not reproduce QM9's numbers: at QM9's own geometries it is
0.4 (CH4) to 4 (C4H9NO) kcal/mol above QM9's U0 - ZPVE, growing with size
(benchmarks/bench_label.py). The cause is not the VWN flavour (B3LYP with VWN5 is 23-40
kcal/mol off for CH4 and H2CO) and only in part the spherical (5D) vs Cartesian (6D) d shells
of Gaussian's Pople basis sets (6D7F brings H2CO from 2.6 to 1.9 kcal/mol). So the two are
different levels, and their level strings differ: do not mix QM9 labels with PySCF labels in
one model. The free atoms differ too: PySCF's UKS B3LYP/6-31G(2df,p) atoms lie above QM9's
published atomic references by 2e-7 (H), 1.8e-3 (C), 1.0e-3 (N), 4.0e-3 (O) and 2.8e-3 (F)
hartree. H, which has no d shell, agrees, which points at the basis convention (PySCF's pure
5D d shells against Gaussian's 6D default for Pople sets): with all shells Cartesian
(``cart=True``, 6D10F) PySCF's C, N, O, F lie -0.9, -1.4, +0.6 and -1.9e-3 hartree from QM9's.

Periodic cells (issue 13) are labeled with PySCF's PBC module at their own geometry: the energy
per cell, RKS (RHF for ``HF``) at the Gamma point, or KRKS (KRHF) on a Gamma-centred
``kpoint_mesh``, with plane-wave (FFT) density fitting, or Gaussian density fitting when
``density_fitting`` is set. The practical basis is a GTH one with its pseudopotential
(``basis="gth-szv"``, ``pseudo="gth-pbe"``), and the amons then use the same pseudopotential in
the molecular code, so cells and clusters are one model chemistry (SiH4: molecular and in a
10 A box at the Gamma point agree to 0.01 kcal/mol). Diamond Si8 PBE/gth-szv on a 2x2x2 mesh
took 87 s on two cores, on 3x3x3 (1.84 kcal/mol per atom lower) 6 min. Cells periodic in x
and y only (sheets, pbc ``T T F``) are PySCF ``dimension=2`` cells; metals (which need
smearing) are not supported.

Threads and memory: ``threads`` / ``max_memory_mb`` when given, else the configured values,
else, inside a Dask worker, the worker's threads and memory limit per thread, else 1 thread
and 4000 MB.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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

HARTREE_FOCK_NAMES = ("HF", "RHF")
DEFAULT_MEMORY_MB = 4000


def worker_resources() -> tuple[int, int] | None:
    """(threads, memory in MB per task) of the Dask worker running this code, or None outside.

    A task gets all of the worker's memory divided by its thread count, and one thread: the
    worker runs ``nthreads`` tasks at once.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    nthreads = max(1, int(worker.state.nthreads))
    memory_limit = worker.memory_manager.memory_limit
    if not memory_limit:
        return 1, DEFAULT_MEMORY_MB
    return 1, max(500, int(memory_limit / nthreads / 2**20 * 0.8))


_GEOMETRIC_QUIET_INI = """[loggers]
keys=root

[handlers]
keys=

[formatters]
keys=

[logger_root]
level=WARNING
handlers=
"""


@functools.cache
def _quiet_geometric_log_config() -> str:
    """Path of a logging ini that silences geomeTRIC's banner and per-step output."""
    path = os.path.join(tempfile.mkdtemp(prefix="amondask-geometric-"), "log.ini")
    with open(path, "w") as handle:
        handle.write(_GEOMETRIC_QUIET_INI)
    return path


@contextmanager
def _quiet_pseudopotential_integrals() -> Iterator[None]:
    """Silence the UserWarning PySCF's GTH pseudopotential integrals raise on every molecule
    ("Function int1e_r2_origi_sph not found. Set its comp to 1"): it is about an argument
    PySCF passes itself, not about the result."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Function int1e_r\d*_origi\S* not found", category=UserWarning
        )
        yield


def _setup_check(check, problem: str, remedy: str) -> None:
    """Run ``check()``; any exception becomes LabelerSetupError("<problem> (<exc>); <remedy>")."""
    try:
        check()
    except Exception as exc:
        raise LabelerSetupError(f"{problem} ({exc}); {remedy}") from exc


def _kpoint_mesh(value) -> tuple[int, int, int]:
    """A k-point mesh setting as three positive integers: None is (1, 1, 1), n is (n, n, n)."""
    if value is None:
        return (1, 1, 1)
    values = [value] * 3 if isinstance(value, int | float | str) else list(value)
    try:
        mesh = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        mesh = ()
    if len(mesh) != 3 or min(mesh) < 1 or any(float(v) != int(v) for v in values):
        raise LabelerSetupError(
            f"kpoint_mesh must be three positive integers such as [2, 2, 2] (or one), not {value!r}"
        )
    return mesh


class PySCFLabeler(CachingLabeler):
    """Energies (hartree) from PySCF RHF/RKS, optionally at geomeTRIC-relaxed geometries.

    Args:
        method: ``HF`` or a functional PySCF knows (``B3LYP``, ``PBE0``, ``wB97X-D``...).
        basis: a basis set name PySCF knows (``6-31G(2df,p)``, ``def2-SVP``, ``sto-3g``...).
        density_fitting: use density fitting (RI-J/K) with ``auxbasis`` (PySCF's default
            auxiliary basis for the basis when None).
        relax: relax the geometry with geomeTRIC before the final SCF (default False).
        prerelax_xtb: relax with GFN2-xTB (:class:`~amondask.label.xtb.XTBLabeler`, default
            settings) first: a cheap start for ``relax``, or, without ``relax``, a
            DFT-on-xTB-geometry label (``B3LYP/6-31G(2df,p)//GFN2-xTB``).
        max_steps: geomeTRIC step limit; reaching it gives status ``not-converged``.
        conv_tol_hartree: SCF energy convergence.
        grid_level: DFT integration grid level (PySCF ``grids.level``).
        threads, max_memory_mb: per-task resources (see the module docstring).
        scf_max_cycles: SCF iteration limit; not converging raises SCFConvergenceError.
        pseudo: a pseudopotential PySCF knows (``gth-pbe``...) for molecules, free atoms and
            cells alike; None: all-electron.
        kpoint_mesh: (3,) Gamma-centred k-point mesh for periodic cells (1 along
            non-periodic axes); (1, 1, 1) is the Gamma point only.

    Set-up errors (PySCF missing, unknown functional or basis) raise LabelerSetupError here.
    """

    name = "pyscf"

    def __init__(
        self,
        method: str | None = None,
        basis: str | None = None,
        *,
        density_fitting: bool | None = None,
        auxbasis: str | None = None,
        relax: bool | None = None,
        prerelax_xtb: bool = False,
        max_steps: int | None = None,
        conv_tol_hartree: float | None = None,
        grid_level: int | None = None,
        threads: int | None = None,
        max_memory_mb: int | None = None,
        scf_max_cycles: int = 100,
        pseudo: str | None = None,
        kpoint_mesh: tuple[int, int, int] | list[int] | None = None,
        check_topology: bool = True,
        cache_size: int = 256,
        embed_seed: int | None = None,
    ) -> None:
        super().__init__(cache_size=cache_size, embed_seed=embed_seed)
        try:
            import pyscf
            from pyscf import dft, gto
        except ImportError as exc:
            raise LabelerSetupError(
                f"the pyscf labeler needs PySCF ({exc}); install it with "
                "`pip install amondask[dft]`"
            ) from exc
        self.method = str(config.get("label.pyscf.method", method))
        self.basis = str(config.get("label.pyscf.basis", basis))
        self.density_fitting = bool(config.get("label.pyscf.density-fitting", density_fitting))
        self.auxbasis = auxbasis
        self.relax = bool(config.get("label.pyscf.relax", relax))
        self.max_steps = int(config.get("label.pyscf.max-steps", max_steps))
        self.conv_tol_hartree = float(config.get("label.pyscf.conv-tol-hartree", conv_tol_hartree))
        self.grid_level = int(config.get("label.pyscf.grid-level", grid_level))
        self.threads = threads if threads is not None else config.get("label.pyscf.threads")
        self.max_memory_mb = (
            max_memory_mb if max_memory_mb is not None else config.get("label.pyscf.max-memory-mb")
        )
        self.scf_max_cycles = int(scf_max_cycles)
        self.pseudo = config.get("label.pyscf.pseudo", pseudo)
        self.kpoint_mesh = _kpoint_mesh(config.get("label.pyscf.kpoint-mesh", kpoint_mesh))
        self.check_topology = bool(check_topology)
        self.is_hartree_fock = self.method.upper() in HARTREE_FOCK_NAMES
        if not self.is_hartree_fock:
            _setup_check(
                lambda: dft.libxc.parse_xc(self.method),
                f"PySCF does not know the method {self.method!r}",
                "give 'HF' or a functional name such as 'B3LYP', 'PBE0' or 'wB97X-D'",
            )
        _setup_check(
            lambda: gto.basis.load(self.basis, "C"),
            f"PySCF does not know the basis {self.basis!r}",
            "give a basis name from pyscf.gto.basis, e.g. '6-31G(2df,p)', 'def2-SVP' or 'sto-3g'",
        )
        if self.pseudo is not None:
            self.pseudo = str(self.pseudo)
            _setup_check(
                lambda: gto.basis.load_pseudo(self.pseudo, "C"),
                f"PySCF does not know the pseudopotential {self.pseudo!r}",
                "give a name such as 'gth-pbe' (with a GTH basis such as 'gth-szv'), or null "
                "for all-electron calculations",
            )
        if self.relax:
            try:
                import geometric  # noqa: F401
            except ImportError as exc:
                raise LabelerSetupError(
                    "relax=True needs geomeTRIC; install it with `pip install amondask[dft]` "
                    "or pass relax=False"
                ) from exc
        method_name = "HF" if self.is_hartree_fock else self.method
        if method_name.upper() == "B3LYP" and getattr(pyscf.__config__, "B3LYP_WITH_VWN5", False):
            method_name = "B3LYP5"
        details = []
        if not self.is_hartree_fock:
            details.append(f"grid level {self.grid_level}")
        if self.density_fitting:
            details.append(f"density fitting ({self.auxbasis or 'default auxbasis'})")
        if self.pseudo is not None:
            details.append(f"pseudopotential {self.pseudo}")
        if self.kpoint_mesh != (1, 1, 1):
            details.append("cells: k-point mesh " + "x".join(map(str, self.kpoint_mesh)))
        self.prerelax_xtb = bool(prerelax_xtb)
        self._xtb = None
        geometry_steps = []
        if self.prerelax_xtb:
            from amondask.label.xtb import XTBLabeler

            self._xtb = XTBLabeler(relax=True, cache_size=0, check_topology=False)
            geometry_steps.append(
                f"{self._xtb.method} (tblite {self._xtb.program_version}) "
                f"{self._xtb.level.geometry}"
            )
        if self.relax:
            geometry_steps.append(f"relaxed (geomeTRIC {importlib.metadata.version('geometric')})")
        geometry = ", then ".join(geometry_steps) or "input"
        self._level = LevelOfTheory(
            method=method_name,
            basis=self.basis,
            program="pyscf",
            program_version=pyscf.__version__,
            geometry=geometry,
            details=", ".join(details),
        )

    @property
    def implemented_properties(self) -> tuple[str, ...]:
        moves = self.relax or self.prerelax_xtb
        return ("energy", "positions") if moves else ("energy",)

    def _resources(self) -> tuple[int, int]:
        threads, memory_mb = self.threads, self.max_memory_mb
        if threads is None or memory_mb is None:
            worker_threads, worker_memory = worker_resources() or (1, DEFAULT_MEMORY_MB)
            threads = worker_threads if threads is None else threads
            memory_mb = worker_memory if memory_mb is None else memory_mb
        return int(threads), int(memory_mb)

    def mean_field(
        self,
        numbers: np.ndarray,
        positions_angstrom: np.ndarray,
        charge: int = 0,
        unpaired_electrons: int = 0,
    ):
        """The (not yet run) PySCF mean-field object for a structure, with this labeler's settings.

        RHF/RKS for ``unpaired_electrons=0``, else UHF/UKS with PySCF ``spin`` (2S) set to it;
        functional, basis, grid and density fitting are the labeler's either way.
        """
        from pyscf import dft, gto, scf

        _, memory_mb = self._resources()
        mol = gto.M(
            atom=[(int(z), tuple(xyz)) for z, xyz in zip(numbers, positions_angstrom, strict=True)],
            unit="Angstrom",
            basis=self.basis,
            pseudo=self.pseudo,
            charge=int(charge),
            spin=int(unpaired_electrons),
            verbose=0,
            max_memory=memory_mb,
        )
        restricted = int(unpaired_electrons) == 0
        if self.is_hartree_fock:
            mean_field = scf.RHF(mol) if restricted else scf.UHF(mol)
        else:
            kind = dft.RKS if restricted else dft.UKS
            mean_field = kind(mol, xc=self.method)
            mean_field.grids.level = self.grid_level
        mean_field.conv_tol = self.conv_tol_hartree
        mean_field.max_cycle = self.scf_max_cycles
        if self.density_fitting:
            mean_field = mean_field.density_fit(auxbasis=self.auxbasis)
        return mean_field

    def cell_mean_field(
        self,
        numbers: np.ndarray,
        positions_angstrom: np.ndarray,
        lattice_angstrom: np.ndarray,
        pbc: np.ndarray,
        charge: int = 0,
    ):
        """The (not yet run) PySCF PBC mean-field object for a periodic cell.

        ``lattice_angstrom`` (3, 3) holds the cell vectors as rows, ``pbc`` (3,) which of them
        are periodic: all three (a crystal) or the first two (a sheet, PySCF ``dimension=2``).
        Gamma-point RKS/RHF when the k-point mesh is (1, 1, 1) along the periodic axes, else
        KRKS/KRHF on the Gamma-centred mesh; plane-wave density fitting (FFTDF), or Gaussian
        density fitting (GDF) with ``density_fitting``. Raises LabelError for other ``pbc``.
        """
        from pyscf.pbc import dft as pbc_dft
        from pyscf.pbc import gto as pbc_gto
        from pyscf.pbc import scf as pbc_scf

        periodic = np.asarray(pbc, dtype=bool)
        if periodic.all():
            dimension = 3
        elif periodic.tolist() == [True, True, False]:
            dimension = 2
        else:
            raise LabelError(
                "the pyscf labeler takes cells periodic along all three lattice vectors or "
                f"along the first two (pbc 'T T F'), not pbc {periodic.tolist()}; reorder the "
                "lattice vectors so that the non-periodic one is the third"
            )
        _, memory_mb = self._resources()
        cell = pbc_gto.M(
            atom=[(int(z), tuple(xyz)) for z, xyz in zip(numbers, positions_angstrom, strict=True)],
            a=np.asarray(lattice_angstrom, dtype=np.float64),
            unit="Angstrom",
            basis=self.basis,
            pseudo=self.pseudo,
            charge=int(charge),
            dimension=dimension,
            verbose=0,
            max_memory=memory_mb,
        )
        mesh = [
            m if axis_periodic else 1
            for m, axis_periodic in zip(self.kpoint_mesh, periodic, strict=True)
        ]
        if mesh == [1, 1, 1]:
            if self.is_hartree_fock:
                mean_field = pbc_scf.RHF(cell)
            else:
                mean_field = pbc_dft.RKS(cell, xc=self.method)
        else:
            kpoints = cell.make_kpts(mesh)
            if self.is_hartree_fock:
                mean_field = pbc_scf.KRHF(cell, kpts=kpoints)
            else:
                mean_field = pbc_dft.KRKS(cell, kpts=kpoints, xc=self.method)
        mean_field.conv_tol = self.conv_tol_hartree
        mean_field.max_cycle = self.scf_max_cycles
        if self.density_fitting:
            mean_field = mean_field.density_fit(auxbasis=self.auxbasis)
        return mean_field

    def single_point(
        self,
        numbers: np.ndarray,
        positions_angstrom: np.ndarray,
        charge: int = 0,
        unpaired_electrons: int = 0,
        lattice_angstrom: np.ndarray | None = None,
        pbc: np.ndarray | None = None,
    ) -> float:
        """SCF energy in hartree; raises SCFConvergenceError when the SCF does not converge.

        With ``lattice_angstrom`` ((3, 3) cell vectors) and ``pbc`` ((3,) bool), the energy
        per cell of the periodic system (:meth:`cell_mean_field`; closed shell only).
        """
        if lattice_angstrom is not None:
            if unpaired_electrons:
                raise LabelError("the pyscf labeler computes closed-shell periodic cells only")
            mean_field = self.cell_mean_field(
                numbers,
                positions_angstrom,
                lattice_angstrom,
                pbc if pbc is not None else np.ones(3, dtype=bool),
                charge,
            )
        else:
            mean_field = self.mean_field(numbers, positions_angstrom, charge, unpaired_electrons)
        with _quiet_pseudopotential_integrals():
            energy = float(mean_field.kernel())
        if not mean_field.converged:
            raise SCFConvergenceError(
                f"{self.method}/{self.basis} SCF did not converge in {self.scf_max_cycles} "
                "cycles; try another geometry, a smaller conv_tol_hartree or more cycles"
            )
        return energy

    def _relax(self, molecule: Molecule) -> tuple[np.ndarray, int, bool]:
        from pyscf.geomopt import geometric_solver

        mean_field = self.mean_field(molecule.numbers, molecule.positions, molecule.charge)
        steps = [0]

        def count_step(_env: dict) -> None:
            steps[0] += 1

        root = logging.getLogger()
        saved_handlers, saved_level = list(root.handlers), root.level
        try:
            with _quiet_pseudopotential_integrals():
                converged, relaxed = geometric_solver.kernel(
                    mean_field,
                    maxsteps=self.max_steps,
                    callback=count_step,
                    assert_convergence=True,
                    logIni=_quiet_geometric_log_config(),
                )
        except RuntimeError as exc:  # PySCF raises it when an SCF along the way fails
            raise SCFConvergenceError(
                f"{self.method}/{self.basis} relaxation failed after {steps[0]} steps: {exc}"
            ) from exc
        finally:
            # geomeTRIC configures the root logger from its ini file; give it back
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in saved_handlers:
                root.addHandler(handler)
            root.setLevel(saved_level)
        return np.asarray(relaxed.atom_coords(unit="Angstrom")), steps[0], bool(converged)

    def _atom_energy(self, atomic_number: int) -> float:
        """Energy (hartree) of one free atom: UKS (UHF for ``HF``) in its ground-state spin.

        Same functional, basis, grid level, density fitting and SCF convergence as the
        molecules; PySCF ``spin`` = unpaired electrons (C 2, N 3, O 2). The unrestricted
        solution may break the atom's spherical symmetry (one p orbital of O's beta electrons
        filled), as is usual for atomic DFT references.
        """
        from pyscf import lib

        from amondask.label.atoms import unpaired_electrons

        unpaired = unpaired_electrons(atomic_number)
        threads, _ = self._resources()
        with limited_threads(threads), lib.with_omp_threads(threads):
            try:
                return self.single_point(np.array([atomic_number]), np.zeros((1, 3)), 0, unpaired)
            except LabelError:
                raise
            except (RuntimeError, KeyError, ValueError) as exc:
                raise LabelError(
                    f"PySCF {self.method}/{self.basis} cannot compute the free atom "
                    f"Z={atomic_number}: {exc}"
                ) from exc

    def _compute(self, molecule: Molecule) -> Label:
        from pyscf import lib

        require_closed_shell(molecule)
        cell = cell_arguments(
            molecule,
            moves_atoms=self.relax or self.prerelax_xtb,
            how_to_fix="set amondask.label.pyscf.relax false and do not pre-relax with xTB",
        )
        threads, _ = self._resources()
        with limited_threads(threads), lib.with_omp_threads(threads):
            try:
                n_steps, converged = 0, True
                if self._xtb is not None:
                    prerelaxed = self._xtb.label(molecule)
                    if not prerelaxed.converged:
                        raise LabelError(
                            f"the GFN2-xTB pre-relaxation did not converge in "
                            f"{self._xtb.step_limit(molecule.n_atoms)} steps; label without "
                            "prerelax_xtb"
                        )
                    molecule = molecule.with_positions(prerelaxed.positions)
                    n_steps = prerelaxed.n_steps
                if self.relax:
                    positions, relax_steps, converged = self._relax(molecule)
                    n_steps += relax_steps
                else:
                    positions = np.array(molecule.positions)
                energy = self.single_point(molecule.numbers, positions, molecule.charge, **cell)
            except LabelError as exc:
                exc.record_id = molecule.id
                raise
            except (RuntimeError, KeyError, ValueError) as exc:
                # e.g. an element the basis set does not cover
                raise LabelError(
                    f"PySCF {self.method}/{self.basis} failed: {exc}", record_id=molecule.id
                ) from exc
        return finish_label(
            molecule,
            energy_hartree=energy,
            positions=positions,
            n_steps=n_steps,
            converged=converged,
            level_of_theory=self.level_of_theory,
            check_topology=self.check_topology and (self.relax or self.prerelax_xtb),
            max_steps=self.max_steps,
        )
