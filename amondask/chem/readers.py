"""Readers: SMILES lists, .smi/.txt, .csv, .sdf/.mol, .xyz/.extxyz and .pdb, behind one entry point.

    >>> result = read_molecules(["CCO", "c1ccccc1", "not-a-smiles"])
    >>> len(result.molecules), len(result.errors)
    (2, 1)

Every reader streams: records are parsed one at a time, so files larger than memory can be read
with :func:`iter_molecules` or in batches with :func:`iter_batches`. A record that cannot be used
becomes an :class:`~amondask.errors.ErrorRecord` (record id, stage, error type, message, location)
and the rest of the input is still read; ``on_error="raise"`` raises the matching
:class:`~amondask.errors.RecordError` instead. Problems with the input as a whole (missing file,
unknown format, a CSV without a SMILES column, no records at all) raise
:class:`~amondask.errors.InputError`. Files may be gzip-compressed (``.gz`` suffix).

Record ids: the id given in the input (second field of a .smi line, the ``id``/``name`` column
of a CSV, the title line of an SDF record, ``id=``/``name=`` in an extended-XYZ comment), else one
made from the file name and the position: ``<stem>:L<line>`` for line-based files,
``<stem>:R<record>`` for SDF records, ``<stem>:F<frame>`` for XYZ frames (so files without ids
can share a workspace), ``<stem>`` for a PDB file of one model and ``<stem>:M<model>`` for each
model of a multi-model one, and ``<first_index + k>`` for the k-th item of a list. Ids must be
unique within one input.

PDB files (proteins, peptides, nucleic acids, ligands) are read with RDKit. With hydrogen atoms,
the bonds and bond orders are perceived from the coordinates, as for XYZ (PDB files carry no
bond orders). Without them (as most crystal structures), the residues must all be standard ones
whose bond orders RDKit knows (:data:`PDB_TEMPLATE_RESIDUES`); the hydrogens are then added at
standard positions, in the neutral forms (COOH, NH2). A PDB file is read whole, one record per
MODEL.
"""

from __future__ import annotations

import csv
import gzip
import io
import shlex
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

from amondask.chem.geometry import embed_molecule
from amondask.chem.molecule import Molecule
from amondask.chem.validate import check_positions, check_size, molecule_from_parsed
from amondask.errors import (
    DuplicateIdError,
    ErrorRecord,
    InputError,
    ParseError,
    RecordError,
    SanitizationError,
)

OnError = Literal["record", "raise"]
Item = Molecule | ErrorRecord
Converter = Callable[["RawRecord"], Molecule]

FORMATS = {
    ".smi": "smiles",
    ".smiles": "smiles",
    ".txt": "smiles",
    ".csv": "csv",
    ".tsv": "csv",
    ".sdf": "sdf",
    ".sd": "sdf",
    ".mol": "sdf",
    ".xyz": "xyz",
    ".extxyz": "xyz",
    ".pdb": "pdb",
    ".ent": "pdb",
}

#: Residues whose bond orders RDKit's PDB reader sets from its own templates: the 20 standard
#: amino acids (and HIS/CYS variants named by protonation), the capping groups ACE and NME.
PDB_TEMPLATE_RESIDUES = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "ACE NME".split()
)

RDLogger.DisableLog("rdApp.*")  # RDKit's own messages go to stderr; ours go to error rows


@dataclass
class ReadResult:
    """What a read gives: the good molecules and an error row for every bad record."""

    molecules: list[Molecule] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)

    @property
    def n_records(self) -> int:
        return len(self.molecules) + len(self.errors)

    def add(self, item: Item) -> None:
        (self.errors if isinstance(item, ErrorRecord) else self.molecules).append(item)

    def __repr__(self) -> str:
        return f"ReadResult({len(self.molecules)} molecules, {len(self.errors)} errors)"


# ---- record sources -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RawRecord:
    """One record before chemistry: an id, where it came from, and a parse function."""

    record_id: str
    location: str
    payload: Any
    metadata: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # a text-level problem found while splitting the file


