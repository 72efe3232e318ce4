"""A cache of flattened tree files, so a tree file is parsed and validated once, not on every run.

Entries live under ``$TRIM_RL_CACHE/flat/`` named by the sha256 of the tree file's bytes (and the
flattener's version), as ``.npz`` arrays read with ``allow_pickle=False`` plus a JSON file for the
text fields: nothing is unpickled.  A damaged or foreign entry is rebuilt from the tree file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from trim_rl.data.flat import ARRAY_FIELDS, FlatTrees, load_flat
from trim_rl.fsutil import atomic_output, sha256_file

FLAT_VERSION = 1
_TEXT = ("problem_id", "dataset", "split", "problem", "answer")


def cache_root() -> Path:
    """``$TRIM_RL_CACHE`` or ``~/.cache/trim_rl``."""
    return Path(os.environ.get("TRIM_RL_CACHE", Path.home() / ".cache" / "trim_rl"))


def _entry(path: Path) -> Path:
    return cache_root() / "flat" / f"v{FLAT_VERSION}" / sha256_file(path)


def _read(entry: Path, source: str) -> FlatTrees | None:
    try:
        with np.load(entry.with_suffix(".npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in ARRAY_FIELDS}
        text = json.loads(entry.with_suffix(".json").read_text(encoding="utf-8"))
        f = FlatTrees(**arrays, **{k: list(text[k]) for k in _TEXT}, sources=[source], headers=list(text["headers"]))
    except (OSError, KeyError, ValueError, TypeError):
        return None
    n, m = f.n_trees, f.n_nodes
    ok = all(len(getattr(f, k)) == n for k in _TEXT) and f.tree_index.shape == (m,) and len(f.headers) in (0, n)
    return f if ok else None


def _write(f: FlatTrees, entry: Path) -> None:
    with atomic_output(entry.with_suffix(".npz"), "wb") as fh:
        np.savez(fh, **{k: getattr(f, k) for k in ARRAY_FIELDS})
    with atomic_output(entry.with_suffix(".json"), "w") as fh:
        json.dump({**{k: getattr(f, k) for k in _TEXT}, "headers": f.headers}, fh)


def load_flat_cached(path: str | os.PathLike) -> FlatTrees:
    """:func:`~trim_rl.data.flat.load_flat` of one tree file, through the cache."""
    path = Path(path)
    entry = _entry(path)
    f = _read(entry, str(path))
    if f is None:
        f = load_flat(path)  # validates every tree
        try:
            _write(f, entry)
        except OSError:
            pass  # a read-only cache only costs the next run a parse
    return f
