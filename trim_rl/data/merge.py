"""Join tree files collected in shards (``collect --shard I/N``) into one.

Every tree of every shard is validated (the file, line and field of a violation are named); a
problem id met twice, in one shard or two, is refused by name, and so are shards collected with other
settings (models, K, depth, seed, sampling: what the collector records in each tree).  The output is
written atomically: a refused merge leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence

from trim_rl.data.schema import validate_tree
from trim_rl.data.trees import iter_json_lines, write_trees

#: the tree fields that must agree across shards (``meta`` entries other than ``collected_by`` too)
SETTINGS = ("models", "max_interventions")


def _settings(tree: dict) -> dict:
    meta = {k: v for k, v in (tree.get("meta") or {}).items() if k != "collected_by"}
    return {**{k: tree.get(k) for k in SETTINGS}, **{f"meta.{k}": v for k, v in meta.items()}}


def merge_shards(out: str | os.PathLike, shards: Sequence[str | os.PathLike], force: bool = False) -> dict:
    """Validate and join ``shards`` into ``out``; returns counts.  ValueError names what is refused."""
    out = Path(out)
    if not shards:
        raise ValueError("merge: give at least one shard file")
    resolved = [Path(s).resolve() for s in shards]
    twice = next((shards[i] for i, r in enumerate(resolved) if r in resolved[:i]), None)
    if twice is not None:
        raise ValueError(f"merge: the shard {twice} is named twice")
    if out.resolve() in resolved:
        raise ValueError(f"merge: the output {out} is also a shard; write to another file")
    if out.is_dir():
        raise ValueError(f"merge: the output {out} is a folder; give a file name (.jsonl or .jsonl.gz)")
    if out.exists() and not out.is_file():  # the atomic rename would replace a device or a pipe
        raise ValueError(f"merge: the output {out} is not a regular file")
    if out.exists() and not force:
        raise ValueError(f"merge: {out} exists; pass --force to replace it")
    blocked = next((p for p in out.parents if p.exists()), None)
    if blocked is not None and not blocked.is_dir():
        raise ValueError(f"merge: the output {out} lies under {blocked}, which is a file")
    seen: dict[str, str] = {}
    ref: tuple[str, dict] | None = None
    trees = []
    per_shard = {}
    for shard in shards:
        n = 0
        for line_no, raw in iter_json_lines(shard):
            validate_tree(raw, shard, line_no)
            where = f"{shard}:{line_no}"
            pid = raw["problem_id"]
            if pid in seen:
                raise ValueError(f"merge: problem {pid!r} is in {seen[pid]} and again in {where}")
            seen[pid] = where
            settings = _settings(raw)
            if ref is None:
                ref = (where, settings)
            else:
                for k in sorted(set(ref[1]) | set(settings)):
                    if ref[1].get(k) != settings.get(k):
                        raise ValueError(f"merge: {where} was collected with {k} = {settings.get(k)!r}, "
                                         f"{ref[0]} with {ref[1].get(k)!r}; shards of one collection only")
            trees.append(raw)
            n += 1
        if n == 0:
            raise ValueError(f"merge: no trees in {shard}")
        per_shard[str(shard)] = n
    write_trees(out, trees, validate=False)  # validated while reading
    return {"out": str(out), "trees": len(trees), "shards": per_shard}
