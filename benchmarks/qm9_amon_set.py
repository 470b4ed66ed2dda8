"""The whole-QM9 amon set (issue 10, item 4): distinct amon graphs per N_I, against the authors'.

From a workspace of a QM9 extraction (``benchmarks/bench_extract.py`` or ``amondask extract``
on all of QM9, N_I <= 7), this reports:

* the distinct amon graphs per N_I of the 9-heavy-atom queries (the columns of the query-amon
  matrix used by those rows) and of all queries;
* conformers per graph, amons and conformers per query (min / mean / max; the authors report
  7 to 178 amon conformers per query, mean 56);
* the error rows: how many records were refused and why;
* with ``--authors FILE`` (the authors' own amon SMILES, e.g. ``benchmarks/data/
  authors_qm9_amons_ni_le5.smi``), the set differences per N_I, each amon the authors have and
  we do not sorted into a cause (see ``docs/qm9_amon_set.md``);
* with ``--variants``, the same queries' amon graphs re-enumerated graph-only (no geometry)
  under the "paper" rules (a cross-check of the store), the "plain" rules, and from QM9's
  SMILES instead of the graph perceived from QM9's geometry: which differences are rules and
  which are the query graphs.

    python benchmarks/qm9_amon_set.py --workspace /tmp/qm9set/ws.zarr \
        --authors benchmarks/data/authors_qm9_amons_ni_le5.smi --variants \
        --out benchmarks/results/qm9_amon_set.json

Writes JSON (``--out``) and a Markdown table beside it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

#: The authors' counts (aqml-data, qm9/amons_NI_LE7.smi, all QM9 molecules of 9 heavy atoms).
AUTHORS_QUERIES = 110_041
AUTHORS_BY_N_HEAVY = {1: 3, 2: 13, 3: 45, 4: 192, 5: 922, 6: 4336, 7: 19734}
AUTHORS_CONFORMERS_PER_QUERY = {"min": 7, "mean": 56, "max": 178}
MAX_LISTED = 400  # differences listed in full per N_I


# ---- reading the workspace ---------------------------------------------------------------------
def query_heavy_atoms(workspace: Any) -> np.ndarray:
    """(n_queries,) number of heavy atoms of each committed query."""
    queries = workspace.queries
    offsets = queries.offsets()
    numbers = queries.group["numbers"][: offsets[-1]]
    heavy = (np.asarray(numbers) > 1).astype(np.int64)
    return np.add.reduceat(heavy, offsets[:-1]) if len(offsets) > 1 else np.zeros(0, np.int64)


def charged_queries(workspace: Any) -> np.ndarray:
    """(n_queries,) True where the query graph has an atom with a formal charge (zwitterions,
    and the ylides of a misperceived bond)."""
    queries = workspace.queries
    offsets = queries.offsets()
    charges = np.asarray(queries.group["formal_charges"][: offsets[-1]]) != 0
    if len(offsets) <= 1:
        return np.zeros(0, bool)
    return np.add.reduceat(charges.astype(np.int64), offsets[:-1]) > 0


def amons_used_by(matrix: scipy.sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Ids (ascending) of the amons with a non-zero count in any of ``rows``."""
    if not len(rows):
        return np.zeros(0, np.int64)
    return np.unique(matrix[rows].indices).astype(np.int64)


def count_by_size(amon_ids: np.ndarray, n_heavy: np.ndarray) -> dict[int, int]:
    """{N_I: number of amons} over ``amon_ids`` (n_heavy indexed by amon id)."""
    sizes, counts = np.unique(n_heavy[amon_ids], return_counts=True)
    return {int(s): int(c) for s, c in zip(sizes, counts, strict=True)}


def spread(values: np.ndarray) -> dict[str, float]:
    """min / mean / median / max of a 1-D array (zeros for an empty one)."""
    if not len(values):
        return {"min": 0, "mean": 0.0, "median": 0.0, "max": 0}
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 2),
        "median": float(np.median(values)),
        "max": int(values.max()),
    }


def conformers_per_query(workspace: Any, n_queries: int) -> np.ndarray:
    """(n_queries,) conformers each query's own amon occurrences gave (the per-query training
    set of the paper's protocol)."""
    pairs = workspace.amons.query_conformers.read("query")
    return np.bincount(pairs, minlength=n_queries)[:n_queries]