def _stem(name: str) -> str:
    """A file name without its format suffixes (``q.smi.gz`` -> ``q``), for generated ids."""
    return name.split(".")[0] or name


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def detect_format(path: Path) -> str:
    """The reader name for a path from its suffix (``.gz`` is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InputError(
            f"cannot tell the format of {path} from its suffix; use one of {known} "
            "(optionally .gz) or pass format='smiles'|'csv'|'sdf'|'xyz'|'pdb'"
        )
    return fmt


def _decode(raw: bytes, where: str) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        return text, f"{where} is not valid UTF-8 text ({exc.reason} at byte {exc.start}); " + (
            "save the file as UTF-8"
        )


def _smiles_lines(handle: IO[bytes], name: str) -> Iterator[RawRecord]:
    for line_number, raw in enumerate(handle, start=1):
        text, problem = _decode(raw, f"line {line_number}")
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split(None, 1)
        if line_number == 1 and fields[0].lower() == "smiles":
            continue  # a header line
        record_id = fields[1].strip() if len(fields) > 1 else f"{_stem(name)}:L{line_number}"
        yield RawRecord(record_id, f"{name}:{line_number}", fields[0], problem=problem)


def _find_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str]) -> str:
    lowered = {c.strip().lower(): c for c in columns}
    if wanted is not None:
        if wanted in columns:
            return wanted
        if wanted.lower() in lowered:
            return lowered[wanted.lower()]
        return ""
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return ""


def _csv_rows(
    handle: IO[bytes], name: str, smiles_column: str | None, id_column: str | None
) -> Iterator[RawRecord]:
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
    sample = text.readline().lstrip("\ufeff")  # a byte-order mark, as spreadsheets write
    if not sample.strip():
        raise InputError(f"{name} is empty: it has no header line and no records")
    if any("\udc80" <= ch <= "\udcff" for ch in sample) or "\x00" in sample:
        raise InputError(
            f"the header line of {name} is not UTF-8 text: is it really a CSV file? "
            "Save it as UTF-8 CSV"
        )
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    reader = csv.reader(_chain_first(sample, text), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    smiles_key = _find_column(header, smiles_column, ("smiles", "canonical_smiles", "smi"))
    if not smiles_key:
        shown = ", ".join(h[:30] for h in header[:20]) + (", ..." if len(header) > 20 else "")
        raise InputError(
            f"{name} has no SMILES column (columns: {shown}); name the column "
            "'smiles' or pass smiles_column=... (--smiles-column on the command line)"
        )
    id_key = _find_column(header, id_column, ("id", "name", "mol_id", "identifier"))
    if id_column is not None and not id_key:
        raise InputError(
            f"{name} has no column {id_column!r} for ids (columns: {', '.join(header)})"
        )
    smiles_index = header.index(smiles_key)
    id_index = header.index(id_key) if id_key else None
    previous_line = reader.line_num
    for row in reader:
        line_number = previous_line + 1
        previous_line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        problem = None
        if any("\udc80" <= ch <= "\udcff" for cell in row for ch in cell):
            problem = f"line {line_number} is not valid UTF-8 text; save the file as UTF-8"
            row = [
                cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for cell in row
            ]
        if len(row) != len(header):
            problem = problem or (
                f"line {line_number} has {len(row)} fields, the header has {len(header)}; "
                "check the delimiter and quoting"
            )
        cells = row + [""] * (len(header) - len(row))
        record_id = cells[id_index].strip() if id_index is not None else ""
        record_id = record_id or f"{_stem(name)}:L{line_number}"
        metadata = {
            column: cells[k]
            for k, column in enumerate(header)
            if k not in (smiles_index, id_index) and column
        }
        yield RawRecord(
            record_id,
            f"{name}:{line_number}",
            cells[smiles_index].strip(),
            metadata=metadata,
            problem=problem,
        )


def _damaged_gzip_is_an_input_error(
    records: Iterator[RawRecord], path: Path
) -> Iterator[RawRecord]:
    """``records``, with a damaged or truncated gzip stream raised as an InputError."""
    n_read = 0
    try:
        for record in records:
            n_read += 1
            yield record
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(
            f"{path} is not a readable gzip file after {n_read} records ({exc}); "
            "re-compress it (gzip FILE) or remove the .gz suffix if it is plain text"
        ) from exc


def _chain_first(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def _parse_sd_properties(lines: list[str]) -> dict[str, str]:
    properties: dict[str, str] = {}
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith(">") and "<" in line and ">" in line[1:]:
            name = line[line.index("<") + 1 : line.rindex(">")]
            values = []
            k += 1
            while k < len(lines) and lines[k].strip():
                values.append(lines[k].rstrip())
                k += 1
            properties[name] = "\n".join(values)
        k += 1
    return properties


def _sdf_records(handle: IO[bytes], name: str) -> Iterator[RawRecord]:
    block: list[str] = []
    start_line = 1
    problem: str | None = None
    record_number = 0

    def emit() -> RawRecord:
        nonlocal record_number
        record_number += 1
        title = block[0].strip() if block else ""
        end = next((k for k, line in enumerate(block) if line.startswith("M  END")), None)
        mol_block = "\n".join(block[: end + 1]) if end is not None else "\n".join(block)
        properties = _parse_sd_properties(block[end + 1 :]) if end is not None else {}
        record_id = title or properties.pop("id", "") or f"{_stem(name)}:R{record_number}"
        local_problem = problem
        if end is None and local_problem is None:
            local_problem = (
                f"record {record_number} has no 'M  END' line (truncated or not a molfile); "
                "re-export the structure"
            )
        return RawRecord(
            record_id,
            f"{name}:{start_line}",
            mol_block,
            metadata=properties,
            problem=local_problem,
        )

    line_number = 0
    for line_number, raw in enumerate(handle, start=1):
        text, bad = _decode(raw, f"line {line_number}")
        if bad and problem is None:
            problem = bad
        text = text.rstrip("\r\n")
        if text.strip() == "$$$$":
            yield emit()
            block, problem, start_line = [], None, line_number + 1
        else:
            block.append(text)
    if any(line.strip() for line in block):
        yield emit()


#: The largest atom count an XYZ frame header may announce: beyond it the header is damaged.
MAX_XYZ_ATOMS = 10_000_000


def _parse_extxyz_comment(comment: str) -> dict[str, str]:
    """key=value pairs of an extended-XYZ comment line (values may be quoted)."""
    if "=" not in comment:
        return {}
    try:
        tokens = shlex.split(comment, posix=True)
    except ValueError:
        return {}
    info: dict[str, str] = {}
    for token in tokens:
        if "=" in token:
            key, value = token.split("=", 1)
            info[key.strip()] = value.strip()
    return info


def _xyz_columns(info: dict[str, str]) -> tuple[int, int]:
    """Column indices of the species and the first coordinate, from an extXYZ Properties key."""
    spec = info.get("Properties")
    if not spec:
        return 0, 1
    parts = spec.split(":")
    column = 0
    species = position = None
    for k in range(0, len(parts) - 2, 3):
        prop, _kind, count = parts[k], parts[k + 1], int(parts[k + 2])
        if prop == "species":
            species = column
        elif prop == "pos":
            position = column
        column += count
    if species is None or position is None:
        raise ValueError("Properties must list species and pos")
    return species, position


def _xyz_frames(handle: IO[bytes], name: str) -> Iterator[RawRecord]:
    lines = enumerate(handle, start=1)
    frame_number = 0
    pending: tuple[int, bytes] | None = None  # a frame header found while skipping junk
    while True:
        if pending is not None:
            (line_number, raw), pending = pending, None
        else:
            next_line = next(lines, None)
            if next_line is None:
                return
            line_number, raw = next_line
        text, problem = _decode(raw, f"line {line_number}")
        if not text.strip():
            continue
        frame_number += 1
        location = f"{name}:{line_number}"
        header = text.strip()
        bad_header = None
        if not (header.isascii() and header.isdigit()):  # "³".isdigit(), yet int() fails
            bad_header = (
                f"line {line_number} should hold the atom count of an XYZ frame but reads "
                f"{header[:40]!r}; fix the frame header"
            )
        elif int(header) > MAX_XYZ_ATOMS:
            bad_header = (
                f"line {line_number} announces {header[:40]} atoms, more than any molecule "
                f"amondask reads ({MAX_XYZ_ATOMS}); fix the frame header"
            )
        if bad_header:
            yield RawRecord(f"{_stem(name)}:F{frame_number}", location, None, problem=bad_header)
            # Skip to the next line that is a lone integer: the next frame's header.
            pending = next(((k, line) for k, line in lines if line.strip().isdigit()), None)
            if pending is None:
                return
            continue
        n_atoms = int(header)
        frame_lines = list(islice(lines, n_atoms + 1))
        comment_raw = frame_lines[0][1] if frame_lines else b""
        comment, bad = _decode(comment_raw, f"line {line_number + 1}")
        problem = problem or bad
        info = _parse_extxyz_comment(comment.strip())
        record_id = info.pop("id", "") or info.pop("name", "") or f"{_stem(name)}:F{frame_number}"
        atom_lines = []
        for k, atom_raw in frame_lines[1:]:
            atom_text, bad = _decode(atom_raw, f"line {k}")
            problem = problem or bad
            atom_lines.append(atom_text)
        if len(atom_lines) < n_atoms:
            problem = problem or (
                f"frame {frame_number} announces {n_atoms} atoms but the file ends after "
                f"{len(atom_lines)}; the file is truncated: re-export it"
            )
        metadata = dict(info)
        if not info and comment.strip():
            metadata["comment"] = comment.strip()
        yield RawRecord(record_id, location, (atom_lines, info), metadata=metadata, problem=problem)


def _pdb_models(handle: IO[bytes], name: str) -> Iterator[RawRecord]:
    """One record per MODEL of a PDB file (the whole file when it has no MODEL lines); CONECT
    lines, which come after the models, apply to each."""
    text, problem = _decode(handle.read(), name)
    lines = text.splitlines()
    conect = [line for line in lines if line.startswith("CONECT")]
    models: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    start = 1
    for number, line in enumerate(lines, start=1):
        record = line[:6].strip()
        if record == "MODEL":
            current, start = [], number
        elif record == "ENDMDL":
            if current is not None:
                models.append((start, current))
            current = None
        elif record in ("ATOM", "HETATM", "TER"):
            if current is None:
                current, start = [], number
                models.append((start, current))  # atoms outside MODEL lines: one model
            current.append(line)
    models = [(start, atoms) for start, atoms in models if atoms]
    stem = _stem(name)
    if not models:
        yield RawRecord(
            stem,
            f"{name}:1",
            None,
            problem=problem or f"{name} holds no ATOM or HETATM lines; is it a PDB file?",
        )
        return
    for number, (start, atoms) in enumerate(models, start=1):
        record_id = stem if len(models) == 1 else f"{stem}:M{number}"
        block = "\n".join(atoms + conect + ["END"])
        yield RawRecord(record_id, f"{name}:{start}", block, problem=problem)


# ---- record -> Molecule ------------------------------------------------------------------------
def _molecule_from_smiles(record: RawRecord) -> Molecule:
    smiles = record.payload
    if not smiles:
        raise ParseError("empty SMILES field; fill it in or remove the record")
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        raise ParseError(
            f"RDKit cannot parse SMILES {smiles[:80]!r}; check brackets, ring-closure digits "
            "and element symbols"
        )
    metadata = dict(record.metadata)
    metadata.setdefault("input_smiles", smiles)
    return molecule_from_parsed(mol, record.record_id, metadata=metadata)


def _molecule_from_molblock(record: RawRecord) -> Molecule:
    mol = Chem.MolFromMolBlock(record.payload, sanitize=False, removeHs=False, strictParsing=True)
    if mol is None:
        raise ParseError(
            "RDKit cannot parse this molfile block (bad counts line, atom or bond lines); "
            "re-export the structure"
        )
    conf = mol.GetConformer() if mol.GetNumConformers() else None
    if conf is not None and not conf.Is3D():
        mol.RemoveAllConformers()  # 2D drawing coordinates are not a geometry
    return molecule_from_parsed(mol, record.record_id, metadata=record.metadata)


def _molecule_from_xyz(record: RawRecord) -> Molecule:
    atom_lines, info = record.payload
    try:
        species_column, position_column = _xyz_columns(info)
    except (ValueError, IndexError) as exc:
        raise ParseError(f"bad extended-XYZ Properties field: {exc}; fix the comment line") from exc
    table = Chem.GetPeriodicTable()
    numbers: list[int] = []
    positions = []
    for k, line in enumerate(atom_lines):
        fields = line.split()
        try:
            symbol = fields[species_column]
            xyz = [float(v) for v in fields[position_column : position_column + 3]]
            if len(xyz) != 3:
                raise ValueError("fewer than 3 coordinates")
            number = (
                int(symbol)
                if symbol.isdigit()
                else table.GetAtomicNumber(symbol[:1].upper() + symbol[1:].lower())
            )
        except (ValueError, IndexError, RuntimeError) as exc:
            raise ParseError(
                f"atom line {k + 1} of the frame ({line.strip()[:60]!r}) is not "
                f"'element x y z': {exc}; fix the line"
            ) from exc
        numbers.append(number)
        positions.append(xyz)
    if not positions:
        raise ParseError("the frame holds no atoms; remove it")
    if "Lattice" in info:
        return _periodic_molecule(numbers, np.array(positions, dtype=np.float64), record, info)
    return _molecule_from_atoms(
        numbers,
        np.array(positions, dtype=np.float64),
        record.record_id,
        charge=int(float(info.get("charge", 0) or 0)),
        metadata=record.metadata,
    )


def _periodic_molecule(
    numbers: Sequence[int], positions: np.ndarray, record: RawRecord, info: dict[str, str]
) -> Molecule:
    """An extended-XYZ frame with a ``Lattice``: a periodic query (:mod:`amondask.chem.periodic`:
    the cell's atoms, no bonds, the lattice and pbc in the metadata)."""
    from amondask.chem.periodic import cell_metadata, check_cell, parse_lattice, parse_pbc
    from amondask.chem.validate import supported_atomic_numbers
    from amondask.errors import UnsupportedElementError

    record_id = record.record_id
    try:
        lattice = parse_lattice(info["Lattice"])
        pbc = parse_pbc(info.get("pbc"))
        check_cell(lattice, pbc)
    except ValueError as exc:
        raise ParseError(f"bad periodic cell: {exc}", record_id=record_id) from exc
    check_size(sum(int(z) > 1 for z in numbers), record_id)
    check_positions(positions, record_id)
    allowed = supported_atomic_numbers()
    table = Chem.GetPeriodicTable()
    bad = sorted({table.GetElementSymbol(int(z)) for z in numbers if int(z) not in allowed})
    if bad:
        raise UnsupportedElementError(
            f"unsupported elements {', '.join(bad)}; amondask.elements lists those supported",
            record_id=record_id,
        )
    if int(float(info.get("charge", 0) or 0)):
        raise ParseError(
            "charged cells are not supported; give a neutral cell", record_id=record_id
        )
    if int(sum(numbers)) % 2:
        raise ParseError(
            "the cell holds an odd number of electrons (open shell); amondask labels "
            "closed-shell systems only: double the cell or check the doping",
            record_id=record_id,
        )
    metadata = {k: v for k, v in record.metadata.items() if k not in ("Lattice", "pbc")}
    metadata.update(cell_metadata(lattice, pbc))
    return Molecule(
        record_id,
        np.asarray(numbers, dtype=np.int64),
        np.zeros((0, 3), dtype=np.int64),
        np.zeros(len(numbers), dtype=np.int64),
        positions,
        metadata=metadata,
    )


def _molecule_from_atoms(
    numbers: Sequence[int],
    positions: np.ndarray,
    record_id: str,
    *,
    charge: int = 0,
    metadata: dict[str, str] | None = None,
) -> Molecule:
    """A Molecule from bare atoms (atomic numbers, positions (n, 3) in angstrom): size and
    coordinates checked, then bonds and bond orders perceived from the geometry."""
    check_size(sum(int(z) > 1 for z in numbers), record_id)
    check_positions(positions, record_id)
    rw = Chem.RWMol()
    for number in numbers:
        rw.AddAtom(Chem.Atom(int(number)))
    conf = Chem.Conformer(len(numbers))
    for index, (x, y, z) in enumerate(positions.tolist()):
        conf.SetAtomPosition(index, Point3D(x, y, z))
    conf.Set3D(True)
    mol = rw.GetMol()
    mol.AddConformer(conf, assignId=True)
    return molecule_from_parsed(
        perceive_bonds_from_geometry(mol, charge), record_id, metadata=metadata
    )


def _molecule_from_pdb(record: RawRecord) -> Molecule:
    """A PDB model: bonds from the coordinates when it has H atoms, else from RDKit's residue
    templates with the H atoms added (see the module doc)."""
    mol = Chem.MolFromPDBBlock(record.payload, sanitize=False, removeHs=False)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ParseError(
            "RDKit cannot read this PDB model (check the ATOM/HETATM columns: the coordinates "
            "in columns 31-54, the element in 77-78)"
        )
    check_size(mol.GetNumHeavyAtoms(), record.record_id)
    residues = sorted(
        {
            atom.GetPDBResidueInfo().GetResidueName().strip()
            for atom in mol.GetAtoms()
            if atom.GetPDBResidueInfo() is not None
        }
    )
    metadata = {"residues": " ".join(residues)}
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    if 1 in numbers:  # all H atoms given: the bonds from the geometry, as for XYZ
        positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
        return _molecule_from_atoms(numbers, positions, record.record_id, metadata=metadata)
    unknown = [name for name in residues if name not in PDB_TEMPLATE_RESIDUES]
    if unknown:
        raise SanitizationError(
            f"the PDB model has no hydrogen atoms and holds residues without a bond-order "
            f"template ({', '.join(unknown[:5])}): their bond orders are unknown. Add the "
            "hydrogen atoms (e.g. with PDBFixer, reduce or Open Babel -h) or give the molecule "
            "as SDF with bond orders; remove waters and ions (HOH, NA, CL) to read the rest"
        )
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:
        raise SanitizationError(
            f"RDKit rejects the PDB model ({str(exc).strip()[:100]}); check for missing atoms "
            "or alternate locations, or add the hydrogen atoms"
        ) from exc
    with_h = Chem.AddHs(mol, addCoords=True)
    return molecule_from_parsed(with_h, record.record_id, metadata=metadata, sanitized=True)


#: Ways to find the bonds of a bare geometry, tried in order (RDKit's rdDetermineBonds):
#: covalent radii times 1.15 first (the 1.3 of RDKit's default also bonds the 1.87 angstrom
#: cross-ring C...C of bicyclo[1.1.1]pentanes: 5% of QM9 failed that way), then RDKit's
#: connect-the-dots default, then radii times 1.25 (long bonds such as a 1.62 angstrom ring N-O).
BOND_PERCEPTION = (("vdw", 1.15), ("dots", 1.3), ("vdw", 1.25))


def perceive_bonds_from_geometry(mol: Chem.Mol, charge: int = 0) -> Chem.Mol:
    """``mol`` (atoms and a 3D conformer, no bonds) with bonds and bond orders perceived.

    Raises SanitizationError when no method of :data:`BOND_PERCEPTION` gives a valid structure.
    """
    problems = []
    for method, factor in BOND_PERCEPTION:
        attempt = Chem.Mol(mol)
        try:
            rdDetermineBonds.DetermineConnectivity(
                attempt, charge=charge, covFactor=factor, useVdw=method == "vdw"
            )
            rdDetermineBonds.DetermineBondOrders(attempt, charge=charge)
            return attempt
        except Exception as exc:
            problems.append(str(exc).strip()[:100])
    raise SanitizationError(
        f"cannot perceive bonds from the coordinates ({problems[0]}); check the geometry "
        "(units must be angstrom) or give the molecule as SDF with bonds"
    )


_CONVERTERS = {
    "smiles": _molecule_from_smiles,
    "csv": _molecule_from_smiles,
    "sdf": _molecule_from_molblock,
    "xyz": _molecule_from_xyz,
    "pdb": _molecule_from_pdb,
}


def _records_of_sequence(items: Sequence[Any], first_index: int) -> Iterator[tuple[RawRecord, str]]:
    for index, item in enumerate(items):
        generated = str(first_index + index)
        if isinstance(item, Molecule):
            yield RawRecord(item.id or generated, f"item {index}", item), "molecule"
        elif isinstance(item, Chem.Mol):
            name = item.GetProp("_Name") if item.HasProp("_Name") else ""
            yield RawRecord(name or generated, f"item {index}", item), "rdkit"
        elif isinstance(item, tuple) and len(item) == 2:
            yield RawRecord(str(item[1]), f"item {index}", str(item[0])), "smiles"
        elif isinstance(item, str):
            yield RawRecord(generated, f"item {index}", item.strip()), "smiles"
        else:
            yield (
                RawRecord(
                    generated,
                    f"item {index}",
                    None,
                    problem=f"item {index} is a {type(item).__name__}, not a SMILES string, "
                    "(smiles, id) pair, Molecule or RDKit Mol",
                ),
                "smiles",
            )


def _molecule_from_rdkit_item(record: RawRecord) -> Molecule:
    return molecule_from_parsed(Chem.Mol(record.payload), record.record_id)


def _molecule_item(record: RawRecord) -> Molecule:
    return record.payload


def _record_stream(
    source: Any,
    format: str | None,
    smiles_column: str | None,
    id_column: str | None,
    first_index: int = 0,
) -> Iterator[tuple[RawRecord, Any]]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"input file {path} does not exist; check the path")
        if path.is_dir():
            raise InputError(f"{path} is a directory; give a molecule file")
        fmt = format or detect_format(path)
        if fmt not in _CONVERTERS:
            raise InputError(f"unknown format {fmt!r}; use one of {', '.join(_CONVERTERS)}")
        converter = _CONVERTERS[fmt]
        with _open_binary(path) as handle:
            if fmt == "smiles":
                records = _smiles_lines(handle, path.name)
            elif fmt == "csv":
                records = _csv_rows(handle, path.name, smiles_column, id_column)
            elif fmt == "sdf":
                records = _sdf_records(handle, path.name)
            elif fmt == "pdb":
                records = _pdb_models(handle, path.name)
            else:
                records = _xyz_frames(handle, path.name)
            n_records = 0
            for record in _damaged_gzip_is_an_input_error(records, path):
                n_records += 1
                yield record, converter
            if n_records == 0:
                raise InputError(f"{path} holds no molecule records; check the file")
        return
    if isinstance(source, Iterable) and not isinstance(source, (bytes, dict)):
        items = source if isinstance(source, Sequence) else list(source)
        converters = {
            "smiles": _molecule_from_smiles,
            "rdkit": _molecule_from_rdkit_item,
            "molecule": _molecule_item,
        }
        for record, kind in _records_of_sequence(items, first_index):
            yield record, converters[kind]
        return
    raise InputError(
        f"cannot read molecules from a {type(source).__name__}; give a file path or a list of "
        "SMILES strings, Molecules or RDKit Mols"
    )


