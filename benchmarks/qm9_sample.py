"""QM9 molecules as (numbers, positions) pairs for the representation and kernel benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def _parse(elements: str, xyz: str) -> tuple[np.ndarray, np.ndarray]:
    numbers = np.array([SYMBOLS[s] for s in ast.literal_eval(elements)], dtype=np.int64)
    positions = np.array(ast.literal_eval(xyz.replace("0.]", "0.0]")), dtype=np.float64)
    return numbers, positions


def qm9_table() -> pd.DataFrame:
    import qm9pack

    directory = Path(qm9pack.__file__).parent / "data"
    frames = [
        pd.read_csv(directory / f"qm9_part{part}.csv", usecols=["Index", "Elements", "XYZ_Ang"])
        for part in (1, 2, 3)
    ]
    table = pd.concat(frames, ignore_index=True).sort_values("Index", ignore_index=True)
    table["n_heavy"] = table.Elements.map(lambda s: sum(e != "H" for e in ast.literal_eval(s)))
    return table


def qm9_molecules(
    n: int, *, max_heavy: int | None = None, seed: int | None = 0, table: pd.DataFrame | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` QM9 molecules (at most ``max_heavy`` heavy atoms): a random sample for ``seed``,
    else the first ``n`` by QM9 index."""
    table = qm9_table() if table is None else table
    if max_heavy is not None:
        table = table[table.n_heavy <= max_heavy]
    if len(table) < n:
        raise ValueError(f"only {len(table)} QM9 molecules with <= {max_heavy} heavy atoms")
    if seed is None:
        chosen = table.iloc[:n]
    else:
        chosen = table.sample(n=n, random_state=seed).sort_values("Index")
    return [_parse(e, x) for e, x in zip(chosen.Elements, chosen.XYZ_Ang, strict=True)]
