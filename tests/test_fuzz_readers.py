"""Property-based fuzzing of every reader: random bytes, mutated SMILES, and damaged (truncated,
shuffled, overlapping, rescaled) XYZ/SDF/CSV files built from good molecules.

For every input: no exception but InputError (the input as a whole unusable), no hang (a guard
of 60 s per read), an error row with record id, stage and a message that says what to do for
every bad record (a reader that crashes on a record writes "unexpected error", which fails), and
every good record read as the same molecule. Deterministic (``derandomize=True``); the number
of inputs tried is printed at the end (``pytest tests/test_fuzz_readers.py -s``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fuzz_helpers import TRIED, read_checked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem

from amondask.chem import read_molecules
from amondask.errors import ErrorRecord, InputError

EXAMPLES = 120  # per property: ~1,000 inputs in all, about a minute on an idle 2-core machine
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DATA = Path(__file__).resolve().parent / "data"


def _good_smiles() -> list[tuple[str, str]]:
    pairs = []
    for line in (DATA / "amon_test_molecules.smi").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            smiles, name = line.split()[:2]
            pairs.append((smiles, name))
    return pairs[:40]


GOOD = _good_smiles()
TOKENS = [
    "C", "c", "N", "n", "O", "o", "S", "F", "Cl", "Br", "(", ")", "1", "2", "%10", "=", "#",
    "[", "]", "+", "-", ".", "@", "@@", "/", "\\", "H", "[nH]", "[Na+]", "[U]", "[CH3]", "[NH4+]",
    "[O-]", "*", "[2H]", "[Fe]", " ", "\t", "\x00", "é", "C" * 30,
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def report_count():
    yield
    print(f"\nfuzz_readers: {sum(TRIED.values())} inputs tried {dict(sorted(TRIED.items()))}")


@st.composite
def mutated_smiles(draw) -> str:
    smiles = draw(st.sampled_from(GOOD))[0]
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(smiles)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "double"]))
        token = draw(st.sampled_from(TOKENS))
        if kind == "insert":
            smiles = smiles[:position] + token + smiles[position:]
        elif kind == "delete":
            smiles = smiles[:position] + smiles[position + 1 :]
        elif kind == "replace":
            smiles = smiles[:position] + token + smiles[position + 1 :]
        elif kind == "truncate":
            smiles = smiles[:position]
        else:
            smiles = smiles[:position] + smiles + smiles[position:]
    return smiles.replace("\n", " ")


def _keys(result) -> dict[str, str]:
    return {m.id: m.key for m in result.molecules}


GOOD_KEYS = _keys(read_molecules([(s, name) for s, name in GOOD]))


# ---- random bytes -------------------------------------------------------------------------------
@FUZZ
@given(
    data=st.binary(max_size=3000),
    suffix=st.sampled_from([".smi", ".csv", ".sdf", ".xyz", ".extxyz", ".smi.gz", ".sdf.gz"]),
)
def test_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    result = read_checked(path, "random bytes")
    if not isinstance(result, InputError):
        assert result.n_records >= 1


@FUZZ
@given(data=st.binary(min_size=1, max_size=2000), suffix=st.sampled_from([".smi", ".xyz"]))
def test_random_bytes_in_valid_gzip(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}.gz"
    path.write_bytes(gzip.compress(data))
    read_checked(path, "random bytes (gzip)")


# ---- SMILES -------------------------------------------------------------------------------------
@FUZZ
@given(bad=st.lists(mutated_smiles(), min_size=1, max_size=6), where=st.integers(0, 6))
def test_mutated_smiles_beside_good_ones(tmp_path, bad, where):
    good = GOOD[where : where + 3]
    lines = [f"{s} bad{k}" for k, s in enumerate(bad)]
    for k, (smiles, name) in enumerate(good):
        lines.insert(min(2 * k, len(lines)), f"{smiles} {name}")
    path = tmp_path / "mixed.smi"
    path.write_text("\n".join(lines) + "\n")
    result = read_checked(path, "mutated SMILES")
    assert not isinstance(result, InputError), result
    keys = _keys(result)
    for _, name in good:  # every good record read, as the same molecule
        assert keys.get(name) == GOOD_KEYS[name], (name, result.errors)
    # every record is accounted for: a molecule or an error row (a line that starts with "#"
    # is a comment)
    records = [s for s in bad if not f"{s} bad".strip().startswith("#")]
    assert result.n_records == len(good) + len(records)


@FUZZ
@given(bad=st.lists(mutated_smiles(), min_size=1, max_size=5))
def test_mutated_smiles_in_csv(tmp_path, bad):
    rows = ["id,smiles,note"] + [f'bad{k},"{s.replace(chr(34), "")}",x' for k, s in enumerate(bad)]
    rows += [f"{name},{smiles},y" for smiles, name in GOOD[:3]]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(rows) + "\n")
    result = read_checked(path, "mutated SMILES (CSV)")
    assert not isinstance(result, InputError), result
    keys = _keys(result)
    for _, name in GOOD[:3]:
        assert keys.get(name) == GOOD_KEYS[name]


@FUZZ
@given(bad=st.lists(mutated_smiles(), min_size=1, max_size=8))
def test_mutated_smiles_list(bad):
    result = read_checked([*bad, GOOD[0]], "mutated SMILES (list)")
    assert result.n_records == len(bad) + 1
    assert isinstance(result.errors, list)
    assert _keys(result).get(GOOD[0][1]) == GOOD_KEYS[GOOD[0][1]]


# ---- XYZ ----------------------------------------------------------------------------------------
def _xyz_frames() -> list[tuple[str, list[str]]]:
    """Good molecules with 3D coordinates as extended-XYZ frames: (id, lines)."""
    molecules = read_molecules([(s, n) for s, n in GOOD[:8]], geometry=True, seed=1).molecules
    frames = []
    for molecule in molecules:
        symbols = [Chem.GetPeriodicTable().GetElementSymbol(int(z)) for z in molecule.numbers]
        lines = [str(molecule.n_atoms), f"id={molecule.id}"]
        lines += [
            f"{s} {x:.6f} {y:.6f} {z:.6f}"
            for s, (x, y, z) in zip(symbols, molecule.positions, strict=True)
        ]
        frames.append((molecule.id, lines))
    return frames


FRAMES = _xyz_frames()


def _undamaged_keys(text: str, suffix: str) -> dict[str, str]:
    """Keys of the undamaged file's molecules: the reference for the damaged copies."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"undamaged{suffix}"
        path.write_text(text)
        result = read_molecules(path)
    assert not result.errors, result.errors
    return _keys(result)