def iter_molecules(
    source: Any,
    *,
    on_error: OnError = "record",
    format: str | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
    geometry: bool = False,
    seed: int | None = None,
    first_index: int = 0,
) -> Iterator[Item]:
    """Stream the records of ``source`` as Molecules and (with ``on_error="record"``) ErrorRecords.

    ``source`` is a file path (format from the suffix, or ``format=``) or a sequence of SMILES
    strings, ``(smiles, id)`` pairs, Molecules or RDKit Mols. Items come in input order, one per
    record. With ``geometry=True``, molecules without coordinates get an ETKDG+MMFF geometry
    (failures become ``stage="geometry"`` error rows). List items without an id are numbered
    from ``first_index``.
    """
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error must be 'record' or 'raise', not {on_error!r}")
    seen_ids: dict[str, str] = {}
    records = _record_stream(source, format, smiles_column, id_column, first_index)
    for record, converter in records:
        item = duplicate_error(record, seen_ids) or convert_record(
            record, converter, geometry=geometry, seed=seed
        )
        if isinstance(item, ErrorRecord) and on_error == "raise":
            raise item.to_exception()
        yield item


def raw_records(
    source: Any,
    *,
    format: str | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
    first_index: int = 0,
) -> Iterator[tuple[RawRecord, Converter]]:
    """The records of ``source`` before chemistry, with the function that converts each.

    Splitting a file into records is cheap and sequential; :func:`convert_record` (parsing,
    validation, 3D embedding) is the costly part and can run on Dask workers.
    """
    return _record_stream(source, format, smiles_column, id_column, first_index)


