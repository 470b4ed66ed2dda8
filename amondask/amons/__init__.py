"""Amons: the small H-capped fragments a molecule is made of, with counts and 3D geometries.

    >>> [(amon.key, amon.count) for amon in extract_amons("CCO", 2, geometry=False)]
    [('C', 2), ('O', 1), ('CC', 1), ('CO', 1)]

Modules: :mod:`.subgraphs` (connected-subgraph enumeration), :mod:`.pi_bonds` (pi-bond
assignment), :mod:`.rings` and :mod:`.rules` (the "plain" and "paper" rule sets),
:mod:`.graphs` (graph-level amons and keys), :mod:`.geometry` (caps, MMFF94, conformers),
:mod:`.extract` (the public :func:`extract_amons`), :mod:`.noncovalent` (amons of several
molecules in contact, or of one folded onto itself) and :mod:`.periodic` (H-capped clusters
cut from a crystal or a sheet).
"""

from amondask.amons.extract import Amon, AmonConformer, extract_amons
from amondask.amons.graphs import find_amon_graphs
from amondask.amons.query import query_graph
from amondask.amons.rules import RULE_SETS

__all__ = ["RULE_SETS", "Amon", "AmonConformer", "extract_amons", "find_amon_graphs", "query_graph"]
