"""Sweep each policy family's setting over a tree file into operating points."""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trim_rl.agents import catalog
from trim_rl.agents.catalog import ORACLE_POINTS, PolicyEntry
from trim_rl.agents.oracle import min_cost_to_correct, query_oracle_cost
from trim_rl.data.flat import FlatTrees
from trim_rl.evaluation.rollout import Records, query_records, rollout, weak_only_records

#: the sweep grids of TRIM-Thr and the random step router (:mod:`trim_rl.agents.catalog`'s, as lists)
THRESHOLDS = list(catalog.THRESHOLDS)
RANDOM_P = list(catalog.RANDOM_P)

#: step-level name -> display label, a view of :data:`trim_rl.agents.catalog.POLICIES` (aliases look up too)
LABELS = catalog.STEP_LABELS


@dataclass
class Point:
    setting: object
    records: Records
    requested_budget: float | None = None  # the budget a checkpoint (or a table entry) was asked to spend


def _oracle_curve(trees: FlatTrees, cost: np.ndarray, base: np.ndarray, to_strong_tokens: Callable) -> list[Point]:
    """Points of a 0/1 oracle at ~ORACLE_POINTS budgets (setting = lambda just above 1/cost)."""
    n = trees.n_trees
    need = np.flatnonzero(~base & np.isfinite(cost) & (cost > 0))
    order = need[np.argsort(cost[need], kind="stable")]
    ks = np.unique(np.linspace(0, order.size, min(ORACLE_POINTS, order.size + 1)).round().astype(int))
    pts = []
    for k in ks:
        bought = np.zeros(n, dtype=bool)
        bought[order[:k]] = True
        lam = 1.0 / (float(cost[order[k - 1]]) + 0.5) if k > 0 else float("inf")
        pts.append(Point(round(lam, 8) if k > 0 else "free", to_strong_tokens(bought)))
    return pts


def _rollout_grid(entry: PolicyEntry, trees: FlatTrees, seed: int, routing_errors: float) -> list[Point]:
    """The entry's step policy rolled over the trees at each setting of its grid."""
    return [Point(s, rollout(entry.make(s, seed), trees, routing_errors=routing_errors, seed=seed)) for s in entry.grid]


def _weak_only(entry: PolicyEntry, trees: FlatTrees, seed: int, routing_errors: float) -> list[Point]:
    # the weak path is read off the trees; with routing errors the constant policy's flipped decisions are played
    return [Point(entry.grid[0], weak_only_records(trees) if routing_errors == 0 else
                  rollout(entry.make(None, seed), trees, routing_errors=routing_errors, seed=seed))]


def _strong_only(entry: PolicyEntry, trees: FlatTrees, seed: int, routing_errors: float) -> list[Point]:
    return [Point(entry.grid[0], query_records(trees, np.ones(trees.n_trees, dtype=bool)))]


def _oracle_step(entry: PolicyEntry, trees: FlatTrees, seed: int, routing_errors: float) -> list[Point]:
    c, _ = min_cost_to_correct(trees)
    w = weak_only_records(trees)
    base = c == 0

    def records(bought):
        ok = base | bought
        # where the weak path is already correct the oracle pays nothing; elsewhere its DP path
        return Records(ok, np.where(bought, c, 0).astype(np.int64), w.weak_tokens, np.zeros_like(w.steps),
                       np.zeros_like(w.steps), w.steps)

    return _oracle_curve(trees, c, base, records)


def _oracle_query(entry: PolicyEntry, trees: FlatTrees, seed: int, routing_errors: float) -> list[Point]:
    w = weak_only_records(trees)
    c = query_oracle_cost(w.correct, trees.strong_only_correct, trees.strong_only_tokens)
    return _oracle_curve(trees, c, w.correct, lambda bought: query_records(trees, bought))


#: how each step-level entry's ``sweep`` turns into operating points
SWEEPS: dict[str, Callable[[PolicyEntry, FlatTrees, int, float], list[Point]]] = {
    "rollout": _rollout_grid, catalog.WEAK_ONLY: _weak_only, catalog.STRONG_ONLY: _strong_only,
    "oracle-step": _oracle_step, "oracle-query": _oracle_query,
}


def sweep(name: str, trees: FlatTrees, seed: int = 0, routing_errors: float = 0.0) -> list[Point]:
    """Operating points of a built-in step-level policy family (name or alias) on ``trees``."""
    entry = catalog.lookup(name, catalog.STEP)
    return SWEEPS[entry.sweep](entry, trees, seed, routing_errors)


