"""Operating points of the query-level routers (:mod:`trim_rl.agents.query`) on a test tree file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_rl.agents import catalog
from trim_rl.agents import query as Q
from trim_rl.data.flat import FlatTrees
from trim_rl.evaluation.rollout import Records, weak_only_records
from trim_rl.evaluation.sweep import Point

#: the query-level routers' sweep grid (:data:`trim_rl.agents.catalog.FRACTIONS`, as a list)
FRACTIONS = list(catalog.FRACTIONS)
#: query-level name -> display label, a view of :data:`trim_rl.agents.catalog.POLICIES`
LABELS = catalog.QUERY_LABELS


@dataclass
class QueryContext:
    """Training and validation trees of the learned routers (never the test trees)."""

    train: FlatTrees
    val: FlatTrees
    seed: int = 0
    _cache: dict | None = None

    def embeddings(self, table: Q.ProblemTable) -> np.ndarray:
        if self._cache is None:
            self._cache = {}
        missing = [t for t in table.text if t not in self._cache]
        if missing:
            uniq = sorted(set(missing))
            for t, e in zip(uniq, Q.embed(uniq)):
                self._cache[t] = e
        return np.stack([self._cache[t] for t in table.text])


def _records(trees: FlatTrees, routed: np.ndarray, weak: Records, weak_first: bool) -> Records:
    s = routed
    return Records(
        correct=np.where(s, trees.strong_only_correct, weak.correct),
        strong_tokens=np.where(s, trees.strong_only_tokens, 0),
        weak_tokens=weak.weak_tokens if weak_first else np.where(s, 0, weak.weak_tokens),
        discarded_weak_tokens=np.where(s, weak.weak_tokens, 0) if weak_first else np.zeros_like(weak.weak_tokens),
        interventions=np.zeros(trees.n_trees, dtype=np.int64),
        steps=np.where(s, trees.strong_only_steps, weak.steps),
    )


def _random_query(name: str, trees: FlatTrees, ctx: QueryContext | None, weak: Records) -> tuple[list[Point], dict]:
    pts = []
    for p in catalog.lookup(name).grid:
        rec = Records(correct=(1 - p) * weak.correct + p * trees.strong_only_correct,
                      strong_tokens=p * trees.strong_only_tokens,
                      weak_tokens=(1 - p) * weak.weak_tokens, discarded_weak_tokens=np.zeros(trees.n_trees),
                      interventions=np.zeros(trees.n_trees), steps=weak.steps)
        pts.append(Point(p, rec))
    return pts, {"note": "expected accuracy and cost of routing a random fraction of the problems"}


def _smoothie(name: str, trees: FlatTrees, ctx: QueryContext | None, weak: Records) -> tuple[list[Point], dict]:
    has_text = any("text" in str(h) for h in trees.headers[:1])
    return [], {"not_applicable": "needs solution texts in the trees (real collected data); "
                                  "simulated trees carry none" if not has_text else "not implemented"}


def _automix(name: str, trees: FlatTrees, ctx: QueryContext | None, weak: Records) -> tuple[list[Point], dict]:
    entry = catalog.lookup(name)
    last, mins = Q.weak_final_prm(trees)
    score = 1.0 - (mins if entry.sweep == "automix-min" else last)
    pts = [Point(round(1.0 - thr, 6) if np.isfinite(thr) else "none", _records(trees, r, weak, True))
           for thr, r in Q.quantile_routes(score, entry.grid)]
    return pts, {"test_auc_weak_fails": Q._auc(score, ~weak.correct),
                 "setting": "PRM threshold: re-solve with the strong model when the score is below it"}


def _learned(name: str, trees: FlatTrees, ctx: QueryContext | None, weak: Records) -> tuple[list[Point], dict]:
    if ctx is None:
        raise ValueError(f"router {name!r} needs train/val trees (QueryContext)")
    tr, va, te = Q.problem_table(ctx.train), Q.problem_table(ctx.val), Q.problem_table(trees)
    router, info = Q.fit_learned(name, tr, ctx.embeddings(tr), va, ctx.embeddings(va), seed=ctx.seed)
    per_problem = router.score(ctx.embeddings(te))
    score = per_problem[te.tree_problem]
    # route whole problems: quantiles over problems, applied to all their draws
    pts = []
    for thr, routed_p in Q.quantile_routes(per_problem, catalog.lookup(name).grid):
        pts.append(Point(round(thr, 6) if np.isfinite(thr) else "none",
                         _records(trees, routed_p[te.tree_problem], weak, False)))
    return pts, {**info, "test_auc_weak_fails": Q._auc(score, ~weak.correct),
                 "test_auc_weak_fails_per_problem": Q._auc(per_problem, te.weak < 0.5)}


#: how each query-level entry's ``sweep`` turns into operating points
SWEEPS = {"random-query": _random_query, "smoothie": _smoothie, "automix-final": _automix, "automix-min": _automix,
          "learned": _learned}


def sweep_query(name: str, trees: FlatTrees, ctx: QueryContext | None) -> tuple[list[Point], dict]:
    """(points, diagnostics) of one query-level router on ``trees``."""
    entry = catalog.lookup(name, catalog.QUERY)
    return SWEEPS[entry.sweep](entry.name, trees, ctx, weak_only_records(trees))
