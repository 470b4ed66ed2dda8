"""Labels looked up in a table: a user's CSV/Parquet file, or QM9.

:class:`TableLabeler` reads a table with a key column (SMILES, canonicalized here, or InChIKey)
and an energy column, and labels a molecule by its key; a molecule whose key is not in the
table raises :class:`~amondask.errors.MissingLabelError` (an error row in a batch), and
:meth:`TableLabeler.coverage` reports which keys are missing and which table rows no molecule
asked for. :class:`QM9Labeler` is the same over the QM9 data set shipped by ``qm9pack``
(extra ``qm9``), with QM9's electronic energy U0 - ZPVE at QM9's B3LYP/6-31G(2df,p) geometry.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from amondask.chem.molecule import Molecule, canonical_key
from amondask.errors import LabelError, LabelerSetupError, MissingLabelError
from amondask.label.base import (
    STATUS_OK,
    STATUS_TOPOLOGY_CHANGED,
    CachingLabeler,
    Label,
    LevelOfTheory,
)
from amondask.label.topology import perceive_bonds

HARTREE_PER_UNIT = {
    "hartree": 1.0,
    "kcal/mol": 1.0 / 627.5094740631,
    "kj/mol": 1.0 / 2625.4996394799,
    "ev": 1.0 / 27.211386245988,
}
"""Energy unit -> hartree (CODATA 2018)."""

KEY_TYPES = ("smiles", "inchikey")
DUPLICATE_POLICIES = ("error", "first", "lowest")


@dataclass(frozen=True)
class TableCoverage:
    """Which molecules a table can label.

    Attributes:
        n_molecules: molecules asked about.
        n_found: how many of them have a table entry.
        missing: key -> ids of the molecules with that key and no entry.
        unused_keys: table keys that no molecule asked for, sorted.
    """

    n_molecules: int
    n_found: int
    missing: dict[str, list[str]]
    unused_keys: list[str]

    @property
    def fraction_found(self) -> float:
        return self.n_found / self.n_molecules if self.n_molecules else 1.0

    def summary(self) -> str:
        return (
            f"{self.n_found} of {self.n_molecules} molecules found "
            f"({100 * self.fraction_found:.1f}%), {len(self.missing)} keys missing, "
            f"{len(self.unused_keys)} table keys unused"
        )


def _atom_energy_table(atom_energies: Mapping[int | str, float] | None) -> dict[int, float]:
    """``{Z: hartree}`` from a mapping keyed by atomic number or element symbol."""
    table: dict[int, float] = {}
    periodic_table = Chem.GetPeriodicTable()
    by_symbol = {periodic_table.GetElementSymbol(z): z for z in range(1, 119)}
    for key, value in (atom_energies or {}).items():
        text = str(key).strip()
        z = int(text) if text.isdigit() else by_symbol.get(text.capitalize())
        if z is None:
            raise LabelerSetupError(
                f"atom_energies key {key!r} is neither an atomic number nor an element symbol"
            )
        energy = float(value)
        if z < 1 or not np.isfinite(energy):
            raise LabelerSetupError(
                f"atom_energies[{key!r}] = {value!r}: give a finite energy in hartree for an "
                "element with atomic number >= 1"
            )
        table[z] = energy
    return table


def molecule_inchikey(molecule: Molecule) -> str:
    """Standard InChIKey of a molecule (from its graph; stereo where the structure defines it)."""
    return Chem.MolToInchiKey(molecule.rdkit_mol)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file as a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise LabelerSetupError(f"label table {str(path)!r} does not exist; check the path")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz")):
        return pd.read_csv(path)
    raise LabelerSetupError(
        f"cannot tell the format of label table {str(path)!r}; give a .csv or .parquet file"
    )


class TableLabeler(CachingLabeler):
    """Labels from a table of (key, energy) rows.

    Args:
        table: a path to a CSV/Parquet file, or a DataFrame.
        level_of_theory: the level the table's energies were computed at, stated in full
            (method/basis, program and version, geometry); it names the label group, so two
            tables can share a model only if their strings are equal.
        key_type: ``smiles`` (any valid SMILES; canonicalized to amondask's canonical key) or
            ``inchikey`` (standard InChIKeys, compared with the molecule's).
        key_column: the key column's name (default: ``smiles`` or ``inchikey``).
        energy_column: the energy column's name (default ``energy``).
        energy_unit: ``hartree`` (default), ``kcal/mol``, ``kj/mol`` or ``ev``.
        duplicates: what to do with several rows of one key: ``error`` (default; rows agreeing
            within ``duplicate_tolerance_hartree`` are fine), ``first`` or ``lowest``.
        atom_energies: energies in hartree (whatever ``energy_unit`` is) of the free neutral
            atoms in their ground-state multiplicity at the table's level of theory, keyed by
            atomic number or element symbol, e.g. ``{1: -0.500273, "C": -37.846772}``; they
            make atomization energies possible. Without them :meth:`atom_energies` raises.

    Table rows whose SMILES RDKit cannot parse are listed in ``bad_rows`` (row index, reason),
    not fatal. Labels carry the molecule's own positions (the table has none).
    """

    name = "table"
    needs_positions = False

    def __init__(
        self,
        table: str | os.PathLike | pd.DataFrame,
        *,
        level_of_theory: str,
        key_type: str = "smiles",
        key_column: str | None = None,
        energy_column: str = "energy",
        energy_unit: str = "hartree",
        duplicates: str = "error",
        duplicate_tolerance_hartree: float = 1e-6,
        atom_energies: Mapping[int | str, float] | None = None,
        cache_size: int = 0,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self._atom_energies_hartree = _atom_energy_table(atom_energies)
        if not level_of_theory or not str(level_of_theory).strip():
            raise LabelerSetupError(
                "a table labeler needs level_of_theory: say how the energies were computed, "
                "e.g. 'CCSD(T)/cc-pVTZ | ORCA 5.0.4 | geometry: B3LYP/def2-TZVP'"
            )
        self.key_type = key_type.lower()
        if self.key_type not in KEY_TYPES:
            raise LabelerSetupError(f"key_type must be one of {KEY_TYPES}, got {key_type!r}")
        if energy_unit.lower() not in HARTREE_PER_UNIT:
            raise LabelerSetupError(
                f"unknown energy unit {energy_unit!r}; use one of {', '.join(HARTREE_PER_UNIT)}"
            )
        if duplicates not in DUPLICATE_POLICIES:
            raise LabelerSetupError(
                f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}"
            )
        self.key_column = key_column or self.key_type
        self.energy_column = energy_column
        self.source = "DataFrame" if isinstance(table, pd.DataFrame) else str(table)
        frame = table if isinstance(table, pd.DataFrame) else read_table(table)
        for column in (self.key_column, self.energy_column):
            if column not in frame.columns:
                raise LabelerSetupError(
                    f"label table {self.source!r} has no column {column!r}; its columns are "
                    f"{list(frame.columns)}: pass key_column= / energy_column="
                )
        energies = (
            pd.to_numeric(frame[self.energy_column], errors="coerce").to_numpy(dtype=np.float64)
            * HARTREE_PER_UNIT[energy_unit.lower()]
        )
        self.bad_rows: list[tuple[int, str]] = []
        keys: list[str | None] = []
        for row, raw in enumerate(frame[self.key_column].tolist()):
            key, reason = self._table_key(raw)
            if key is not None and not np.isfinite(energies[row]):
                key, reason = None, f"energy {frame[self.energy_column].iloc[row]!r} not a number"
            if key is None:
                self.bad_rows.append((row, reason))
            keys.append(key)
        self._rows = self._index(keys, energies, duplicates, duplicate_tolerance_hartree)
        self._energies = energies
        self._level_string = str(level_of_theory).strip()

    # ---- table construction ----------------------------------------------------------------
    def _table_key(self, raw: object) -> tuple[str | None, str]:
        if not isinstance(raw, str) or not raw.strip():
            return None, f"empty key {raw!r}"
        if self.key_type == "inchikey":
            return raw.strip().upper(), ""
        mol = Chem.MolFromSmiles(raw.strip())
        if mol is None:
            return None, f"RDKit cannot parse SMILES {raw!r}"
        return canonical_key(mol), ""

    def _index(
        self, keys: list[str | None], energies: np.ndarray, duplicates: str, tolerance: float
    ) -> dict[str, int]:
        rows: dict[str, int] = {}
        conflicts: list[str] = []
        for row, key in enumerate(keys):
            if key is None:
                continue
            previous = rows.get(key)
            if previous is None:
                rows[key] = row
            elif duplicates == "lowest":
                if energies[row] < energies[previous]:
                    rows[key] = row
            elif duplicates == "error" and abs(energies[row] - energies[previous]) > tolerance:
                conflicts.append(f"{key} (rows {previous} and {row})")
        if conflicts:
            raise LabelerSetupError(
                f"label table {self.source!r} has {len(conflicts)} keys with different energies, "
                f"e.g. {', '.join(conflicts[:5])}; remove the duplicates or pass "
                "duplicates='lowest' or 'first'"
            )
        return rows

    # ---- the Labeler interface --------------------------------------------------------------
    @property
    def level_of_theory(self) -> str:
        return self._level_string

    @property
    def implemented_properties(self) -> tuple[str, ...]:
        return ("energy",)

    @property
    def keys(self) -> list[str]:
        """The table's keys (canonical SMILES or InChIKeys), sorted."""
        return sorted(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def molecule_key(self, molecule: Molecule) -> str:
        """The key a molecule is looked up by."""
        return molecule.key if self.key_type == "smiles" else molecule_inchikey(molecule)

    def row_of(self, molecule: Molecule) -> int | None:
        """The table row labeling ``molecule``, or None."""
        return self._rows.get(self.molecule_key(molecule))

    def _compute(self, molecule: Molecule) -> Label:
        key = self.molecule_key(molecule)
        row = self._rows.get(key)
        if row is None:
            raise MissingLabelError(
                f"no entry for {key!r} in label table {self.source!r}; add it to the table or "
                "label the molecule with a computing labeler (xtb, pyscf)",
                record_id=molecule.id,
            )
        return Label(
            energy_hartree=self._energies[row],
            positions=molecule.positions,
            converged=True,
            n_steps=0,
            wall_time_s=0.0,
            status=STATUS_OK,
            message=f"table row {row}",
            level_of_theory=self.level_of_theory,
            molecule_id=molecule.id,
        )

    def atom_energies(self, elements: Iterable[int]) -> dict[int, float]:
        """The given free-atom energies ``{Z: hartree}`` of ``elements``.

        Raises LabelError naming the missing elements when the table was built without
        ``atom_energies`` for all of them.
        """
        from amondask.label.atoms import element_list

        wanted = element_list(elements)
        missing = [z for z in wanted if z not in self._atom_energies_hartree]
        if missing:
            symbols = ", ".join(Chem.GetPeriodicTable().GetElementSymbol(z) for z in missing)
            raise LabelError(
                f"label table {self.source!r} has no free-atom energy for {symbols}; pass "
                "atom_energies={Z: hartree, ...} (the neutral atoms in their ground-state "
                "multiplicity at the table's level of theory) to TableLabeler to get "
                "atomization energies"
            )
        return {z: self._atom_energies_hartree[z] for z in wanted}

    def coverage(self, molecules: Iterable[Molecule]) -> TableCoverage:
        """Which of ``molecules`` the table labels, which keys it lacks, which rows go unused."""
        missing: dict[str, list[str]] = {}
        used: set[str] = set()
        n_molecules = n_found = 0
        for molecule in molecules:
            n_molecules += 1
            key = self.molecule_key(molecule)
            if key in self._rows:
                n_found += 1
                used.add(key)
            else:
                missing.setdefault(key, []).append(molecule.id)
        unused = sorted(set(self._rows) - used)
        return TableCoverage(n_molecules, n_found, missing, unused)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} keys)"


QM9_ATOM_ENERGIES_HARTREE = {
    1: -0.500273,
    6: -37.846772,
    7: -54.583861,
    8: -75.064579,
    9: -99.718730,
}
"""QM9's published free-atom energies (B3LYP/6-31G(2df,p), Gaussian 09; the U0 column of its
atomref table, which for an atom is the electronic energy: no vibrations, so no ZPVE), hartree."""

QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
QM9_COLUMNS = [
    "Index",
    "SMILES",
    "Stoichiometry",
    "Elements",
    "ZPVE_au",
    "InternalEnergy_0K_au",
    "XYZ_Ang",
]


def qm9_data_directory() -> Path:
    """The directory of qm9pack's CSV files; LabelerSetupError when qm9pack is missing."""
    try:
        import qm9pack
    except ImportError as exc:
        raise LabelerSetupError(
            "the qm9 labeler needs qm9pack; install it with `pip install amondask[qm9]`"
        ) from exc
    return Path(qm9pack.__file__).parent / "data"


def read_qm9(max_heavy_atoms: int | None = None) -> pd.DataFrame:
    """QM9 as a DataFrame (the QM9_COLUMNS plus n_heavy and energy_hartree = U0 - ZPVE),
    optionally only the molecules with at most ``max_heavy_atoms`` heavy atoms."""
    directory = qm9_data_directory()
    frames = [pd.read_csv(directory / name, usecols=QM9_COLUMNS) for name in QM9_FILES]
    qm9 = pd.concat(frames, ignore_index=True)
    # Stoichiometry is "[H, C, N, O, F]" counts
    counts = qm9["Stoichiometry"].str.strip("[]").str.split(",", expand=True).astype(int)
    qm9["n_heavy"] = counts.iloc[:, 1:].sum(axis=1)
    if max_heavy_atoms is not None:
        qm9 = qm9[qm9["n_heavy"] <= int(max_heavy_atoms)].reset_index(drop=True)
    qm9["energy_hartree"] = qm9["InternalEnergy_0K_au"] - qm9["ZPVE_au"]
    return qm9


@functools.lru_cache(maxsize=4)
def _qm9_table(max_heavy_atoms: int | None, duplicates: str) -> TableLabeler:
    """The QM9 key table for these options, built once per process."""
    qm9 = read_qm9(max_heavy_atoms)
    version = importlib.metadata.version("qm9pack")
    level = LevelOfTheory(
        method="B3LYP",
        basis="6-31G(2df,p)",
        program="QM9",
        program_version=f"qm9pack-{version}",
        geometry="relaxed",
        details="Gaussian 09; electronic energy = U0 - ZPVE",
    )
    table = TableLabeler(
        qm9,
        level_of_theory=str(level),
        key_type="smiles",
        key_column="SMILES",
        energy_column="energy_hartree",
        duplicates=duplicates,
    )
    table.qm9 = qm9
    table.qm9pack_version = version
    table.source = f"QM9 (qm9pack {version})"
    table._level = level
    return table


def _rebuild_qm9_labeler(options: dict) -> QM9Labeler:
    return QM9Labeler(**options)


class QM9Labeler(TableLabeler):
    """QM9's electronic energies (U0 - ZPVE, hartree) for molecules that are in QM9.

    QM9 (Ramakrishnan et al., Sci. Data 1, 140022 (2014)) was computed with B3LYP/6-31G(2df,p)
    in Gaussian 09 at relaxed geometries; the level of theory says so and is *not* equal to
    PySCF's B3LYP/6-31G(2df,p), which differs by 0.4-4 kcal/mol at QM9's geometries (see
    :mod:`amondask.label.pyscf`). QM9 lacks many small molecules (ethylene, methylamine): it
    holds only about 58% of the N_I = 7 amons of QM9's own molecules, so it cannot label an
    amon set alone; :meth:`coverage` says which keys are missing. Molecules are matched by
    canonical key (no stereo), so stereoisomers share a key: the lowest energy is taken
    (``duplicates``).

    With ``positions="qm9"`` (default) the label carries QM9's geometry in the molecule's atom
    order, found by matching the molecule's graph onto the bonds perceived from QM9's
    coordinates; when QM9's geometry does not have the molecule's bonds the label's status is
    ``topology-changed``. ``positions="input"`` keeps the molecule's own positions.
    ``max_heavy_atoms`` restricts the table (amons have at most N_I heavy atoms).
    :meth:`atom_energies` gives QM9's own atomic references (:data:`QM9_ATOM_ENERGIES_HARTREE`).
    """

    name = "qm9"

    def __init__(
        self,
        *,
        max_heavy_atoms: int | None = None,
        positions: str = "qm9",
        duplicates: str = "lowest",
        cache_size: int = 0,
    ) -> None:
        if positions not in ("qm9", "input"):
            raise LabelerSetupError(f"positions must be 'qm9' or 'input', got {positions!r}")
        # The table (about 7 s to build for all of QM9) is built once per process and shared
        # by every QM9Labeler with the same options; pickles carry only the options, so a
        # Dask task that ships a QM9Labeler ships a few bytes.
        shared = _qm9_table(max_heavy_atoms, duplicates)
        self.__dict__.update(shared.__dict__)
        self._cache = type(self._cache)()
        self._cache_size = int(cache_size)
        self._options = {
            "max_heavy_atoms": max_heavy_atoms,
            "positions": positions,
            "duplicates": duplicates,
            "cache_size": cache_size,
        }
        self.positions_from = positions
        self._atom_energies_hartree = dict(QM9_ATOM_ENERGIES_HARTREE)

    def __reduce__(self):
        return (_rebuild_qm9_labeler, (self._options,))

    def qm9_index(self, molecule: Molecule) -> int | None:
        """QM9's molecule index (the ``Index`` column, 1-based) labeling ``molecule``, or None."""
        row = self.row_of(molecule)
        return None if row is None else int(self.qm9["Index"].iloc[row])

    def _compute(self, molecule: Molecule) -> Label:
        label = super()._compute(molecule)
        row = self.row_of(molecule)
        message = f"QM9 index {int(self.qm9['Index'].iloc[row])}"
        if self.positions_from == "input":
            return replace(label, message=message)
        numbers, positions = qm9_structure(self.qm9["XYZ_Ang"].iloc[row], self.qm9, row)
        mapped = map_positions(molecule, numbers, positions)
        if mapped is None:
            return replace(
                label,
                positions=None,
                status=STATUS_TOPOLOGY_CHANGED,
                message=f"{message}: the bonds of QM9's geometry differ from the molecule's graph",
            )
        return replace(label, positions=mapped, message=message)


def qm9_structure(xyz_text: str, qm9: pd.DataFrame, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers (n_atoms,) and positions (n_atoms, 3) angstrom of row ``row`` of ``qm9``.

    ``xyz_text`` is the row's XYZ_Ang field (a few hold a bare ``0.``, which literal_eval
    reads); the element order comes from the ``Elements`` column.
    """
    positions = np.array(ast.literal_eval(xyz_text), dtype=np.float64)
    symbols = ast.literal_eval(qm9["Elements"].iloc[row])
    table = Chem.GetPeriodicTable()
    numbers = np.array([table.GetAtomicNumber(symbol) for symbol in symbols], dtype=np.int64)
    return numbers, positions


def map_positions(
    molecule: Molecule, numbers: np.ndarray, positions: np.ndarray
) -> np.ndarray | None:
    """``positions`` (of atoms ``numbers``, another order) re-ordered to ``molecule``'s atoms.

    The molecule's connectivity (bond orders ignored) is matched onto the bonds perceived from
    ``positions``; returns None when the atoms or the connectivity do not match.
    """
    if len(numbers) != molecule.n_atoms or sorted(numbers.tolist()) != sorted(
        molecule.numbers.tolist()
    ):
        return None
    perceived = perceive_bonds(numbers, positions)
    if len(perceived) != len(molecule.bonds):
        return None
    target = _skeleton(numbers, perceived)
    query = _skeleton(molecule.numbers, molecule.bonds[:, :2])
    match = target.GetSubstructMatch(query)
    if len(match) != molecule.n_atoms:
        return None
    return positions[list(match)]


def _skeleton(numbers: np.ndarray, pairs: np.ndarray) -> Chem.Mol:
    """An unsanitized molecule of the atoms and single bonds: connectivity only."""
    rw = Chem.RWMol()
    for z in numbers.tolist():
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for i, j in pairs.tolist():
        rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol
