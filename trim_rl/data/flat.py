"""Flatten a tree file into numpy arrays so that stepping an episode is index arithmetic.

Nodes of all trees are concatenated; ``tree_root[t]`` is the global index of tree ``t``'s node 0 and
child pointers are global indices (``-1`` for a final step or the depth limit, ``-2`` for a
regeneration that is masked because the path used ``max_interventions``).
"""

from __future__ import annotations

import os
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from trim_rl.data.schema import CheckedTree
from trim_rl.data.trees import iter_trees

ABSENT = -2

# FlatTrees fields by kind: per-tree arrays and strings, the per-node columns taken from the checked
# trees as they are (with their dtypes), and the per-node history derived from them
_TREE_ARRAYS = ("max_interventions", "strong_only_tokens", "strong_only_steps", "strong_only_correct", "level")
_TREE_TEXTS = ("problem_id", "dataset", "split", "problem", "answer")
_NODE_COLUMNS = {
    "depth": np.int64, "interventions": np.int64, "parent_action": np.int8,
    "weak_tokens": np.int64, "weak_prm": np.float64, "weak_final": bool, "weak_correct": np.int8,
    "weak_step_correct": np.int8,
    "strong_present": bool, "strong_tokens": np.int64, "strong_prm": np.float64, "strong_final": bool,
    "strong_correct": np.int8, "strong_step_correct": np.int8,
}
_HISTORY = ("prev_min", "prev_prod", "in_prm", "in_tokens")


@dataclass
class FlatTrees:
    """All trees of one or more files as flat arrays (see module docstring)."""

    # per tree
    tree_root: np.ndarray
    n_nodes_per_tree: np.ndarray
    max_interventions: np.ndarray
    strong_only_tokens: np.ndarray
    strong_only_steps: np.ndarray
    strong_only_correct: np.ndarray
    level: np.ndarray  # float, nan where the tree has no level
    problem_id: list[str]
    dataset: list[str]
    split: list[str]
    problem: list[str]
    answer: list[str]
    # per node
    tree_index: np.ndarray
    depth: np.ndarray
    interventions: np.ndarray
    parent: np.ndarray
    parent_action: np.ndarray
    weak_tokens: np.ndarray
    weak_prm: np.ndarray
    weak_final: np.ndarray
    weak_correct: np.ndarray
    weak_step_correct: np.ndarray
    strong_present: np.ndarray
    strong_tokens: np.ndarray
    strong_prm: np.ndarray
    strong_final: np.ndarray
    strong_correct: np.ndarray
    strong_step_correct: np.ndarray
    keep_child: np.ndarray
    regen_child: np.ndarray
    # derived per node: the accepted history on the path from the root
    prev_min: np.ndarray  # min PRM score of accepted steps before this node (1.0 at the root)
    prev_prod: np.ndarray  # product of those scores (1.0 at the root)
    in_prm: np.ndarray  # PRM score of the step that led into this node (nan at the root)
    in_tokens: np.ndarray
    sources: list[str] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)

    @property
    def n_trees(self) -> int:
        return int(self.tree_root.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.depth.shape[0])

    @property
    def regen_allowed(self) -> np.ndarray:
        return self.regen_child != ABSENT

    def levels(self) -> list[np.ndarray]:
        """The node indices at depth 0, 1, 2, ... (ascending within a depth): parents come before
        their children."""
        if self.n_nodes == 0:
            return []
        order = np.argsort(self.depth, kind="stable")
        depth_sorted = self.depth[order]
        bounds = np.searchsorted(depth_sorted, np.arange(int(depth_sorted[-1]) + 2))
        return [order[bounds[d] : bounds[d + 1]] for d in range(int(depth_sorted[-1]) + 1)]

    # --- the cost of an escalation --------------------------------------------------------------
    def unseen_prefix_tokens(self) -> np.ndarray:
        """Per node: the tokens of the weak steps accepted on its path since the strong model last wrote a
        step (all of them when it never did), which a regenerate here makes the strong model prefill
        anew when its backend keeps no prefix cache.  The problem's prompt is not in the tree and is
        not counted."""
        unseen = np.zeros(self.n_nodes, dtype=np.int64)
        for nodes in self.levels():
            kc, rc = self.keep_child[nodes], self.regen_child[nodes]
            unseen[kc[kc >= 0]] = (unseen[nodes] + self.weak_tokens[nodes])[kc >= 0]
            unseen[rc[rc >= 0]] = 0  # the strong model wrote this step: it has seen the whole path
        return unseen

    def with_prefill_weight(self, weight: float) -> FlatTrees:
        """These trees with each regenerate costing its strong tokens plus ``weight`` x the prefix the
        strong model has not seen yet (:meth:`unseen_prefix_tokens`, rounded to whole tokens): what a
        strong backend without a prefix cache, or one that bills input tokens at ``weight`` of output
        tokens, pays.  Weight 0 is the plain cost (the trees themselves)."""
        if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)
                and weight >= 0):
            raise ValueError(f"prefill_weight must be a finite number >= 0, got {weight!r}")
        if weight == 0:
            return self
        extra = np.where(self.strong_present, np.rint(weight * self.unseen_prefix_tokens()), 0).astype(np.int64)
        return replace(self, strong_tokens=self.strong_tokens + extra)

    # --- reference solutions -------------------------------------------------------------------
    def weak_only(self) -> dict[str, np.ndarray]:
        """The all-keep path of every tree: correct, weak tokens, steps."""
        node = self.tree_root.copy()
        correct = np.zeros(self.n_trees, dtype=bool)
        tokens = np.zeros(self.n_trees, dtype=np.int64)
        steps = np.zeros(self.n_trees, dtype=np.int64)
        alive = np.ones(self.n_trees, dtype=bool)
        while alive.any():
            idx = node[alive]
            tokens[alive] += self.weak_tokens[idx]
            steps[alive] += 1
            fin = self.weak_final[idx]
            sub = np.flatnonzero(alive)
            correct[sub[fin]] = self.weak_correct[idx[fin]] == 1
            nxt = self.keep_child[idx]
            node[sub] = nxt
            alive[sub] = nxt >= 0
        return {"correct": correct, "weak_tokens": tokens, "steps": steps}

    def subset(self, trees: np.ndarray) -> FlatTrees:
        """A new FlatTrees holding only the given tree indices (in that order)."""
        trees = np.asarray(trees, dtype=np.int64)
        parts = [np.arange(self.tree_root[t], self.tree_root[t] + self.n_nodes_per_tree[t]) for t in trees]
        nodes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        remap = np.full(self.n_nodes, -1, dtype=np.int64)
        remap[nodes] = np.arange(nodes.size)

        def child(a):
            out = a[nodes].copy()
            ok = out >= 0
            out[ok] = remap[out[ok]]
            return out

        counts = self.n_nodes_per_tree[trees]
        roots = _roots(counts)
        tree_of = np.full(self.n_trees, -1, dtype=np.int64)
        tree_of[trees] = np.arange(len(trees))
        parent = self.parent[nodes].copy()
        parent[parent >= 0] = remap[parent[parent >= 0]]
        pick = lambda lst: [lst[t] for t in trees]  # noqa: E731
        return FlatTrees(
            tree_root=roots,
            n_nodes_per_tree=counts.copy(),
            **{k: getattr(self, k)[trees] for k in _TREE_ARRAYS},
            **{k: pick(getattr(self, k)) for k in _TREE_TEXTS},
            tree_index=tree_of[self.tree_index[nodes]],
            parent=parent,
            **{k: getattr(self, k)[nodes] for k in (*_NODE_COLUMNS, *_HISTORY)},
            keep_child=child(self.keep_child),
            regen_child=child(self.regen_child),
            sources=list(self.sources),
            headers=pick(self.headers) if self.headers else [],
        )


