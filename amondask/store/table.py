"""Append-only tables in a Zarr group, with a commit counter.

A :class:`Table` is a group of equally long arrays (columns), one row per record. Rows
``[0, n_rows)`` are committed; ``n_rows`` lives in the group's attributes and is written *after*
the data, so a writer killed mid-append leaves only uncommitted rows past ``n_rows``, which
readers ignore and the next append overwrites. A :class:`RaggedMoleculeTable` adds the CSR layout
of ARCHITECTURE.md for per-atom and per-bond data: ``offsets`` (n_rows + 1) into the atom arrays
``numbers``, ``formal_charges``, ``positions`` and ``bond_offsets`` into ``bonds``.

One writer at a time: concurrent appends to one table are not safe (see the workspace lock).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from amondask.chem.molecule import Molecule

N_ROWS_ATTR = "n_rows"


@dataclass(frozen=True)
class Column:
    """A column: dtype (``"str"`` for text) and the shape of one row's value (() for scalars)."""

    dtype: str
    row_shape: tuple[int, ...] = ()
    fill_value: Any = None


def _create_array(group: zarr.Group, name: str, column: Column, chunk_rows: int) -> zarr.Array:
    dtype = str if column.dtype == "str" else column.dtype
    return group.create_array(
        name,
        shape=(0, *column.row_shape),
        chunks=(chunk_rows, *column.row_shape),
        dtype=dtype,
        fill_value=column.fill_value,
    )


