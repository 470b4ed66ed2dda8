"""Regenerate the non-covalent example queries in examples/noncovalent/ (issue 13).

Complexes of several molecules held together by hydrogen bonds, relaxed with GFN2-xTB (tblite,
through amondask's own labeler) so that each is a minimum of the level the benchmarks label at:

- ``water_clusters.xyz``: (H2O)n for n = 1..21, ids ``water_01`` .. ``water_21``. Each is
  grown from a seeded random packing (every new O 2.75 angstrom from a random earlier one and
  at least 2.6 from all, random orientations), then relaxed; a cluster that does not stay one
  hydrogen-bonded network of intact waters is drawn again. The benchmark trains on small ones
  and predicts n = 11..21, like the authors.
- ``base_pairs.xyz``: the Watson-Crick pairs adenine-thymine (``AT``) and guanine-cytosine
  (``GC``), 9H-purines with 1H-pyrimidines: each base embedded with ETKDGv3 + MMFF94, the
  pyrimidine placed as a rigid body onto the purine (its hydrogen-bond donor-acceptor distances
  at 2.9 angstrom, its atoms in the purine's plane), then the pair relaxed.

- ``polyglycine_coil.xyz``: (Gly)8 as a random coil (ETKDGv3, seed 13, MMFF94) relaxed with
  GFN2-xTB: one molecule folded onto itself, whose N-H...O=C contacts between residues far
  apart in the chain only intramolecular combinations see.

- ``peptide_folded.xyz``: the decapeptide of ``examples/large_molecules/peptide.pdb`` (H atoms
  added by amondask's reader) relaxed with GFN2-xTB (650 BFGS steps, ~10-18 min): it folds
  into N-H/O-H...O/N contacts between residues far apart in the chain.

All are extended XYZ with ``id=`` in the comment line; read the complexes with
``amondask.read.allow-fragments: true`` (see ``noncovalent.yaml`` beside them).

    python scripts/make_noncovalent_examples.py [--max-water N] [--only NAME ...]

(``relaxed`` uses max_steps=3000; the peptide needs 650.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from amondask.chem.molecule import Molecule

OUT = Path(__file__).resolve().parent.parent / "examples" / "noncovalent"
SEED = 5
WATER = np.array([[0.0, 0.0, 0.0], [0.7572, 0.5865, 0.0], [-0.7572, 0.5865, 0.0]])  # O, H, H

# (purine SMILES, pyrimidine SMILES, id, hydrogen bonds as (purine atom, pyrimidine atom),
# heavy atoms in SMILES order): A N1...H-N3 T and A N6-H...O4 T; G O6...H-N4 C,
# G N1-H...N3 C and G N2-H...O2 C
BASE_PAIRS = [
    ("Nc1ncnc2[nH]cnc12", "Cc1c[nH]c(=O)[nH]c1=O", "AT", [(2, 6), (0, 8)]),
    ("Nc1nc2[nH]cnc2c(=O)[nH]1", "Nc1cc[nH]c(=O)n1", "GC", [(9, 0), (10, 7), (0, 6)]),
]
HBOND_ANGSTROM = 2.9


def relaxed(molecule: Molecule) -> Molecule:
    """``molecule`` relaxed with GFN2-xTB (amondask's labeler: tblite + ASE BFGS)."""
    from amondask.label.xtb import XTBLabeler

    label = XTBLabeler(relax=True, max_steps=3000).label(molecule)
    if label.status != "ok":
        raise RuntimeError(f"{molecule.id}: GFN2-xTB relaxation ended {label.status}")
    return Molecule(
        molecule.id, molecule.numbers, molecule.bonds, molecule.formal_charges, label.positions
    )


def water_cluster(n: int, rng: np.random.Generator) -> Molecule:
    """(H2O)n from a random compact packing (not yet relaxed)."""
    oxygens = [np.zeros(3)]
    while len(oxygens) < n:
        anchor = oxygens[rng.integers(len(oxygens))]
        direction = rng.normal(size=3)
        candidate = anchor + 2.75 * direction / np.linalg.norm(direction)
        if min(np.linalg.norm(candidate - o) for o in oxygens) >= 2.6:
            oxygens.append(candidate)
    positions = np.concatenate(
        [o + Rotation.random(random_state=rng).apply(WATER) for o in oxygens]
    )
    numbers = np.tile([8, 1, 1], n)
    bonds = [(3 * k, 3 * k + h, 1) for k in range(n) for h in (1, 2)]
    return Molecule(f"water_{n:02d}", numbers, bonds, positions=positions)


def hydrogen_bonded_network(molecule: Molecule) -> bool:
    """True when every water keeps its two O-H bonds (<= 1.15 A, no H nearer another O) and
    the waters form one network of O...O contacts <= 3.3 angstrom."""
    positions = molecule.positions
    oxygens = np.flatnonzero(molecule.numbers == 8)
    hydrogens = np.flatnonzero(molecule.numbers == 1)
    distance = np.linalg.norm(positions[hydrogens, None] - positions[None, oxygens], axis=2)
    owner = np.argmin(distance, axis=1)
    if distance.min(axis=1).max() > 1.15:
        return False
    if not np.array_equal(owner, np.repeat(np.arange(len(oxygens)), 2)):
        return False  # an H nearer another water's O: a proton moved
    oo = np.linalg.norm(positions[oxygens, None] - positions[None, oxygens], axis=2)
    reached, frontier = {0}, [0]
    while frontier:
        k = frontier.pop()
        for j in np.flatnonzero(oo[k] <= 3.3):
            if int(j) not in reached:
                reached.add(int(j))
                frontier.append(int(j))
    return len(reached) == len(oxygens)


def water_clusters(max_n: int) -> list[Molecule]:
    rng = np.random.default_rng(SEED)
    out = []
    for n in range(1, max_n + 1):
        for attempt in range(10):
            cluster = relaxed(water_cluster(n, rng))
            if hydrogen_bonded_network(cluster):
                break
            print(f"water_{n:02d}: attempt {attempt + 1} broke apart; drawing again")
        else:
            raise RuntimeError(f"no intact (H2O){n} in 10 attempts")
        print(f"water_{n:02d}: relaxed")
        out.append(cluster)
    return out


def embedded_base(smiles: str) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = SEED
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"cannot embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return mol


def placed_pair(purine: Chem.Mol, pyrimidine: Chem.Mol, hbonds: list[tuple[int, int]]):
    """The pyrimidine's positions moved as a rigid body so that each hydrogen-bond pair is
    HBOND_ANGSTROM apart, its atoms lie in the purine's plane and no other heavy atoms of the
    two come closer than 3.2 angstrom (best of 40 seeded starts)."""
    a = purine.GetConformer().GetPositions()
    b = pyrimidine.GetConformer().GetPositions()
    heavy_a = [atom.GetIdx() for atom in purine.GetAtoms() if atom.GetAtomicNum() > 1]
    heavy_b = [atom.GetIdx() for atom in pyrimidine.GetAtoms() if atom.GetAtomicNum() > 1]
    centre = a[heavy_a].mean(axis=0)
    normal = np.linalg.svd(a[heavy_a] - centre)[2][2]
    b0 = b - b.mean(axis=0)
    bonded = set(hbonds)

    def moved(x: np.ndarray) -> np.ndarray:
        return Rotation.from_rotvec(x[:3]).apply(b0) + x[3:]

    def penalty(x: np.ndarray) -> float:
        p = moved(x)
        total = sum((np.linalg.norm(a[i] - p[j]) - HBOND_ANGSTROM) ** 2 for i, j in hbonds)
        total += 0.1 * float(np.sum(((p[heavy_b] - centre) @ normal) ** 2))
        for i in heavy_a:
            d = np.linalg.norm(p[heavy_b] - a[i], axis=1)
            for j, dj in zip(heavy_b, d, strict=True):
                if (i, j) not in bonded and dj < 3.2:
                    total += (3.2 - dj) ** 2
        return float(total)

    rng = np.random.default_rng(SEED)
    target = np.mean([a[i] for i, _ in hbonds], axis=0)
    outward = target - centre
    best = None
    for _ in range(40):
        start = np.concatenate(
            [Rotation.random(random_state=rng).as_rotvec(), target + 1.2 * outward]
        )
        result = minimize(penalty, start, method="Powell", options={"maxiter": 20000})
        if best is None or result.fun < best.fun:
            best = result
    return moved(best.x), best.fun


def base_pair(purine_smiles, pyrimidine_smiles, pair_id, hbonds) -> Molecule:
    purine = embedded_base(purine_smiles)
    pyrimidine = embedded_base(pyrimidine_smiles)
    positions, misfit = placed_pair(purine, pyrimidine, hbonds)
    print(f"{pair_id}: placed (misfit {misfit:.3f})")
    complex_mol = Chem.CombineMols(purine, pyrimidine)
    Chem.SanitizeMol(complex_mol)
    conformer = complex_mol.GetConformer()
    n_purine = purine.GetNumAtoms()
    for k, xyz in enumerate(positions):
        conformer.SetAtomPosition(n_purine + k, xyz.tolist())
    Chem.Kekulize(complex_mol, clearAromaticFlags=True)
    return relaxed(Molecule.from_rdkit(complex_mol, pair_id))


def polyglycine_coil() -> Molecule:
    mol = Chem.AddHs(Chem.MolFromSmiles("NCC(=O)" * 8 + "O"))
    params = AllChem.ETKDGv3()
    params.randomSeed = 13
    params.useRandomCoords = True
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError("cannot embed (Gly)8")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    return relaxed(Molecule.from_rdkit(mol, "polyglycine_G8_coil"))


def peptide_folded() -> Molecule:
    from amondask.chem.readers import read_molecules

    pdb = OUT.parent / "large_molecules" / "peptide.pdb"
    (peptide,) = read_molecules(pdb, on_error="raise").molecules
    folded = relaxed(peptide)
    return Molecule("peptide_folded", folded.numbers, folded.bonds, positions=folded.positions)


def write_xyz(path: Path, molecules: list[Molecule], note: str) -> None:
    table = Chem.GetPeriodicTable()
    with path.open("w") as handle:
        for molecule in molecules:
            handle.write(f'{molecule.n_atoms}\nid={molecule.id} note="{note}"\n')
            for z, (x, y, w) in zip(molecule.numbers, molecule.positions, strict=True):
                handle.write(f"{table.GetElementSymbol(int(z)):<2} {x:13.8f} {y:13.8f} {w:13.8f}\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-water", type=int, default=21, help="largest (H2O)n (21)")
    names = ["base_pairs", "water_clusters", "polyglycine_coil", "peptide_folded"]
    parser.add_argument("--only", nargs="*", choices=names, default=names)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if "base_pairs" in args.only:
        write_xyz(
            OUT / "base_pairs.xyz",
            [base_pair(*spec) for spec in BASE_PAIRS],
            "Watson-Crick pair relaxed with GFN2-xTB",
        )
    if "water_clusters" in args.only:
        write_xyz(
            OUT / "water_clusters.xyz",
            water_clusters(args.max_water),
            "relaxed with GFN2-xTB",
        )
    if "polyglycine_coil" in args.only:
        write_xyz(OUT / "polyglycine_coil.xyz", [polyglycine_coil()], "relaxed with GFN2-xTB")
    if "peptide_folded" in args.only:
        write_xyz(
            OUT / "peptide_folded.xyz",
            [peptide_folded()],
            "NLYIQWLKDG from large_molecules/peptide.pdb relaxed with GFN2-xTB",
        )


if __name__ == "__main__":
    main()
