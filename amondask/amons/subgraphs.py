"""Output-sensitive enumeration of connected induced subgraphs (Wernicke's ESU, on bitmasks).

Every connected set of at most ``max_size`` vertices is produced exactly once: a set is grown
from its smallest vertex ``v`` and only ever extended by vertices larger than ``v`` that are
*exclusive* neighbours of the vertex just added (adjacent to it but neither in nor adjacent to
the set before), which makes each set reachable along exactly one path of the search tree.

Complexity: every node of the search tree is an output set and does ``O(deg)`` bitmask
operations on ``n``-bit integers, so the enumeration takes ``O(|output| * Delta * n / w)`` time
(``Delta`` the largest degree, ``w`` the machine word) and never visits a disconnected subset.
For molecules (``Delta <= 4``) and ``max_size = 7`` this is a few hundred sets for a
9-heavy-atom molecule and grows linearly with molecule size for chains and peptides.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def connected_subgraphs(neighbours: Sequence[int], max_size: int) -> Iterator[int]:
    """Yield every connected vertex set of size 1..``max_size`` as a bitmask, exactly once.

    ``neighbours[i]`` is the bitmask of the neighbours of vertex ``i``. Order: by smallest
    vertex, then depth-first.
    """
    n = len(neighbours)
    if max_size < 1:
        return
    for v in range(n):
        above_v = ~((1 << (v + 1)) - 1)
        start = 1 << v
        # stack of (set, closed neighbourhood of set, extension candidates, size)
        stack = [(start, neighbours[v] | start, neighbours[v] & above_v, 1)]
        while stack:
            subset, closed, extension, size = stack.pop()
            yield subset
            if size == max_size:
                continue
            while extension:
                low = extension & -extension
                extension ^= low
                w = low.bit_length() - 1
                nbr = neighbours[w]
                new_extension = extension | (nbr & ~closed & above_v)
                stack.append((subset | low, closed | nbr, new_extension, size + 1))