def error_summary(workspace: Any, examples: int = 5) -> dict[str, Any]:
    """Error rows by stage and type, with the first few record ids and one message per type."""
    if not workspace.has("errors"):
        return {"total": 0, "by_type": {}}
    frame = workspace.errors.to_pandas()
    out: dict[str, Any] = {"total": int(len(frame)), "by_type": {}}
    for (stage, error_type), group in frame.groupby(["stage", "error_type"]):
        out["by_type"][f"{stage}/{error_type}"] = {
            "count": int(len(group)),
            "records": sorted(group.record_id)[:examples],
            "message": str(group.message.iloc[0])[:300],
        }
    return out


def amon_set_summary(workspace: Any) -> dict[str, Any]:
    """Distinct graphs per N_I (9-heavy queries and all), conformers, per-query spreads."""
    store = workspace.amons
    n_queries = store.extracted_queries
    n_heavy = store.amons.read("n_heavy").astype(np.int64)
    matrix = store.query_amon_matrix()
    heavy = query_heavy_atoms(workspace)[:n_queries]
    rows9 = np.flatnonzero(heavy == 9)
    used9 = amons_used_by(matrix, rows9)
    neutral9 = rows9[~charged_queries(workspace)[:n_queries][rows9]]
    used9_neutral = amons_used_by(matrix, neutral9)
    used_all = amons_used_by(matrix, np.arange(n_queries))
    conformer_amon = store.conformers.read("amon")
    conformers_of = np.bincount(conformer_amon, minlength=len(n_heavy))[: len(n_heavy)]
    per_query_amons = np.diff(matrix.indptr)
    own_conformers = conformers_per_query(workspace, n_queries)
    graph_conformers = matrix.copy()
    graph_conformers.data = conformers_of[graph_conformers.indices].astype(np.int64)
    of_graphs = np.asarray(graph_conformers.sum(axis=1)).ravel()
    by_size = {}
    for size in sorted(set(n_heavy[used9].tolist())):
        ids = used9[n_heavy[used9] == size]
        by_size[size] = spread(conformers_of[ids])
    return {
        "queries_extracted": int(n_queries),
        "queries_by_n_heavy": {int(k): int(v) for k, v in sorted(Counter(heavy.tolist()).items())},
        "distinct_amons_9_heavy_queries": count_by_size(used9, n_heavy),
        "distinct_amons_9_heavy_queries_total": int(len(used9)),
        "queries_9_heavy_without_charges": int(len(neutral9)),
        "distinct_amons_9_heavy_queries_without_charges": count_by_size(used9_neutral, n_heavy),
        "distinct_amons_all_queries": count_by_size(used_all, n_heavy),
        "distinct_amons_all_queries_total": int(len(used_all)),
        "conformers_of_9_heavy_amons": int(conformers_of[used9].sum()),
        "conformers_all": int(len(conformer_amon)),
        "conformers_per_graph_9_heavy": by_size,
        "per_9_heavy_query": {
            "amon_graphs": spread(per_query_amons[rows9]),
            "own_conformers": spread(own_conformers[rows9]),
            "conformers_of_its_graphs": spread(of_graphs[rows9]),
        },
    }


