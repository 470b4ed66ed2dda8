"""Regenerate the periodic example queries in examples/periodic/ (issue 13, item 3).

``crystals.extxyz`` (extended XYZ with ``Lattice`` and ``pbc``, ids in ``id=``), built with ASE:

- ``si64``: diamond silicon, the 2x2x2 conventional cell (64 atoms, a = 5.431 angstrom, the
  experimental lattice constant). tblite samples the Gamma point only: the energy per atom of
  this cell is within 0.09 kcal/mol of the 216-atom cell's, where the 8-atom cell is 10.6 off.
- ``hbn32``: a hexagonal boron nitride sheet, 4x4 cells (32 atoms, a = 2.504 angstrom,
  periodic in the plane, 20 angstrom of vacuum);
- ``hbn32_cc``: the same sheet with one bonded B-N pair replaced by C=C (carbon doping that
  keeps the sheet closed-shell; a lone C would leave an unpaired electron).

``si8.extxyz``: the 8-atom cubic diamond cell (same lattice constant), for the PBE example
(``periodic_pbe.yaml``): PySCF samples it on a k-point mesh (3x3x3 there; 2x2x2 would be the
same states as the 64-atom cell at the Gamma point, but is 1.84 kcal/mol per atom above 3x3x3
in PBE).

    python scripts/make_periodic_examples.py
"""

from __future__ import annotations

from pathlib import Path

from ase.build import bulk, graphene
from ase.io import write
from ase.neighborlist import neighbor_list

OUT = Path(__file__).resolve().parent.parent / "examples" / "periodic"


def main() -> None:
    silicon = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    silicon.info = {"id": "si64"}
    sheet = graphene(formula="BN", a=2.504, vacuum=10.0).repeat((4, 4, 1))
    sheet.info = {"id": "hbn32"}
    doped = sheet.copy()
    doped.info = {"id": "hbn32_cc"}
    first, second = neighbor_list("ij", doped, 1.6)
    boron = next(k for k, symbol in enumerate(doped.get_chemical_symbols()) if symbol == "B")
    nitrogen = int(next(j for i, j in zip(first, second, strict=True) if i == boron))
    doped.symbols[boron] = "C"
    doped.symbols[nitrogen] = "C"
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "crystals.extxyz"
    write(path, [silicon, sheet, doped], format="extxyz")
    print(f"wrote {path}")
    small = bulk("Si", "diamond", a=5.431, cubic=True)
    small.info = {"id": "si8"}
    write(OUT / "si8.extxyz", small, format="extxyz")
    print(f"wrote {OUT / 'si8.extxyz'}")


if __name__ == "__main__":
    main()
