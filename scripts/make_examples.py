"""Regenerate the bundled example query sets in examples/ from QM9 (needs the `qm9` extra).

QM9: R. Ramakrishnan, P. O. Dral, M. Rupp, O. A. von Lilienfeld, "Quantum chemistry structures and
properties of 134 kilo molecules", Sci. Data 1, 140022 (2014); read from the PyPI package qm9pack.

    python scripts/make_examples.py
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

from rdkit import Chem

from amondask.chem import read_molecules

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N_QM9 = 24
SEED = 2020

# Hand-picked larger molecules (graphs only: amondask generates their 3D geometry).
DRUG_LIKE = [
    ("CC(=O)Oc1ccccc1C(=O)O", "aspirin"),
    ("Cn1cnc2c1c(=O)n(C)c(=O)n2C", "caffeine"),
    ("CC(=O)Nc1ccc(O)cc1", "paracetamol"),
    ("CC(C)Cc1ccc(cc1)C(C)C(=O)O", "ibuprofen"),
    ("O=[N+]([O-])c1ccccc1", "nitrobenzene"),
    ("NCC(=O)NCC(=O)O", "glycylglycine"),
]


def qm9_rows():
    import pandas as pd
    import qm9pack

    path = Path(qm9pack.__file__).parent / "data" / "qm9_part1.csv"
    frame = pd.read_csv(path, usecols=["Index", "SMILES", "Elements", "XYZ_Ang"])
    frame = frame[frame["Elements"].map(lambda e: sum(s != "H" for s in ast.literal_eval(e))) == 9]
    rows = frame.to_dict("records")
    random.Random(SEED).shuffle(rows)
    return rows[:N_QM9]


def xyz_frame(row: dict, name: str) -> str:
    elements = ast.literal_eval(row["Elements"])
    coords = ast.literal_eval(row["XYZ_Ang"].replace("0.,", "0.0,").replace("0.]", "0.0]"))
    lines = [str(len(elements)), f'id={name} smiles="{row["SMILES"]}" source=QM9']
    lines += [
        f"{e} {x:.10f} {y:.10f} {z:.10f}" for e, (x, y, z) in zip(elements, coords, strict=True)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = qm9_rows()
    names = [f"qm9_{row['Index']:06d}" for row in rows]
    xyz_text = "".join(xyz_frame(row, name) for row, name in zip(rows, names, strict=True))
    (EXAMPLES / "qm9_sample.extxyz").write_text(xyz_text)
    molecules = read_molecules(EXAMPLES / "qm9_sample.extxyz").molecules
    writer = Chem.SDWriter(str(EXAMPLES / "qm9_sample.sdf"))
    for molecule in molecules[: N_QM9 // 2]:
        mol = molecule.rdkit_mol
        mol.SetProp("_Name", molecule.id)
        mol.SetProp("source", "QM9")
        writer.write(mol)
    writer.close()
    with open(EXAMPLES / "queries.smi", "w") as handle:
        handle.write("# amondask example queries: SMILES and id; see examples/README.md\n")
        for row, name in zip(rows, names, strict=True):
            handle.write(f"{row['SMILES']} {name}\n")
        for smiles, name in DRUG_LIKE:
            handle.write(f"{smiles} {name}\n")
    print(f"wrote {len(rows)} QM9 frames and {len(DRUG_LIKE)} drug-like SMILES to {EXAMPLES}")


if __name__ == "__main__":
    main()