def find_checkpoints(paths: list[str]) -> list:
    """Checkpoint folders named directly or found one or two levels below the given folders
    (``checkpoints/NAME`` and ``checkpoints/FAMILY/NAME``), each loaded once."""
    from pathlib import Path

    # trim_rl.agents.registry imports torch
    from trim_rl.agents.registry import load_checkpoint

    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "policy.json").exists():
            found.append(p)
        elif p.is_dir():
            subs = sorted({m.parent for pattern in ("*/policy.json", "*/*/policy.json") for m in p.glob(pattern)})
            if not subs:
                raise FileNotFoundError(f"{p}: no checkpoint (policy.json) here or one or two levels below")
            found.extend(subs)
        elif p.exists():
            raise NotADirectoryError(f"checkpoint folder {p} is a file; give the folder holding policy.json")
        else:
            raise FileNotFoundError(f"checkpoint folder {p} does not exist")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    return [load_checkpoint(f) for f in unique]


def checkpoint_families(policies: list) -> dict[str, list]:
    """Group checkpoints by family label (one frontier per family); a family found in several
    folders is split by folder (e.g. shipped vs freshly trained), named by the shortest tail of the
    folder's path (two parts at least) that tells them apart: ``TRIM-Agg [demo/checkpoints]``."""
    def parent(pol) -> str:  # a policy built in memory (no folder) joins its family's frontier as is
        return str(pol.folder.parent) if pol.folder is not None else "<in memory>"

    parents: dict[str, set] = {}
    for pol in policies:
        parents.setdefault(pol.family, set()).add(parent(pol))
    short: dict[str, str] = {}
    for folders in parents.values():
        if len(folders) > 1:
            short.update(short_names(sorted(folders)))
    fam: dict[str, list] = {}
    for pol in policies:
        key = pol.family if len(parents[pol.family]) == 1 else f"{pol.family} [{short[parent(pol)]}]"
        fam.setdefault(key, []).append(pol)
    return fam


def short_names(folders: list[str]) -> dict[str, str]:
    """Each folder by the shortest tail of its path, two parts at least, that no other folder shares."""
    from pathlib import PurePath

    parts = {f: PurePath(f).parts for f in folders}
    for k in range(2, max(len(p) for p in parts.values()) + 1):
        tails = {f: "/".join(p[-k:]) for f, p in parts.items()}
        if len(set(tails.values())) == len(tails):
            return tails
    return {f: f for f in folders}


EVAL_BUDGETS = (3.0, 5.0, 8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 35.0, 40.0)


def table_budgets(lo: float, hi: float) -> list[float]:
    """The budgets a budget table spanning [lo, hi] % is evaluated at: those of ``EVAL_BUDGETS`` inside
    it, and its top (whole percent) where that is 2 points or more above the last of them, so the
    frontier reaches as far as the checkpoint does."""
    budgets = [b for b in EVAL_BUDGETS if lo <= b <= hi]
    top = float(math.floor(hi))
    if top - (budgets[-1] if budgets else 0.0) >= 2.0:
        budgets.append(top)
    return budgets


def sweep_checkpoints(policies: list, trees: FlatTrees, seed: int = 0, routing_errors: float = 0.0) -> list[Point]:
    """A family's operating points: one per checkpoint (its budget, or its lambda); a budget-conditioned
    checkpoint gives one point per budget of ``EVAL_BUDGETS`` inside its calibration table (older ones
    without a table: per lambda of ``eval_lams``)."""
    pts = []
    for pol in policies:
        table = pol.budget_table
        if pol.budget_conditioned and table is not None:
            lo, hi = table.range()
            for b in table_budgets(lo, hi):
                lam = table.lam_for(b)
                pts.append(Point(lam, rollout(pol, trees, lam=lam, routing_errors=routing_errors, seed=seed), b))
        elif pol.budget_conditioned:
            lams = pol.meta.get("eval_lams") or list(np.geomspace(*pol.meta["lam_range"], 9))
            for lam in lams:
                pts.append(Point(float(lam), rollout(pol, trees, lam=float(lam), routing_errors=routing_errors, seed=seed)))
        else:
            pts.append(Point(float(pol.lam), rollout(pol, trees, lam=float(pol.lam), routing_errors=routing_errors,
                                                     seed=seed), pol.requested_budget))
    return sorted(pts, key=lambda p: (p.requested_budget is None, -(p.requested_budget or 0), p.setting))
