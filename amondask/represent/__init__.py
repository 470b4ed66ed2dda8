"""Atomic representations: SLATM / aSLATM and their compact per-element form."""

from amondask.represent.blocks import (
    ElementBlock,
    compact_memory_report,
    element_blocks,
    element_column_masks,
    element_columns,
)
from amondask.represent.slatm import (
    SlatmLayout,
    n_angle_bins,
    n_distance_bins,
    slatm,
    slatm_mbtypes,
    slatm_with_layout,
)

__all__ = [
    "ElementBlock",
    "SlatmLayout",
    "compact_memory_report",
    "element_blocks",
    "element_column_masks",
    "element_columns",
    "n_angle_bins",
    "n_distance_bins",
    "slatm",
    "slatm_mbtypes",
    "slatm_with_layout",
]
