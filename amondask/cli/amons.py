"""``amondask amons``: list the amons of molecules (no workspace needed).

amondask amons "CC(=O)Oc1ccccc1C(=O)O" --max-heavy-atoms 5
amondask amons queries.smi --format json --output amons.json
amondask amons queries.sdf --format sdf --output amons.sdf
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO

from amondask.cli.common import positive_int
from amondask.errors import AmondaskError, ErrorRecord, InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "amons",
        help="list the amons (H-capped fragments) of molecules",
        description=(
            "Extract the amons of each query: every H-capped fragment with at most N_I heavy "
            "atoms that keeps each atom's element, charge, coordination and pi bonds, with how "
            "often it occurs. The argument is a SMILES string or a molecule file (.smi/.txt, "
            ".csv, .sdf/.mol, .xyz/.extxyz, .pdb). Queries that fail are reported on stderr and "
            "the rest is processed."
        ),
    )
    parser.add_argument("query", metavar="SMILES_OR_FILE", help="a SMILES string or a file")
    parser.add_argument(
        "--max-heavy-atoms",
        type=positive_int,
        default=None,
        help="largest amon size N_I (default: amondask.max-heavy-atoms, 7)",
    )
    parser.add_argument(
        "--rules",
        choices=["paper", "plain"],
        default=None,
        help="amon rule set (default: amondask.amon-rules, 'paper')",
    )
    parser.add_argument(
        "--format",
        choices=["table", "json", "sdf"],
        default="table",
        help="output: a table per query, JSON, or an SD file of the 3D amon conformers",
    )
    parser.add_argument(
        "--geometry",
        action="store_true",
        help="also build 3D conformers for table/json output (always on for sdf)",
    )
    parser.add_argument(
        "--no-relax", action="store_true", help="keep capped query coordinates (no MMFF94)"
    )
    parser.add_argument("--seed", type=int, help="seed of the 3D embedding of graph-only queries")
    parser.add_argument("--output", "-o", help="write to this file instead of stdout")
    parser.set_defaults(handler=run)


def _queries(argument: str):
    """(molecules or SMILES, error rows) for a SMILES string or a file name."""
    path = Path(argument)
    if path.exists():
        from amondask.chem.readers import read_molecules

        result = read_molecules(path)
        return list(result.molecules), list(result.errors)
    if any(sep in argument for sep in ("/", "\\")) and not any(c in argument for c in "=#()[]@"):
        raise InputError(f"file {argument!r} does not exist; give an existing file or a SMILES")
    from amondask.chem.molecule import Molecule

    try:
        return [Molecule.from_smiles(argument, "query")], []
    except AmondaskError as exc:
        raise InputError(
            f"{argument!r} is neither an existing file nor a valid SMILES ({exc})"
        ) from exc


def run(args: argparse.Namespace) -> int:
    from amondask import config
    from amondask.amons import extract_amons

    max_heavy_atoms = int(config.get("max-heavy-atoms", args.max_heavy_atoms))
    rules = str(config.get("amon-rules", args.rules))
    geometry = args.geometry or args.format == "sdf"
    molecules, errors = _queries(args.query)
    results = []
    for molecule in molecules:
        try:
            amons = extract_amons(
                molecule,
                max_heavy_atoms,
                rules=rules,
                geometry=geometry,
                relax=not args.no_relax,
                seed=args.seed,
            )
        except AmondaskError as exc:
            errors.append(ErrorRecord.from_exception(exc, record_id=molecule.id, stage="amons"))
            continue
        results.append((molecule, amons))
    handle: IO[str] = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "table":
            _write_table(handle, results, max_heavy_atoms, rules, geometry)
        elif args.format == "json":
            _write_json(handle, results, max_heavy_atoms, rules, geometry)
        else:
            _write_sdf(handle, results)
    finally:
        if args.output:
            handle.close()
    for error in errors:
        print(
            f"amondask amons: {error.record_id} ({error.stage}): {error.error_type}: "
            f"{error.message}",
            file=sys.stderr,
        )
    return 1 if errors and not results else 0


def _write_table(handle, results, max_heavy_atoms, rules, geometry) -> None:
    for molecule, amons in results:
        occurrences = sum(amon.count for amon in amons)
        print(
            f"# {molecule.id}  {molecule.key}  N_I={max_heavy_atoms} rules={rules}: "
            f"{len(amons)} amons, {occurrences} occurrences",
            file=handle,
        )
        header = f"{'n_heavy':>7}  {'count':>5}  " + ("conformers  " if geometry else "") + "key"
        print(header, file=handle)
        for amon in amons:
            conformers = f"{len(amon.conformers):>10}  " if geometry else ""
            print(f"{amon.n_heavy:>7}  {amon.count:>5}  {conformers}{amon.key}", file=handle)


def _write_json(handle, results, max_heavy_atoms, rules, geometry) -> None:
    payload = []
    for molecule, amons in results:
        entries = []
        for amon in amons:
            entry = {
                "key": amon.key,
                "n_heavy": amon.n_heavy,
                "count": amon.count,
                "occurrences": [list(occ) for occ in amon.occurrences],
            }
            if geometry:
                entry["conformers"] = [
                    {
                        "occurrence_indices": list(c.occurrence_indices),
                        "source_occurrence": c.source_occurrence,
                        "clash": c.clash,
                        "relaxed": c.relaxed,
                        "warnings": list(c.warnings),
                    }
                    for c in amon.conformers
                ]
            entries.append(entry)
        payload.append(
            {
                "id": molecule.id,
                "key": molecule.key,
                "max_heavy_atoms": max_heavy_atoms,
                "rules": rules,
                "amons": entries,
            }
        )
    json.dump(payload, handle, indent=1)
    handle.write("\n")


def _write_sdf(handle, results) -> None:
    from rdkit import Chem

    writer = Chem.SDWriter(handle)
    for molecule, amons in results:
        for amon in amons:
            for conformer in amon.conformers:
                mol = Chem.Mol(conformer.molecule.rdkit_mol)  # do not touch the cached one
                mol.SetProp("_Name", conformer.molecule.id)
                mol.SetProp("amon_key", amon.key)
                mol.SetProp("query_id", molecule.id)
                mol.SetProp("count", str(amon.count))
                occurrences = [amon.occurrences[i] for i in conformer.occurrence_indices]
                mol.SetProp("occurrences", json.dumps([list(o) for o in occurrences]))
                mol.SetProp("clash", str(conformer.clash).lower())
                mol.SetProp("relaxed", str(conformer.relaxed).lower())
                if conformer.warnings:
                    mol.SetProp("warnings", "; ".join(conformer.warnings))
                writer.write(mol)
    writer.close()
