"""Labelers by name: ``get_labeler("xtb")``, ``get_labeler("pyscf", basis="sto-3g")``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amondask import config
from amondask.errors import LabelerSetupError
from amondask.label.base import Labeler

_FACTORIES: dict[str, Callable[..., Labeler]] = {}


def register_labeler(name: str, factory: Callable[..., Labeler]) -> None:
    """Make ``factory(**options)`` available as ``get_labeler(name, **options)``."""
    _FACTORIES[name.lower()] = factory


def available_labelers() -> list[str]:
    """Registered labeler names, sorted."""
    return sorted(_FACTORIES)


def get_labeler(name: str | None = None, **options: Any) -> Labeler:
    """A labeler by registry name (default ``amondask.label.default``), built with ``options``.

    Raises LabelerSetupError for an unknown name or when the labeler cannot be set up.
    """
    name = str(config.get("label.default", name)).lower()
    factory = _FACTORIES.get(name)
    if factory is None:
        raise LabelerSetupError(
            f"unknown labeler {name!r}; choose one of {', '.join(available_labelers())} or "
            "register your own with amondask.label.register_labeler"
        )
    return factory(**options)


def _xtb(**options: Any) -> Labeler:
    from amondask.label.xtb import XTBLabeler

    return XTBLabeler(**options)


def _pyscf(**options: Any) -> Labeler:
    from amondask.label.pyscf import PySCFLabeler

    return PySCFLabeler(**options)


def _table(**options: Any) -> Labeler:
    from amondask.label.table import TableLabeler

    return TableLabeler(**options)


def _qm9(**options: Any) -> Labeler:
    from amondask.label.table import QM9Labeler

    return QM9Labeler(**options)


register_labeler("xtb", _xtb)
register_labeler("pyscf", _pyscf)
register_labeler("table", _table)
register_labeler("qm9", _qm9)