# ---- the authors' list -------------------------------------------------------------------------
def authors_key(smiles: str) -> str | None:
    """Our key (RDKit canonical SMILES, no stereo) of one of the authors' amon SMILES.

    The authors write nitro groups and N-oxides with neutral five-valent N (``N(=O)=O``,
    ``C=N=O`` meaning ``C=[NH]=O`` by the SMILES implicit-H rule); RDKit and our store use the
    charge-separated form (``[N+](=O)[O-]``), so such N get their implicit H and one N=O bond
    is separated. Returns None for a SMILES that has no closed-shell reading (``C=C=[CH]=O``:
    a five-valent carbon).
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # the five-valent N of the authors' dialect is expected
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            return None
        editable = Chem.RWMol(mol)
        for atom in editable.GetAtoms():
            if atom.GetAtomicNum() != 7 or atom.GetFormalCharge() or atom.GetIsAromatic():
                continue
            valence = sum(b.GetBondTypeAsDouble() for b in atom.GetBonds())
            valence += atom.GetNumExplicitHs()
            if not atom.GetNoImplicit() and valence == 4:  # SMILES: next normal valence is 5
                atom.SetNumExplicitHs(atom.GetNumExplicitHs() + 1)
                atom.SetNoImplicit(True)
                valence = 5
            if valence != 5:
                continue
            for bond in atom.GetBonds():
                oxygen = bond.GetOtherAtom(atom)
                if oxygen.GetAtomicNum() == 8 and bond.GetBondType() == Chem.BondType.DOUBLE:
                    bond.SetBondType(Chem.BondType.SINGLE)
                    oxygen.SetFormalCharge(-1)
                    atom.SetFormalCharge(1)
                    break
        mol = editable.GetMol()
        try:
            Chem.SanitizeMol(mol)
        except Exception:
            return None
    return Chem.MolToSmiles(mol, isomericSmiles=False)


def smiles_heavy_atoms(smiles: str) -> int:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    return sum(atom.GetAtomicNum() > 1 for atom in mol.GetAtoms())


def read_authors(path: Path) -> dict[int, dict[str, str]]:
    """{N_I: {our key (or 'invalid:' + SMILES): the authors' SMILES}} from a SMILES list."""
    out: dict[int, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        smiles = line.strip()
        if not smiles or smiles.startswith("#"):
            continue
        key = authors_key(smiles) or f"invalid:{smiles}"
        out.setdefault(smiles_heavy_atoms(smiles), {})[key] = smiles
    return out


def cause_of_missing(
    key: str, smiles: str, variants: Mapping[str, Mapping[str, Any]] | None
) -> str:
    """Why an amon of the authors is not among ours (evidence in the variant sets)."""
    if key.startswith("invalid:"):
        return "no closed-shell reading (five-valent C): an artefact of the authors' generator"
    if "+" in key or "-" in key:
        return "charged group (nitro / N-oxide) that the authors write with five-valent N"
    if variants:
        if key in variants.get("plain", {}):
            return "our 'paper' filters remove it (the 'plain' rules keep it)"
        if key in variants.get("qm9_smiles", {}):
            return "only from QM9's SMILES graph, not from the graph perceived from QM9's geometry"
        if key in variants.get("qm9_smiles_plain", {}):
            return "only from QM9's SMILES graph under the 'plain' rules"
    return "not a fragment of any query graph we read (query missing or different graph)"


def compare_with_authors(
    ours: Mapping[int, Mapping[str, int]],
    authors: Mapping[int, Mapping[str, str]],
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    query_ids: Sequence[str] | None = None,
    sampled: Iterable[int] = (),
    only_charged: set[str] = frozenset(),
) -> dict[int, dict[str, Any]]:
    """Per N_I of the authors' list: counts, the set differences and their causes.

    ``ours``: {N_I: {key: first 9-heavy query row giving it}}. For the sizes in ``sampled``
    the authors' list is a sample (a slice of their file): only their amons are looked up in
    ours, and "ours" / "only ours" are not defined. ``only_charged``: our keys that only
    queries with formal charges give (the authors left such queries out).
    """
    out = {}
    sampled = set(sampled)
    for size in sorted(authors):
        mine, theirs = ours.get(size, {}), authors[size]
        only_ours = [] if size in sampled else sorted(set(mine) - set(theirs))
        only_theirs = sorted(set(theirs) - set(mine))
        causes = Counter()
        listed_theirs = []
        for key in only_theirs:
            cause = cause_of_missing(key, theirs[key], variants)
            causes[cause] += 1
            listed_theirs.append({"key": key, "authors_smiles": theirs[key], "cause": cause})
        listed_ours = []
        for key in only_ours:
            row = mine[key]
            listed_ours.append(
                {
                    "key": key,
                    "first_query": query_ids[row] if query_ids is not None else row,
                    "only_from_charged_queries": key in only_charged,
                }
            )
        out[size] = {
            "sample_of_authors": size in sampled,
            "ours": len(mine),
            "authors": len(theirs),
            "common": len(set(mine) & set(theirs)),
            "only_authors": len(only_theirs),
            "only_authors_by_cause": dict(causes.most_common()),
            "only_ours": None if size in sampled else len(only_ours),
            "only_ours_only_from_charged_queries": sum(
                entry["only_from_charged_queries"] for entry in listed_ours
            ),
            "only_authors_list": listed_theirs[:MAX_LISTED],
            "only_ours_list": listed_ours[:MAX_LISTED],
        }
    return out


def our_keys_by_size(
    workspace: Any,
) -> tuple[dict[int, dict[str, int]], list[str], set[str]]:
    """{N_I: {key: first 9-heavy query row}} of the 9-heavy queries, the query ids, and the
    keys that only queries with formal charges give."""
    store = workspace.amons
    n_queries = store.extracted_queries
    keys = store.amons.read_text("key")
    n_heavy = store.amons.read("n_heavy").astype(np.int64)
    heavy = query_heavy_atoms(workspace)[:n_queries]
    matrix = store.query_amon_matrix().tocsc()
    is9 = heavy == 9
    charged = charged_queries(workspace)[:n_queries]
    out: dict[int, dict[str, int]] = {}
    only_charged: set[str] = set()
    for amon in range(len(keys)):
        rows = matrix.indices[matrix.indptr[amon] : matrix.indptr[amon + 1]]
        rows = rows[is9[rows]]
        if len(rows):
            out.setdefault(int(n_heavy[amon]), {})[keys[amon]] = int(rows.min())
            if charged[rows].all():
                only_charged.add(keys[amon])
    return out, workspace.queries.read_text("id")[:n_queries], only_charged


# ---- groups the authors' extra amons need --------------------------------------------------
#: SMARTS of groups that amons only the authors have (NN, NO, NCO, NCN, OCF, O=CF) need in a
#: query (explicit-H molecules; "amine-type": three single bonds, no charge).
GROUP_PATTERNS = {
    "N-N, both amine-type (hydrazine)": "[NX3;!a;!$(N=*);!$([N+]);!$([N-])]"
    "-[NX3;!a;!$(N=*);!$([N+]);!$([N-])]",
    "N-O, amine-type N (hydroxylamine)": "[NX3;!a;!$(N=*);!$([N+]);!$([N-])]-[OX2]",
    "N-C(sp3)-O (hemiaminal)": "[NX3;!$([N+])]-[CX4]-[OX2]",
    "N-C(sp3)-N (aminal)": "[NX3;!$([N+])]-[CX4]-[NX3;!$([N+])]",
    "F-C(sp3)-O": "F-[CX4]-O",
    "acyl fluoride C(=O)F": "[CX3](=O)F",
}


def group_counts(workspace: Any, examples: int = 3) -> dict[str, Any]:
    """How many 9-heavy queries contain each group of :data:`GROUP_PATTERNS`."""
    from rdkit import Chem

    patterns = {name: Chem.MolFromSmarts(smarts) for name, smarts in GROUP_PATTERNS.items()}
    n_queries = workspace.amons.extracted_queries
    heavy = query_heavy_atoms(workspace)[:n_queries]
    found: dict[str, list[str]] = {name: [] for name in patterns}
    for row, molecule in enumerate(workspace.queries.iter_molecules(0, n_queries)):
        if heavy[row] != 9:
            continue
        mol = molecule.rdkit_mol
        for name, pattern in patterns.items():
            if mol.HasSubstructMatch(pattern):
                found[name].append(molecule.id)
    return {
        name: {"queries": len(ids), "examples": ids[:examples], "smarts": GROUP_PATTERNS[name]}
        for name, ids in found.items()
    }


# ---- graph-only variants -----------------------------------------------------------------------
def graph_amon_keys(
    molecules: Iterable[Any], max_heavy_atoms: int, rules: str
) -> tuple[dict[str, list], int]:
    """{key: [n_heavy, number of queries, first query id]} of graph-only amons, and failures."""
    from amondask.amons.graphs import find_amon_graphs
    from amondask.amons.query import query_graph

    found: dict[str, list] = {}
    failed = 0
    for molecule in molecules:
        try:
            graph = query_graph(molecule.rdkit_mol, record_id=molecule.id)
            amons = find_amon_graphs(graph, max_heavy_atoms, rules)
        except Exception:
            failed += 1
            continue
        for amon in amons:
            entry = found.get(amon.key)
            if entry is None:
                found[amon.key] = [amon.n_heavy, 1, molecule.id]
            else:
                entry[1] += 1
    return found, failed


def workspace_molecules(workspace: Any, rows: np.ndarray) -> Iterable[Any]:
    """The query Molecules of ``rows`` (ascending), streamed from the workspace."""
    wanted = set(rows.tolist())
    stop = int(rows.max()) + 1 if len(rows) else 0
    for row, molecule in enumerate(workspace.queries.iter_molecules(0, stop)):
        if row in wanted:
            yield molecule


def qm9_smiles_molecules(ids: Sequence[str]) -> Iterable[Any]:
    """QM9's SMILES (qm9pack, from the relaxed geometry) of the given ``qm9_<index>`` ids."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from qm9_sample import qm9_query_table

    from amondask.chem.molecule import Molecule

    table = qm9_query_table(None, n_heavy=9)
    smiles = dict(zip(table.Index.astype(int), table.SMILES, strict=True))
    for query_id in ids:
        index = int(query_id.split("_")[-1])
        if index in smiles:
            try:
                yield Molecule.from_smiles(smiles[index], query_id)
            except Exception:
                continue


#: name -> (query graphs from, rule set); "paper" re-derives the store's own set (a cross-check).
VARIANTS = {
    "paper": ("workspace", "paper"),
    "plain": ("workspace", "plain"),
    "qm9_smiles": ("smiles", "paper"),
    "qm9_smiles_plain": ("smiles", "plain"),
}


def variant_sets(
    workspace: Any, max_heavy_atoms: int, names: Sequence[str] = tuple(VARIANTS)
) -> dict[str, Any]:
    """Graph-only amon keys of the 9-heavy queries for each variant of :data:`VARIANTS`."""
    n_queries = workspace.amons.extracted_queries
    rows = np.flatnonzero(query_heavy_atoms(workspace)[:n_queries] == 9)
    all_ids = workspace.queries.read_text("id")
    ids = [all_ids[r] for r in rows.tolist()]
    out: dict[str, Any] = {}
    timing = {}
    for name in names:
        source, rules = VARIANTS[name]
        start = time.perf_counter()
        molecules = (
            workspace_molecules(workspace, rows)
            if source == "workspace"
            else qm9_smiles_molecules(ids)
        )
        out[name], failed = graph_amon_keys(molecules, max_heavy_atoms, rules)
        timing[name] = round(time.perf_counter() - start, 1)
        print(
            f"variant {name}: {len(out[name])} amons, {failed} failed, {timing[name]} s",
            flush=True,
        )
    out["_seconds"] = timing
    return out


def variant_counts(variants: Mapping[str, Mapping[str, list]]) -> dict[str, dict[int, int]]:
    out = {}
    for name, found in variants.items():
        if name.startswith("_"):
            continue
        out[name] = dict(sorted(Counter(entry[0] for entry in found.values()).items()))
    return out


# ---- output ------------------------------------------------------------------------------------
def markdown(result: Mapping[str, Any]) -> str:
    summary = result["summary"]
    sizes = sorted(AUTHORS_BY_N_HEAVY)
    lines = [
        "# The whole-QM9 amon set (N_I <= 7)",
        "",
        f"Workspace `{result['workspace']}` (git {result['git']}); "
        f"{summary['queries_extracted']} queries extracted, "
        f"{summary['queries_by_n_heavy'].get(9, 0)} of 9 heavy atoms "
        f"(the authors: {AUTHORS_QUERIES}). Load average at the end: "
        f"{result['load_average']}.",
        "",
        "| N_I | " + " | ".join(str(s) for s in sizes) + " | total |",
        "|---|" + "---|" * (len(sizes) + 1),
    ]

    def row(name: str, counts: Mapping[int, int]) -> str:
        values = [counts.get(s, 0) for s in sizes]
        return f"| {name} | " + " | ".join(str(v) for v in values) + f" | {sum(values)} |"

    lines.append(row("authors (9-heavy QM9)", AUTHORS_BY_N_HEAVY))
    lines.append(row("ours, 9-heavy queries", summary["distinct_amons_9_heavy_queries"]))
    lines.append(
        row(
            f"ours, 9-heavy queries without charges ({summary['queries_9_heavy_without_charges']})",
            summary["distinct_amons_9_heavy_queries_without_charges"],
        )
    )
    lines.append(row("ours, all QM9 queries", summary["distinct_amons_all_queries"]))
    for name, counts in result.get("variant_counts", {}).items():
        lines.append(row(f"graph-only, {name}", counts))
    lines += ["", "Per 9-heavy query (min / mean / max):", ""]
    for name, values in summary["per_9_heavy_query"].items():
        lines.append(f"- {name}: {values['min']} / {values['mean']} / {values['max']}")
    lines.append(
        f"- the authors' amon conformers per query: {AUTHORS_CONFORMERS_PER_QUERY['min']} / "
        f"{AUTHORS_CONFORMERS_PER_QUERY['mean']} / {AUTHORS_CONFORMERS_PER_QUERY['max']}"
    )
    comparison = result.get("authors_comparison")
    if comparison:
        lines += [
            "",
            "## Against the authors' own list",
            "",
            "| N_I | ours | authors | common | only authors | only ours (only from charged "
            "queries) |",
            "|---|---|---|---|---|---|",
        ]
        for size, entry in comparison.items():
            if entry["sample_of_authors"]:
                lines.append(
                    f"| {size} (sample of theirs) | {entry['ours']} (all) | {entry['authors']} | "
                    f"{entry['common']} | {entry['only_authors']} | - |"
                )
                continue
            lines.append(
                f"| {size} | {entry['ours']} | {entry['authors']} | {entry['common']} | "
                f"{entry['only_authors']} | {entry['only_ours']} "
                f"({entry['only_ours_only_from_charged_queries']}) |"
            )
        lines += ["", "Causes of the amons only the authors have:", ""]
        for size, entry in comparison.items():
            for cause, count in entry["only_authors_by_cause"].items():
                lines.append(f"- N_I = {size}: {count} x {cause}")
    lines += ["", "9-heavy queries with groups that the authors' extra amons need:", ""]
    for name, entry in result["groups_in_9_heavy_queries"].items():
        lines.append(f"- {name}: {entry['queries']}")
    errors = result["errors"]
    lines += ["", f"Error rows: {errors['total']}", ""]
    for name, entry in errors["by_type"].items():
        lines.append(f"- {name}: {entry['count']} ({', '.join(entry['records'])})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", "-w", type=Path, required=True)
    parser.add_argument("--authors", type=Path, help="the authors' amon SMILES (one a line)")
    parser.add_argument(
        "--authors-sample",
        type=Path,
        help="a slice of the authors' list for one more N_I (their amons are looked up in ours)",
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=sorted(VARIANTS),
        help="graph-only re-enumerations of the 9-heavy queries (no names: all of them)",
    )
    parser.add_argument(
        "--variants-max-heavy",
        type=int,
        help="largest N_I of the variants (default: the workspace's N_I; 5 is ~10x faster)",
    )
    parser.add_argument("--out", type=Path, help="JSON output (Markdown beside it)")
    args = parser.parse_args()

    from amondask.store import Workspace

    start = time.perf_counter()
    workspace = Workspace(args.workspace, mode="r")
    max_heavy_atoms = int(workspace.parameters.get("max_heavy_atoms", 7))
    result: dict[str, Any] = {
        "benchmark": "qm9_amon_set",
        "workspace": str(args.workspace),
        "parameters": workspace.parameters,
        "command": "python3 " + " ".join(sys.argv),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "authors": {
            "queries": AUTHORS_QUERIES,
            "by_n_heavy": AUTHORS_BY_N_HEAVY,
            "conformers_per_query": AUTHORS_CONFORMERS_PER_QUERY,
        },
        "summary": amon_set_summary(workspace),
        "errors": error_summary(workspace),
        "groups_in_9_heavy_queries": group_counts(workspace),
    }
    variants = None
    if args.variants is not None:
        variants = variant_sets(
            workspace, args.variants_max_heavy or max_heavy_atoms, args.variants or tuple(VARIANTS)
        )
        result["variants_max_heavy_atoms"] = args.variants_max_heavy or max_heavy_atoms
    if variants:
        result["variant_counts"] = variant_counts(variants)
        result["variant_seconds"] = variants["_seconds"]
    if args.authors:
        ours, ids, only_charged = our_keys_by_size(workspace)
        authors = read_authors(args.authors)
        sampled: set[int] = set()
        if args.authors_sample:
            sample = read_authors(args.authors_sample)
            sampled = set(sample) - set(authors)
            authors.update({size: sample[size] for size in sampled})
        result["authors_list"] = [str(args.authors), str(args.authors_sample or "")]
        result["authors_comparison"] = compare_with_authors(
            ours, authors, variants, ids, sampled, only_charged
        )
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