XYZ_KEYS = _undamaged_keys("\n".join(l for _, f in FRAMES for l in f) + "\n", ".xyz")


def _damage_frame(draw, lines: list[str]) -> list[str]:
    lines = list(lines)
    n_atoms = len(lines) - 2
    kind = draw(
        st.sampled_from(
            ["shuffle", "drop", "duplicate", "overlap", "scale", "element", "count", "junk",
             "nan", "far"]
        )
    )  # fmt: skip
    i = draw(st.integers(2, len(lines) - 1))
    j = draw(st.integers(2, len(lines) - 1))
    if kind == "shuffle":
        body = lines[2:]
        order = draw(st.permutations(range(len(body))))
        lines = lines[:2] + [body[k] for k in order]
        if "\n".join(lines[2:]) == "\n".join(body):
            lines[i] = "X 0 0 0"  # the permutation left it as it was: damage it another way
    elif kind == "drop":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "overlap" and i != j:
        element = lines[j].split()[0]
        lines[j] = " ".join([element, *lines[i].split()[1:]])
    elif kind == "scale":
        factor = draw(st.sampled_from([1.8897, 0.1, 100.0]))
        scaled = []
        for line in lines[2:]:
            element, *xyz = line.split()
            scaled.append(" ".join([element, *(f"{float(v) * factor:.6f}" for v in xyz)]))
        lines = lines[:2] + scaled
    elif kind == "element":
        symbol = draw(st.sampled_from(["Xx", "U", "Fe", "?", "0", "999", "He", "c"]))
        lines[i] = " ".join([symbol, *lines[i].split()[1:]])
    elif kind == "count":
        lines[0] = str(draw(st.sampled_from([0, n_atoms - 1, n_atoms + 1, -1, 10**30])))
    elif kind == "junk":
        lines.insert(i, draw(st.sampled_from(["", "junk", "1 2 3", "C 1 2", "  ", "$$$$"])))
    elif kind == "nan":
        lines[i] = " ".join([lines[i].split()[0], "nan", "0", "inf"])
    else:
        lines[i] = " ".join([lines[i].split()[0], "1e6", "-1e6", "0"])
    return lines