class Table:
    """An append-only columnar table stored in one Zarr group."""

    def __init__(self, group: zarr.Group):
        self.group = group
        self._columns: list[str] | None = None

    @classmethod
    def create(
        cls, parent: zarr.Group, name: str, columns: Mapping[str, Column], chunk_rows: int
    ) -> Table:
        group = parent.require_group(name)
        for column_name, column in columns.items():
            if column_name not in group:
                _create_array(group, column_name, column, chunk_rows)
        if N_ROWS_ATTR not in group.attrs:
            group.attrs[N_ROWS_ATTR] = 0
        return cls(group)

    @property
    def n_rows(self) -> int:
        return int(self.group.attrs.get(N_ROWS_ATTR, 0))

    def __len__(self) -> int:
        return self.n_rows

    @property
    def columns(self) -> list[str]:
        return sorted(self.group.array_keys())

    def _write_rows(self, name: str, start: int, values: np.ndarray) -> None:
        array = self.group[name]
        stop = start + len(values)
        if array.shape[0] != stop:
            array.resize((stop, *array.shape[1:]))
        if len(values):
            array[start:stop] = values

    def append(self, rows: Mapping[str, Sequence[Any] | np.ndarray]) -> int:
        """Append rows (column -> values, all columns, equal lengths); returns the new n_rows."""
        missing = set(self.group.array_keys()) - set(rows)
        if missing:
            raise ValueError(f"append misses columns {sorted(missing)}")
        lengths = {len(values) for values in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths {sorted(lengths)}")
        start = self.n_rows
        for name, values in rows.items():
            self._write_rows(name, start, _as_array(values, self.group[name]))
        return self._commit(start + lengths.pop())

    def truncate(self, n_rows: int) -> None:
        """Roll the table back to its first ``n_rows`` rows (later rows become uncommitted)."""
        if n_rows > self.n_rows:
            raise ValueError(f"cannot truncate a table of {self.n_rows} rows to {n_rows}")
        self._commit(n_rows)

    def _commit(self, n_rows: int) -> int:
        self.group.attrs[N_ROWS_ATTR] = int(n_rows)
        return n_rows

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed values of one column for rows [start, stop)."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        if stop <= start:
            array = self.group[name]
            return np.empty((0, *array.shape[1:]), dtype=_numpy_dtype(array))
        values = self.group[name][start:stop]
        return values

    def read_text(self, name: str, start: int = 0, stop: int | None = None) -> list[str]:
        return [str(v) for v in self.read(name, start, stop).tolist()]

    def to_pandas(self, columns: Sequence[str] | None = None) -> Any:
        import pandas as pd

        names = columns or [c for c in self.columns if self.group[c].ndim == 1]
        data = {}
        for name in names:
            values = self.read(name)
            data[name] = [str(v) for v in values.tolist()] if values.dtype.kind == "T" else values
        return pd.DataFrame(data)


def _numpy_dtype(array: zarr.Array) -> Any:
    return np.dtypes.StringDType() if array.dtype.kind == "T" else array.dtype


def _as_array(values: Sequence[Any] | np.ndarray, array: zarr.Array) -> np.ndarray:
    if array.dtype.kind in ("T", "U", "O"):
        return np.array([str(v) for v in values], dtype=np.dtypes.StringDType())
    return np.asarray(values, dtype=array.dtype)


MOLECULE_COLUMNS = {
    "id": Column("str"),
    "key": Column("str"),
    "smiles": Column("str"),
    "coordinates": Column("str"),
    "metadata": Column("str"),
}
ATOM_COLUMNS = {
    "numbers": Column("int8"),
    "formal_charges": Column("int8"),
    "positions": Column("float64", (3,), fill_value=np.nan),
}
BOND_COLUMNS = {"bonds": Column("int32", (3,))}


class RaggedMoleculeTable(Table):
    """Molecules in CSR layout: per-molecule columns plus per-atom and per-bond arrays.

    Per molecule: ``id``, ``key`` (canonical graph key), ``smiles``, ``coordinates`` (where the
    positions come from: ``"input"`` or the generator's name), ``metadata`` (JSON text).
    Per atom: ``numbers`` (int8), ``formal_charges`` (int8), ``positions`` (float64, angstrom,
    NaN for graph-only molecules). Per bond: ``bonds`` (int32 rows ``i, j, order``, atom indices
    local to the molecule). ``offsets`` and ``bond_offsets`` (int64, n_rows + 1) delimit them.
    """

    RAGGED = {"offsets": ATOM_COLUMNS, "bond_offsets": BOND_COLUMNS}

    @classmethod
    def create(
        cls,
        parent: zarr.Group,
        name: str,
        columns: Mapping[str, Column] | None = None,
        chunk_rows: int = 65536,
    ) -> RaggedMoleculeTable:
        group = parent.require_group(name)
        all_columns = {**MOLECULE_COLUMNS, **(columns or {})}
        for column_name, column in {**all_columns, **ATOM_COLUMNS, **BOND_COLUMNS}.items():
            if column_name not in group:
                _create_array(group, column_name, column, chunk_rows)
        for offsets_name in cls.RAGGED:
            if offsets_name not in group:
                offsets = _create_array(group, offsets_name, Column("int64"), chunk_rows)
                offsets.resize((1,))
                offsets[0:1] = np.zeros(1, dtype=np.int64)
        if N_ROWS_ATTR not in group.attrs:
            group.attrs[N_ROWS_ATTR] = 0
        return cls(group)

    def _row_columns(self) -> list[str]:
        if self._columns is None:  # listing a group's arrays is a store round trip: once
            ragged = {"offsets", "bond_offsets", *ATOM_COLUMNS, *BOND_COLUMNS}
            self._columns = [name for name in self.group.array_keys() if name not in ragged]
        return self._columns

    def offsets(self, start: int = 0, stop: int | None = None, *, kind: str = "offsets"):
        """Committed offsets for molecules [start, stop): an array of length stop - start + 1."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        return self.group[kind][start : stop + 1]

    @property
    def n_atoms(self) -> int:
        return int(self.group["offsets"][self.n_rows])

    def append_molecules(
        self, molecules: Sequence[Molecule], extra: Mapping[str, Sequence[Any]] | None = None
    ) -> int:
        """Append molecules (and values of extra per-molecule columns); returns new n_rows."""
        extra = dict(extra or {})
        block = MoleculeBlock.of_molecules(molecules)
        defaults = {
            "id": lambda: [m.id for m in molecules],
            "key": lambda: [m.key for m in molecules],
            "smiles": lambda: [m.smiles for m in molecules],
            "coordinates": lambda: [
                str(m.metadata.get("coordinates", "input" if m.has_positions else "none"))
                for m in molecules
            ],
            "metadata": lambda: [
                json.dumps(dict(m.metadata), sort_keys=True, default=str) for m in molecules
            ],
        }
        # Values given in ``extra`` win; the defaults (key and smiles need RDKit) are lazy.
        rows: dict[str, Any] = {
            name: make() for name, make in defaults.items() if name not in extra
        }
        rows.update(extra)
        return self.append_block(block, rows)

    def append_block(self, block: MoleculeBlock, rows: Mapping[str, Sequence[Any]]) -> int:
        """Append the molecules of ``block`` with the values of every per-molecule column in
        ``rows`` (its ``ids`` and ``metadata`` are not used: give them in ``rows``); returns
        the new n_rows. No Molecule objects are made: the merge copies millions of rows."""
        n = self.n_rows
        missing = set(self._row_columns()) - set(rows)
        if missing:
            raise ValueError(f"append_molecules misses values for columns {sorted(missing)}")
        atom_start = int(self.group["offsets"][n])
        bond_start = int(self.group["bond_offsets"][n])
        self._write_rows("numbers", atom_start, block.numbers.astype(np.int8))
        self._write_rows("formal_charges", atom_start, block.formal_charges.astype(np.int8))
        self._write_rows("positions", atom_start, block.positions.astype(np.float64))
        self._write_rows("bonds", bond_start, block.bonds.astype(np.int32))
        self._write_rows("offsets", n + 1, atom_start + block.offsets[1:])
        self._write_rows("bond_offsets", n + 1, bond_start + block.bond_offsets[1:])
        for name, values in rows.items():
            self._write_rows(name, n, _as_array(values, self.group[name]))
        return self._commit(n + len(block))

    def molecules(self, start: int = 0, stop: int | None = None) -> list[Molecule]:
        """The committed molecules [start, stop) as Molecule objects."""
        return list(self.iter_molecules(start, stop))

    def iter_molecules(self, start: int = 0, stop: int | None = None) -> Iterator[Molecule]:
        block = self.read_block(start, stop)
        for k in range(len(block)):
            yield block.molecule(k)

    def read_block(
        self, start: int = 0, stop: int | None = None, *, text: bool = True
    ) -> MoleculeBlock:
        """The committed rows [start, stop) as raw arrays, read in one go (see MoleculeBlock).

        ``text=False`` skips the ids and metadata (empty strings instead): decoding text
        chunks is most of the cost of reading a few rows of a large table."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        stop = max(start, stop)
        offsets = self.offsets(start, stop).astype(np.int64)
        bond_offsets = self.offsets(start, stop, kind="bond_offsets").astype(np.int64)
        a0, a1 = int(offsets[0]), int(offsets[-1])
        b0, b1 = int(bond_offsets[0]), int(bond_offsets[-1])
        empty = [""] * (stop - start)
        return MoleculeBlock(
            ids=self.read_text("id", start, stop) if text else empty,
            metadata=self.read_text("metadata", start, stop) if text else empty,
            offsets=offsets - a0,
            bond_offsets=bond_offsets - b0,
            numbers=self.group["numbers"][a0:a1],
            formal_charges=self.group["formal_charges"][a0:a1],
            positions=self.group["positions"][a0:a1],
            bonds=self.group["bonds"][b0:b1],
        )


@dataclass(frozen=True)
class MoleculeBlock:
    """Consecutive rows of a RaggedMoleculeTable as arrays: a row's atoms are
    ``offsets[k]:offsets[k + 1]`` of ``numbers`` (n_atoms,), ``formal_charges`` (n_atoms,) and
    ``positions`` (n_atoms, 3; angstrom, NaN for a graph), its bonds ``bond_offsets[k]:...`` of
    ``bonds`` (n_bonds, 3). Cheap per-row access for readers that need only some rows as
    Molecules (the extraction merge looks at every candidate's positions, keeps a few)."""

    ids: list[str]
    metadata: list[str]
    offsets: np.ndarray
    bond_offsets: np.ndarray
    numbers: np.ndarray
    formal_charges: np.ndarray
    positions: np.ndarray
    bonds: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of_molecules(cls, molecules: Sequence[Molecule]) -> MoleculeBlock:
        """The molecules' arrays in one block (a graph's positions are NaN)."""
        n_atoms = np.array([m.n_atoms for m in molecules], dtype=np.int64)
        n_bonds = np.array([len(m.bonds) for m in molecules], dtype=np.int64)
        return cls(
            ids=[m.id for m in molecules],
            metadata=["" for _ in molecules],
            offsets=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            bond_offsets=np.concatenate([[0], np.cumsum(n_bonds)]).astype(np.int64),
            numbers=_concat([m.numbers for m in molecules], np.int8, ()),
            formal_charges=_concat([m.formal_charges for m in molecules], np.int8, ()),
            positions=_concat(
                [
                    m.positions if m.positions is not None else np.full((m.n_atoms, 3), np.nan)
                    for m in molecules
                ],
                np.float64,
                (3,),
            ),
            bonds=_concat([m.bonds for m in molecules], np.int32, (3,)),
        )

    @classmethod
    def gather(cls, picks: Sequence[tuple[MoleculeBlock, int]]) -> MoleculeBlock:
        """One block of the rows ``(block, row)`` of ``picks``, in that order."""
        atoms = [(b.offsets[k], b.offsets[k + 1]) for b, k in picks]
        bonds = [(b.bond_offsets[k], b.bond_offsets[k + 1]) for b, k in picks]
        n_atoms = np.array([hi - lo for lo, hi in atoms], dtype=np.int64)
        n_bonds = np.array([hi - lo for lo, hi in bonds], dtype=np.int64)

        def take(name: str, spans: list, row_shape: tuple, dtype: Any) -> np.ndarray:
            return _concat(
                [getattr(b, name)[lo:hi] for (b, _), (lo, hi) in zip(picks, spans, strict=True)],
                dtype,
                row_shape,
            )

        return cls(
            ids=[b.ids[k] for b, k in picks],
            metadata=[b.metadata[k] for b, k in picks],
            offsets=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            bond_offsets=np.concatenate([[0], np.cumsum(n_bonds)]).astype(np.int64),
            numbers=take("numbers", atoms, (), np.int8),
            formal_charges=take("formal_charges", atoms, (), np.int8),
            positions=take("positions", atoms, (3,), np.float64),
            bonds=take("bonds", bonds, (3,), np.int32),
        )

    def positions_of(self, k: int) -> np.ndarray:
        """(n_atoms, 3) positions (angstrom) of row k: a view, not a copy."""
        return self.positions[self.offsets[k] : self.offsets[k + 1]]

    def molecule(self, k: int) -> Molecule:
        lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
        blo, bhi = int(self.bond_offsets[k]), int(self.bond_offsets[k + 1])
        pos = self.positions[lo:hi]
        metadata = self.metadata[k]
        return Molecule(
            id=self.ids[k],
            numbers=self.numbers[lo:hi],
            bonds=self.bonds[blo:bhi],
            formal_charges=self.formal_charges[lo:hi],
            positions=None if np.isnan(pos).all() and hi > lo else pos,
            metadata=json.loads(metadata) if metadata else {},
        )


def _concat(arrays: Sequence[np.ndarray], dtype: Any, row_shape: tuple[int, ...]) -> np.ndarray:
    if not arrays:
        return np.empty((0, *row_shape), dtype=dtype)
    return np.concatenate([np.asarray(a, dtype=dtype).reshape(-1, *row_shape) for a in arrays])
