"""Pi-bond assignment: which bonds of a fragment are double so that every atom keeps its pi count.

After the multiple bonds of atoms with two or more pi bonds are fixed, each remaining atom with
one pi bond needs exactly one double bond to another such atom of the fragment: the assignments
are the perfect matchings of the graph on those atoms. Fragments of molecules are tiny and
sparse, so the matchings are listed by branching on the lowest unmatched atom.
"""

from __future__ import annotations

from collections.abc import Sequence


def perfect_matchings(
    atoms: int, neighbours: Sequence[int], *, limit: int | None = None
) -> list[tuple[tuple[int, int], ...]]:
    """All perfect matchings of the graph induced on the bitmask ``atoms``.

    Returns a list of matchings, each a tuple of ``(i, j)`` pairs with ``i < j``, sorted. An
    empty set of atoms has one (empty) matching; an odd one has none. With ``limit``, at most
    ``limit + 1`` matchings are listed (enough to tell "more than limit").
    """
    if atoms.bit_count() % 2:
        return []
    out: list[tuple[tuple[int, int], ...]] = []
    stack: list[tuple[int, tuple[tuple[int, int], ...]]] = [(atoms, ())]
    while stack:
        remaining, pairs = stack.pop()
        if not remaining:
            out.append(pairs)
            if limit is not None and len(out) > limit:
                break
            continue
        low = remaining & -remaining
        a = low.bit_length() - 1
        partners = neighbours[a] & remaining
        rest = remaining ^ low
        while partners:
            other = partners & -partners
            partners ^= other
            b = other.bit_length() - 1
            stack.append((rest ^ other, (*pairs, (a, b))))
    out.reverse()
    return out


def has_perfect_matching(atoms: int, neighbours: Sequence[int]) -> bool:
    """True if the graph induced on ``atoms`` has a perfect matching (branching search)."""
    if atoms.bit_count() % 2:
        return False
    stack = [atoms]
    seen: set[int] = set()
    while stack:
        remaining = stack.pop()
        if not remaining:
            return True
        if remaining in seen:
            continue
        seen.add(remaining)
        low = remaining & -remaining
        a = low.bit_length() - 1
        partners = neighbours[a] & remaining
        rest = remaining ^ low
        while partners:
            other = partners & -partners
            partners ^= other
            stack.append(rest ^ other)
    return False