def duplicate_error(record: RawRecord, seen_ids: dict[str, str]) -> ErrorRecord | None:
    """An error row if ``record``'s id was seen before in this input; records it otherwise."""
    if record.record_id in seen_ids:
        exc = DuplicateIdError(
            f"id {record.record_id!r} was already used by the record at "
            f"{seen_ids[record.record_id]}; ids must be unique: fix the input or drop the "
            "id field to number records automatically"
        )
        return ErrorRecord.from_exception(
            exc, record_id=record.record_id, stage="read", location=record.location
        )
    seen_ids[record.record_id] = record.location
    return None


def convert_record(
    record: RawRecord, converter: Converter, *, geometry: bool = False, seed: int | None = None
) -> Item:
    """Parse and validate one record (and embed it in 3D when ``geometry``); never raises."""
    stage = "read"
    try:
        if record.problem:
            raise ParseError(record.problem)
        molecule = converter(record)
        if geometry and not molecule.has_positions:
            stage = "geometry"
            molecule = embed_molecule(molecule, seed=seed)
        return molecule
    except RecordError as exc:
        return ErrorRecord.from_exception(
            exc, record_id=record.record_id, stage=stage, location=record.location
        )
    except Exception as exc:  # an unexpected failure on one record must not stop the batch
        return ErrorRecord(
            record_id=record.record_id,
            stage=stage,
            error_type=type(exc).__name__,
            message=f"unexpected error: {exc}; please report it with this record",
            location=record.location,
        )


def iter_batches(source: Any, batch_size: int = 1000, **options: Any) -> Iterator[ReadResult]:
    """Stream ``source`` as ReadResults of at most ``batch_size`` records each."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batch = ReadResult()
    for item in iter_molecules(source, **options):
        batch.add(item)
        if batch.n_records >= batch_size:
            yield batch
            batch = ReadResult()
    if batch.n_records:
        yield batch


def read_molecules(source: Any, *, on_error: OnError = "record", **options: Any) -> ReadResult:
    """Read every record of ``source``; see :func:`iter_molecules` for the arguments.

    Returns a ReadResult whose ``molecules`` are the good records and ``errors`` the bad ones;
    ``len(molecules) + len(errors)`` is the number of records in the input.
    """
    result = ReadResult()
    for item in iter_molecules(source, on_error=on_error, **options):
        result.add(item)
    return result
