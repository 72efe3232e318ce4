"""The ``trim_rl.tree/v1`` schema: one problem's trajectory tree per JSON line.

:func:`validate_tree` checks every invariant of the design notes and returns the tree's nodes in a
checked, compact form (:class:`CheckedTree`) that :mod:`trim_rl.data.flat` turns into arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trim_rl.data.errors import TreeFormatError

SCHEMA = "trim_rl.tree/v1"
#: A solution is truncated (as incorrect) when it reaches this many steps without a final answer.
MAX_INT = 2**31 - 1
MAX_STEPS = 30


@dataclass
class CheckedTree:
    """A validated tree: per-node columns in node order plus the tree-level fields."""

    header: dict[str, Any]
    weak_tokens: list[int] = field(default_factory=list)
    weak_prm: list[float] = field(default_factory=list)
    weak_final: list[bool] = field(default_factory=list)
    weak_correct: list[int] = field(default_factory=list)  # -1 when not final
    weak_step_correct: list[int] = field(default_factory=list)  # -1 when unknown
    strong_present: list[bool] = field(default_factory=list)
    strong_tokens: list[int] = field(default_factory=list)
    strong_prm: list[float] = field(default_factory=list)
    strong_final: list[bool] = field(default_factory=list)
    strong_correct: list[int] = field(default_factory=list)
    strong_step_correct: list[int] = field(default_factory=list)
    keep: list[int] = field(default_factory=list)  # local child index, -1 for null
    regenerate: list[int] = field(default_factory=list)  # local child index, -1 null, -2 absent
    depth: np.ndarray | None = None
    interventions: np.ndarray | None = None
    parent: np.ndarray | None = None
    parent_action: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.keep)


class _Checker:
    """Raises :class:`TreeFormatError` with the file, line and field of a violation."""

    def __init__(self, path, line):
        self.path, self.line = path, line

    def fail(self, fld: str, msg: str):
        raise TreeFormatError(self.path, self.line, fld, msg)

    def get(self, obj: dict, key: str, where: str, required: bool = True):
        if key not in obj:
            if required:
                self.fail(f"{where}{key}", "missing required field")
            return None
        return obj[key]

    def str_(self, obj, key, where="", required=True, allow_none=False):
        v = self.get(obj, key, where, required)
        if v is None and (allow_none or not required):
            return v
        if not isinstance(v, str):
            self.fail(f"{where}{key}", f"must be a string, got {_type(v)}")
        return v

    def int_(self, obj, key, where="", lo=None, required=True, allow_none=False, hi=MAX_INT):
        v = self.get(obj, key, where, required)
        if v is None and (allow_none or not required):
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(f"{where}{key}", f"must be an integer, got {_type(v)} {v!r}")
        if lo is not None and v < lo:
            self.fail(f"{where}{key}", f"must be >= {lo}, got {v}")
        if v > hi:  # numpy's int64 columns, and no real count comes near this
            self.fail(f"{where}{key}", f"must be <= {hi}, got an integer of {len(str(v))} digits")
        return v

    def child(self, node, key, where, i, n):
        """A link from node ``i`` of ``n`` to a child: -1 for null, else a node index (not the root, not ``i``)."""
        v = self.get(node, key, where)
        if v is None:
            return -1
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(f"{where}{key}", f"must be a node index or null, got {_type(v)} {v!r}")
        if not 0 < v < n or v == i:
            self.fail(f"{where}{key}", f"child index {v} out of range (tree has {n} nodes; node 0 is the root)")
        return v

    def bool_(self, obj, key, where="", required=True):
        return self._typed(obj, key, where, required, bool, "true or false", show_value=True)

    def prob(self, obj, key, where=""):
        v = self.get(obj, key, where)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(f"{where}{key}", f"must be a number, got {_type(v)} {v!r}")
        v = float(v)
        if not math.isfinite(v) or v < 0.0 or v > 1.0:
            self.fail(f"{where}{key}", f"must be a finite number in [0, 1], got {v}")
        return v

    def dict_(self, obj, key, where="", required=True):
        return self._typed(obj, key, where, required, dict, "an object", show_value=False)

    def _typed(self, obj, key, where, required, kind: type, expected: str, show_value: bool):
        v = self.get(obj, key, where, required)
        if v is None and not required:
            return v
        if not isinstance(v, kind):
            self.fail(f"{where}{key}", f"must be {expected}, got {_type(v)}" + (f" {v!r}" if show_value else ""))
        return v

def _type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), type(v).__name__
    )


def _step(c: _Checker, step: dict, where: str) -> tuple[int, float, bool, int, int]:
    tokens = c.int_(step, "tokens", where, lo=0)
    prm = c.prob(step, "prm", where)
    final = c.bool_(step, "final", where)
    correct = c.bool_(step, "correct", where, required=final)
    if correct is not None and not final:
        c.fail(f"{where}correct", "only a final step carries 'correct'")
    c.str_(step, "text", where, required=False)
    step_correct = c.bool_(step, "step_correct", where, required=False)
    return (
        tokens,
        prm,
        final,
        -1 if correct is None else int(correct),
        -1 if step_correct is None else int(step_correct),
    )


def validate_tree(obj: Any, path=None, line: int | None = None) -> CheckedTree:
    """Check one decoded JSON line against ``trim_rl.tree/v1``; return its checked columns."""
    c = _Checker(path, line)
    if not isinstance(obj, dict):
        c.fail("<line>", f"must be a JSON object, got {_type(obj)}")
    schema = c.str_(obj, "schema")
    if schema != SCHEMA:
        c.fail("schema", f"must be {SCHEMA!r}, got {schema!r}")
    header: dict[str, Any] = {"schema": schema}
    for key in ("problem_id", "dataset", "split", "problem", "answer"):
        header[key] = c.str_(obj, key)
    header["level"] = c.int_(obj, "level", required=False, allow_none=True)
    models = c.dict_(obj, "models")
    header["models"] = {k: c.str_(models, k, "models.") for k in ("weak", "strong", "prm")}
    k_max = c.int_(obj, "max_interventions", lo=0)
    header["max_interventions"] = k_max
    so = c.dict_(obj, "strong_only")
    header["strong_only"] = {
        "tokens": c.int_(so, "tokens", "strong_only.", lo=1),  # the denominator of every cost
        "steps": c.int_(so, "steps", "strong_only.", lo=1),
        "correct": c.bool_(so, "correct", "strong_only."),
    }
    if header["strong_only"]["steps"] > MAX_STEPS:
        c.fail("strong_only.steps", f"must be <= {MAX_STEPS}, got {header['strong_only']['steps']}")
    meta = c.dict_(obj, "meta", required=False)
    if meta is not None:
        header["meta"] = meta
    nodes = c.get(obj, "nodes", "")
    if not isinstance(nodes, list) or not nodes:
        c.fail("nodes", f"must be a non-empty array, got {_type(nodes)}")
    n = len(nodes)
    t = CheckedTree(header=header)
    for i, node in enumerate(nodes):
        w = f"nodes[{i}]."
        if not isinstance(node, dict):
            c.fail(f"nodes[{i}]", f"must be an object, got {_type(node)}")
        wt, wp, wf, wc, wsc = _step(c, c.dict_(node, "weak", w), f"{w}weak.")
        keep = c.child(node, "keep", w, i, n)
        if "regenerate" in node:
            regen = c.child(node, "regenerate", w, i, n)
            strong = c.dict_(node, "strong", w)
        else:
            regen = -2
            strong = c.dict_(node, "strong", w, required=False)
        if strong is not None:
            st, sp, sf, sc, ssc = _step(c, strong, f"{w}strong.")
        else:
            st, sp, sf, sc, ssc = 0, 0.0, False, -1, -1
        t.weak_tokens.append(wt), t.weak_prm.append(wp), t.weak_final.append(wf)
        t.weak_correct.append(wc), t.weak_step_correct.append(wsc)
        t.strong_present.append(strong is not None)
        t.strong_tokens.append(st), t.strong_prm.append(sp), t.strong_final.append(sf)
        t.strong_correct.append(sc), t.strong_step_correct.append(ssc)
        t.keep.append(keep), t.regenerate.append(regen)
    _check_structure(c, t, k_max)
    return t


def _check_structure(c: _Checker, t: CheckedTree, k_max: int) -> None:
    """Walk the tree from node 0: unique parents, no cycles, every node reachable, masks consistent."""
    n = t.n_nodes
    depth = np.full(n, -1, dtype=np.int64)
    inter = np.zeros(n, dtype=np.int64)
    parent = np.full(n, -1, dtype=np.int64)
    parent_action = np.full(n, -1, dtype=np.int8)
    depth[0] = 0
    stack = [0]
    while stack:
        i = stack.pop()
        w = f"nodes[{i}]."
        d = int(depth[i])
        last = d == MAX_STEPS - 1
        keep, regen = t.keep[i], t.regenerate[i]
        _check_link_end(c, f"{w}keep", keep, "weak", t.weak_final[i], last)
        if regen == -2 and inter[i] < k_max:
            c.fail(
                f"{w}regenerate",
                f"missing: the path used {inter[i]} of max_interventions={k_max} regenerations",
            )
        if regen != -2 and inter[i] >= k_max:
            c.fail(
                f"{w}regenerate",
                f"present past max_interventions: the path already used {inter[i]} of {k_max} regenerations",
            )
        _check_link_end(c, f"{w}regenerate", regen, "strong", t.strong_final[i], last)
        for action, child in ((0, keep), (1, regen)):
            if child < 0:
                continue
            fld = f"{w}{'keep' if action == 0 else 'regenerate'}"
            if depth[child] >= 0 or child == 0:
                if _is_ancestor(parent, child, i):
                    c.fail(fld, f"child {child} is an ancestor of node {i}: the tree has a cycle")
                c.fail(fld, f"node {child} already has parent {parent[child]}: every node needs exactly one parent")
            depth[child] = d + 1
            inter[child] = inter[i] + action
            parent[child] = i
            parent_action[child] = action
            stack.append(child)
    unreachable = np.flatnonzero(depth < 0)
    if unreachable.size:
        j = int(unreachable[0])
        c.fail(f"nodes[{j}]", "is not reachable from node 0 (no parent points to it)")
    t.depth, t.interventions, t.parent, t.parent_action = depth, inter, parent, parent_action


def _check_link_end(c: _Checker, fld: str, child: int, model: str, final: bool, last: bool) -> None:
    """A keep / regenerate link (``child``: -1 null, -2 absent) is null exactly where the path ends: the
    ``model``'s step is ``final`` or the node is the ``last`` one the depth limit allows."""
    if child == -1 and not (final or last):
        c.fail(fld, f"is null but the {model} step is not final (and the depth limit is not reached)")
    if child >= 0 and final:
        c.fail(fld, f"must be null: the {model} step is final, got child {child}")
    if child >= 0 and last:
        c.fail(fld, f"must be null: node is at the depth limit ({MAX_STEPS} steps)")


def _is_ancestor(parent: np.ndarray, a: int, b: int) -> bool:
    """True when node ``a`` lies on the path from the root to node ``b``."""
    while b >= 0:
        if b == a:
            return True
        b = int(parent[b])
    return False
