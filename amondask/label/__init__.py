"""Labels: reference energies of amons (and queries) at a stated level of theory.

Labelers (:class:`XTBLabeler`, :class:`PySCFLabeler`, :class:`TableLabeler`,
:class:`QM9Labeler`) work on one :class:`~amondask.chem.Molecule` at a time; :func:`label_many`
labels a batch without stopping on a bad molecule, which is what a Dask task runs on a
partition. :func:`get_labeler` builds a labeler by name. Heavy back ends (tblite, PySCF, the
QM9 table) are imported when a labeler is built, not when this package is imported.
"""

from amondask.label.base import (
    STATUSES,
    TRAINABLE_STATUSES,
    Label,
    Labeler,
    LevelOfTheory,
    level_slug,
    require_single_level,
)
from amondask.label.batch import label_many
from amondask.label.registry import available_labelers, get_labeler, register_labeler
from amondask.label.topology import compare_topology, perceive_bonds, topology_changed

__all__ = [
    "STATUSES",
    "TRAINABLE_STATUSES",
    "Label",
    "Labeler",
    "LevelOfTheory",
    "PySCFLabeler",
    "QM9Labeler",
    "TableLabeler",
    "XTBLabeler",
    "available_labelers",
    "compare_topology",
    "estimated_cost_seconds",
    "get_labeler",
    "label_many",
    "level_slug",
    "perceive_bonds",
    "register_labeler",
    "require_single_level",
    "topology_changed",
]

_LAZY = {
    "XTBLabeler": "amondask.label.xtb",
    "PySCFLabeler": "amondask.label.pyscf",
    "TableLabeler": "amondask.label.table",
    "QM9Labeler": "amondask.label.table",
    "estimated_cost_seconds": "amondask.label.cost",
}


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'amondask.label' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
