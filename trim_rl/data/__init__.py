"""Trajectory trees (schema ``trim_rl.tree/v1``), benchmark problems and answer grading."""

from trim_rl.data.errors import TreeFormatError
from trim_rl.data.schema import MAX_STEPS, SCHEMA
from trim_rl.data.trees import read_trees, write_trees, iter_trees
from trim_rl.data.flat import FlatTrees, load_flat

__all__ = [
    "MAX_STEPS",
    "SCHEMA",
    "FlatTrees",
    "TreeFormatError",
    "iter_trees",
    "load_flat",
    "read_trees",
    "write_trees",
]
