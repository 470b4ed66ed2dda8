"""Regenerate the large covalent example queries in examples/large_molecules/ (issue 13).

Biomolecules and polymers far beyond QM9's nine heavy atoms, with 3D geometries from RDKit
(ETKDGv3 embedding, seeded, then MMFF94), so that amondask takes its amons' geometries from them:

- ``biomolecules.sdf``: cholesterol (28 heavy atoms, 4 fused rings, 8 stereocentres);
- ``peptide.pdb``: the decapeptide NLYIQWLKDG (the first ten residues of the Trp-cage
  miniprotein TC5b), neutral termini and side chains, written as a crystal structure would be:
  heavy atoms only, no CONECT records, so that amondask's PDB reader has to find the bond orders
  from its residue templates and add the hydrogen atoms itself;
- ``polymers.sdf``: polyethylene (n-eicosane, C20H42), all-trans polyacetylene (C20H22) and
  polyglycine (Gly)8, as extended chains (every backbone dihedral set to 180 degrees before the
  MMFF94 minimization: the idealized polymer strand). A randomly coiled embedding folds under
  GFN2-xTB: (Gly)8 formed ten N-H...O=C hydrogen bonds between residues apart in the chain,
  contacts that no covalent amon of N_I <= 7 holds (they need the non-covalent amons).

    python scripts/make_large_examples.py
"""

from __future__ import annotations

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms

OUT = Path(__file__).resolve().parent.parent / "examples" / "large_molecules"
SEED = 13

BIOMOLECULES = [
    (
        "CC(C)CCC[C@@H](C)[C@H]1CC[C@H]2[C@@H]3CC=C4C[C@@H](O)CC[C@]4(C)[C@H]3CC[C@]12C",
        "cholesterol",
    ),
]
PEPTIDE = ("NLYIQWLKDG", "trpcage_1_10")
# (SMILES, id, backbone atom indices in SMILES order): the backbone dihedrals are set to 180
POLYMERS = [
    ("C" * 20, "polyethylene_C20", list(range(20))),
    ("C=C" + "/C=C" * 9, "polyacetylene_C20", list(range(20))),
    # N, CA, C of each residue (the carbonyl O is every fourth atom), then the terminal OH O
    ("NCC(=O)" * 8 + "O", "polyglycine_G8", [k for k in range(33) if k % 4 != 3]),
]


def embedded(mol: Chem.Mol, backbone: list[int] | None = None) -> Chem.Mol:
    """``mol`` with H atoms and a seeded ETKDGv3 + MMFF94 geometry; with ``backbone`` (atom
    indices along the chain), every backbone dihedral is set to 180 degrees first."""
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = SEED
    params.useRandomCoords = True  # long flexible chains embed more reliably
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"cannot embed {Chem.MolToSmiles(Chem.RemoveHs(mol))}")
    if backbone:
        conformer = mol.GetConformer()
        for k in range(len(backbone) - 3):
            rdMolTransforms.SetDihedralDeg(conformer, *backbone[k : k + 4], 180.0)
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    return mol


def write_sdf(path: Path, entries: list[tuple]) -> None:
    """(SMILES, id) or (SMILES, id, backbone) entries, embedded, as one SDF."""
    with Chem.SDWriter(str(path)) as writer:
        for smiles, name, *backbone in entries:
            mol = embedded(Chem.MolFromSmiles(smiles), backbone[0] if backbone else None)
            mol.SetProp("_Name", name)
            mol.SetProp("smiles", smiles)
            writer.write(mol)


def write_peptide_pdb(path: Path, sequence: str, name: str) -> None:
    mol = embedded(Chem.MolFromSequence(sequence))
    heavy = Chem.RemoveHs(mol)  # keeps the heavy atoms' coordinates and residue labels
    lines = [f"COMPND    {name} ({sequence}), neutral; heavy atoms only"]
    lines += [
        line
        for line in Chem.MolToPDBBlock(heavy, flavor=2).splitlines()  # flavor 2: no CONECT
        if line.startswith(("ATOM", "HETATM", "TER"))
    ]
    path.write_text("\n".join(lines + ["END"]) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_sdf(OUT / "biomolecules.sdf", BIOMOLECULES)
    write_peptide_pdb(OUT / "peptide.pdb", *PEPTIDE)
    write_sdf(OUT / "polymers.sdf", POLYMERS)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