def _roots(counts: np.ndarray) -> np.ndarray:
    """The global index of each tree's root when trees of ``counts`` nodes are concatenated."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts.size else np.zeros(0, np.int64)


def flatten(checked: list[CheckedTree], sources: list[str] | None = None) -> FlatTrees:
    """Concatenate checked trees into a :class:`FlatTrees`."""
    counts = np.array([t.n_nodes for t in checked], dtype=np.int64)
    roots = _roots(counts)

    def cat(name, dtype):
        if not checked:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([np.asarray(getattr(t, name), dtype=dtype) for t in checked])

    tree_index = np.repeat(np.arange(len(checked), dtype=np.int64), counts)
    offset = roots[tree_index] if len(checked) else np.zeros(0, np.int64)

    def child(name):
        a = cat(name, np.int64)
        return np.where(a >= 0, a + offset, a)

    parent = cat("parent", np.int64)
    parent = np.where(parent >= 0, parent + offset, parent)
    f = FlatTrees(
        tree_root=roots,
        n_nodes_per_tree=counts,
        max_interventions=np.array([t.header["max_interventions"] for t in checked], dtype=np.int64),
        strong_only_tokens=np.array([t.header["strong_only"]["tokens"] for t in checked], dtype=np.int64),
        strong_only_steps=np.array([t.header["strong_only"]["steps"] for t in checked], dtype=np.int64),
        strong_only_correct=np.array([t.header["strong_only"]["correct"] for t in checked], dtype=bool),
        level=np.array([np.nan if t.header["level"] is None else t.header["level"] for t in checked], dtype=np.float64),
        **{k: [t.header[k] for t in checked] for k in _TREE_TEXTS},
        tree_index=tree_index,
        parent=parent,
        **{k: cat(k, dtype) for k, dtype in _NODE_COLUMNS.items()},
        keep_child=child("keep"),
        regen_child=child("regenerate"),
        prev_min=np.ones(int(counts.sum())),
        prev_prod=np.ones(int(counts.sum())),
        in_prm=np.full(int(counts.sum()), np.nan),
        in_tokens=np.zeros(int(counts.sum()), dtype=np.int64),
        sources=list(sources or []),
        headers=[{k: v for k, v in t.header.items() if k not in ("problem",)} for t in checked],
    )
    _fill_history(f)
    return f


def _fill_history(f: FlatTrees) -> None:
    """Propagate accepted-step features from parents to children, level by level."""
    for nodes in f.levels()[1:]:
        par = f.parent[nodes]
        regen = f.parent_action[nodes] == 1
        score = np.where(regen, f.strong_prm[par], f.weak_prm[par])
        tokens = np.where(regen, f.strong_tokens[par], f.weak_tokens[par])
        f.in_prm[nodes] = score
        f.in_tokens[nodes] = tokens
        f.prev_min[nodes] = np.minimum(f.prev_min[par], score)
        f.prev_prod[nodes] = f.prev_prod[par] * score


def load_flat(*paths: str | os.PathLike) -> FlatTrees:
    """Read, validate and flatten one or more tree files into a single :class:`FlatTrees`."""
    checked: list[CheckedTree] = []
    for p in paths:
        for _, t in iter_trees(p):
            checked.append(t)
    return flatten(checked, sources=[str(Path(p)) for p in paths])


_PER_TREE = ("n_nodes_per_tree", "max_interventions", "strong_only_tokens", "strong_only_steps", "strong_only_correct",
             "level")
_PER_NODE = ("depth", "interventions", "parent_action", "weak_tokens", "weak_prm", "weak_final", "weak_correct",
             "weak_step_correct", "strong_present", "strong_tokens", "strong_prm", "strong_final", "strong_correct",
             "strong_step_correct", "prev_min", "prev_prod", "in_prm", "in_tokens")
_NODE_POINTERS = ("parent", "keep_child", "regen_child")  # global node indices (or -1 / ABSENT)
_TEXT = ("problem_id", "dataset", "split", "problem", "answer")
ARRAY_FIELDS = ("tree_root", "tree_index", *_PER_TREE, *_PER_NODE, *_NODE_POINTERS)


def concat(parts: list[FlatTrees]) -> FlatTrees:
    """One :class:`FlatTrees` holding the trees of ``parts`` in order (node indices shifted)."""
    if len(parts) == 1:
        return parts[0]
    node_off = np.cumsum([0] + [p.n_nodes for p in parts[:-1]])
    tree_off = np.cumsum([0] + [p.n_trees for p in parts[:-1]])
    kw: dict = {}
    for name in (*_PER_TREE, *_PER_NODE):
        kw[name] = np.concatenate([getattr(p, name) for p in parts])
    kw["tree_root"] = np.concatenate([p.tree_root + o for p, o in zip(parts, node_off)])
    kw["tree_index"] = np.concatenate([p.tree_index + o for p, o in zip(parts, tree_off)])
    for name in _NODE_POINTERS:
        kw[name] = np.concatenate([np.where(getattr(p, name) >= 0, getattr(p, name) + o, getattr(p, name))
                                   for p, o in zip(parts, node_off)])
    for name in _TEXT:
        kw[name] = [v for p in parts for v in getattr(p, name)]
    kw["sources"] = [s for p in parts for s in p.sources]
    kw["headers"] = [h for p in parts for h in p.headers]
    return FlatTrees(**kw)