@st.composite
def damaged_xyz(draw) -> tuple[str, int]:
    """An XYZ file of good frames with one damaged frame, and the index of the damaged one."""
    damaged = draw(st.integers(0, len(FRAMES) - 1))
    lines: list[str] = []
    for k, (_, frame) in enumerate(FRAMES):
        lines += _damage_frame(draw, frame) if k == damaged else frame
    if draw(st.booleans()):  # also cut the file short somewhere after the damage
        start = sum(len(f) for _, f in FRAMES[:damaged])
        cut = draw(st.integers(start, len(lines)))
        lines = lines[:cut]
    return "\n".join(lines) + "\n", damaged


@FUZZ
@given(case=damaged_xyz())
def test_damaged_xyz(tmp_path, case):
    text, damaged = case
    path = tmp_path / "frames.xyz"
    path.write_text(text)
    result = read_checked(path, "damaged XYZ")
    assert not isinstance(result, InputError), result
    keys = _keys(result)
    for frame_id, _ in FRAMES[:damaged]:  # frames before the damage are untouched
        assert keys.get(frame_id) == XYZ_KEYS[frame_id], (frame_id, result.errors)


@FUZZ
@given(data=st.data())
def test_truncated_xyz_at_any_byte(tmp_path, data):
    text = "\n".join(line for _, frame in FRAMES for line in frame) + "\n"
    cut = data.draw(st.integers(0, len(text)))
    path = tmp_path / "cut.xyz"
    path.write_text(text[:cut])
    result = read_checked(path, "truncated XYZ")
    if isinstance(result, InputError):
        assert not text[:cut].strip()  # only an empty file is unusable as a whole
        return
    complete = 0  # frames wholly before the cut are read
    position = 0
    for frame_id, frame in FRAMES:
        position += len("\n".join(frame)) + 1
        if position <= cut:
            complete += 1
            assert _keys(result).get(frame_id) == XYZ_KEYS[frame_id]


# ---- SDF ----------------------------------------------------------------------------------------
def _sdf_records() -> list[tuple[str, list[str]]]:
    molecules = read_molecules([(s, n) for s, n in GOOD[:8]], geometry=True, seed=1).molecules
    records = []
    for molecule in molecules:
        mol = molecule.rdkit_mol
        mol.SetProp("_Name", molecule.id)
        records.append((molecule.id, Chem.MolToMolBlock(mol).splitlines() + ["$$$$"]))
    return records


SDF = _sdf_records()
SDF_KEYS = _undamaged_keys("\n".join(l for _, r in SDF for l in r) + "\n", ".sdf")


@st.composite
def damaged_sdf(draw) -> tuple[str, int]:
    damaged = draw(st.integers(0, len(SDF) - 1))
    lines: list[str] = []
    for k, (_, record) in enumerate(SDF):
        if k != damaged:
            lines += record
            continue
        body = record[:-1]
        kind = draw(st.sampled_from(["truncate", "shuffle", "drop", "counts", "junk", "overlap"]))
        i = draw(st.integers(1, len(body) - 1))
        if kind == "truncate":
            body = body[:i]
        elif kind == "shuffle":
            atoms = body[4:]
            order = draw(st.permutations(range(len(atoms))))
            body = body[:4] + [atoms[o] for o in order]
            if body == record[:-1]:
                body[3] = "garbage counts line"
        elif kind == "drop":
            del body[i]
        elif kind == "counts":
            body[3] = draw(st.sampled_from(["999999999  0", "  a  b", "", "  1  0  0  0  0  0"]))
        elif kind == "junk":
            body.insert(
                i, draw(st.sampled_from(["junk", "M  CHG  1   1   5", "M  RAD  1   1   2"]))
            )
        else:  # copy the first atom's coordinates onto the second
            body[5] = body[4][:30] + body[5][30:]
        lines += [*body, "$$$$"]
    return "\n".join(lines) + "\n", damaged


@FUZZ
@given(case=damaged_sdf())
def test_damaged_sdf(tmp_path, case):
    text, damaged = case
    path = tmp_path / "records.sdf"
    path.write_text(text)
    result = read_checked(path, "damaged SDF")
    assert not isinstance(result, InputError), result
    keys = _keys(result)
    for k, (record_id, _) in enumerate(SDF):  # every other record is read, as before
        if k != damaged:
            assert keys.get(record_id) == SDF_KEYS[record_id], (record_id, result.errors)
    assert all(isinstance(e, ErrorRecord) for e in result.errors)
