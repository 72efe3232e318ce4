"""Routing metrics for weak/strong LLM policies: frontier, PGR, CPT, dIBC, APGR and bootstrap CIs.

Conventions: cost is in percent of the strong-only token budget (weak-only = 0, strong-only = 100);
accuracies are fractions in [0, 1]; CPT levels are given in percent of the performance gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Frontier", "upper_frontier", "pgr", "cpt", "dibc", "apgr",
    "point_table", "policy_metrics", "json_safe", "MAX_BOOTSTRAP",
]


#: bootstrap resamples at most: each one holds every operating point's accuracy and cost and takes
#: ~50 us of frontier arithmetic per policy, so more would only cost memory and time, not precision
MAX_BOOTSTRAP = 100_000


@dataclass
class Frontier:
    """Upper monotone frontier: kept points (anchor included), sorted by cost, accuracy strictly rising."""

    cost: np.ndarray
    acc: np.ndarray


def upper_frontier(cost: np.ndarray, acc: np.ndarray, acc_weak: float) -> Frontier:
    """Pareto frontier of the points plus the anchor (0, acc_weak); non-finite points are ignored.

    A point is kept iff its accuracy is strictly greater than that of every cheaper kept point;
    among equal costs only the best accuracy can survive.
    """
    c = np.concatenate([[0.0], np.asarray(cost, dtype=float).ravel()])
    a = np.concatenate([[float(acc_weak)], np.asarray(acc, dtype=float).ravel()])
    if c.shape != a.shape:
        raise ValueError(f"cost and acc sizes differ: {c.size - 1} vs {a.size - 1}")
    ok = np.isfinite(c) & np.isfinite(a)
    c, a = c[ok], a[ok]
    order = np.lexsort((-a, c))  # by cost, then best accuracy first
    c, a = c[order], a[order]
    if a.size == 0:
        return Frontier(cost=c, acc=a)
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(a)[:-1]])
    keep = a > prev_best
    return Frontier(cost=c[keep], acc=a[keep])


def pgr(acc: np.ndarray | float, acc_weak: float, acc_strong: float) -> np.ndarray | float:
    """Performance gap recovered: (acc - acc_weak) / (acc_strong - acc_weak); float for scalar input."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.asarray(acc, dtype=float) - acc_weak) / (acc_strong - acc_weak)
    return float(out) if out.ndim == 0 else out


def _degenerate(frontier: Frontier, acc_weak: float, acc_strong: float) -> bool:
    return frontier.cost.size == 0 or not (np.isfinite(acc_weak) and np.isfinite(acc_strong)) \
        or acc_strong == acc_weak


def cpt(frontier: Frontier, acc_weak: float, acc_strong: float, x: float) -> float:
    """Least cost (%) at which the frontier's PGR reaches x/100 (linear interpolation); inf if never."""
    if _degenerate(frontier, acc_weak, acc_strong):
        return math.nan
    p = pgr(frontier.acc, acc_weak, acc_strong)
    target = x / 100.0
    hit = np.flatnonzero(p >= target)
    if hit.size == 0:
        return math.inf
    i = int(hit[0])
    if i == 0:
        return float(frontier.cost[0])
    c0, c1, p0, p1 = frontier.cost[i - 1], frontier.cost[i], p[i - 1], p[i]
    return float(c0 + (target - p0) * (c1 - c0) / (p1 - p0))


def dibc(frontier: Frontier, acc_weak: float, acc_strong: float) -> float:
    """Mean relative gain of IBC over the random router's, over frontier points with cost > 0; nan if none."""
    if _degenerate(frontier, acc_weak, acc_strong):
        return math.nan
    pos = frontier.cost > 0
    if not pos.any():
        return math.nan
    ibc = (frontier.acc[pos] - acc_weak) / frontier.cost[pos]
    ibc_random = (acc_strong - acc_weak) / 100.0
    return float(np.mean((ibc - ibc_random) / ibc_random))


def apgr(frontier: Frontier, acc_weak: float, acc_strong: float) -> float:
    """Mean PGR of the frontier over cost in [0, 100]: flat after its last point, cut at 100."""
    if _degenerate(frontier, acc_weak, acc_strong):
        return math.nan
    c = frontier.cost
    p = pgr(frontier.acc, acc_weak, acc_strong)
    inside = c <= 100.0
    ci, pi = c[inside], p[inside]
    if ci.size == 0:
        return math.nan
    if inside.all():
        end = pi[-1]  # flat extension
    else:
        j = int(np.argmin(inside))  # first point beyond 100 (costs are sorted)
        end = p[j - 1] + (100.0 - c[j - 1]) * (p[j] - p[j - 1]) / (c[j] - c[j - 1])
    # The anchor puts the first frontier point at cost 0.
    return float(np.trapezoid(np.append(pi, end), np.append(ci, 100.0)) / 100.0)


def point_table(correct: np.ndarray, strong_tokens: np.ndarray,
                strong_only_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cost_pct, acc) per operating point from (n_points, n_problems) outcome arrays."""
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    strong_tokens = np.atleast_2d(np.asarray(strong_tokens, dtype=float))
    ref = np.asarray(strong_only_tokens, dtype=float).ravel()
    if correct.shape != strong_tokens.shape or correct.shape[1] != ref.size:
        raise ValueError(f"shape mismatch: correct {correct.shape}, strong_tokens "
                         f"{strong_tokens.shape}, strong_only_tokens {ref.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = 100.0 * strong_tokens.sum(axis=1) / ref.sum()
    return cost, correct.mean(axis=1)


def _frontier_metrics(cost: np.ndarray, acc: np.ndarray, acc_weak: float, acc_strong: float,
                      levels: Sequence[float]) -> tuple[Frontier, list[float], float, float]:
    fr = upper_frontier(cost, acc, acc_weak)
    return (fr, [cpt(fr, acc_weak, acc_strong, x) for x in levels],
            dibc(fr, acc_weak, acc_strong), apgr(fr, acc_weak, acc_strong))


def _interval(vals: np.ndarray) -> tuple[list[float], float]:
    """2.5/97.5 percentiles over finite replicates, and the finite fraction."""
    vals = np.asarray(vals, dtype=float)
    fin = np.isfinite(vals)
    frac = float(fin.mean()) if vals.size else 0.0
    if not fin.any():
        return [math.nan, math.nan], frac
    lo, hi = np.percentile(vals[fin], [2.5, 97.5])
    return [float(lo), float(hi)], frac


def _level_key(x: float) -> str:
    return f"{x:g}"


def policy_metrics(correct: np.ndarray, strong_tokens: np.ndarray, weak_correct: np.ndarray,
                   strong_correct: np.ndarray, strong_only_tokens: np.ndarray, settings: list,
                   n_boot: int = 1000, seed: int = 0,
                   cpt_levels: Sequence[float] = (50, 80, 95), clusters: np.ndarray | None = None,
                   replicates: bool = False) -> dict[str, Any]:
    """All metrics for one policy family plus problem-level bootstrap 95% intervals.

    correct/strong_tokens: (n_points, n_problems); weak_correct/strong_correct/strong_only_tokens:
    (n_problems,). Every replicate resamples problems once and applies it to all points and references.
    ``clusters`` (an int per tree, 0..k-1): resample whole clusters instead of trees (a pool of seeds
    holds each test problem once per seed and draw; its trees share the problem's difficulty).  The
    same ``seed`` and sizes give the same resamples for every policy, so replicates pair up across
    policies (``replicates=True`` returns them under ``"_replicates"``, for ratios; not for JSON).
    Non-finite values (e.g. CPT = inf) are kept as floats; pass the result through `json_safe` to write.
    """
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    strong_tokens = np.atleast_2d(np.asarray(strong_tokens, dtype=float))
    wc = np.asarray(weak_correct, dtype=float).ravel()
    sc = np.asarray(strong_correct, dtype=float).ravel()
    so = np.asarray(strong_only_tokens, dtype=float).ravel()
    n_points, n = correct.shape
    if strong_tokens.shape != correct.shape or not (wc.size == sc.size == so.size == n):
        raise ValueError("inconsistent shapes among outcome and reference arrays")
    if len(settings) != n_points:
        raise ValueError(f"{len(settings)} settings for {n_points} points")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or not 0 <= n_boot <= MAX_BOOTSTRAP:
        raise ValueError(f"n_boot: expected a number of bootstrap resamples in [0, {MAX_BOOTSTRAP}], got {n_boot!r}")
    levels = list(cpt_levels)
    keys = [_level_key(x) for x in levels]
    if clusters is not None:
        clusters = np.asarray(clusters, dtype=np.int64).ravel()
        if clusters.size != n or (n and (clusters.min() < 0)):
            raise ValueError(f"clusters: expected {n} non-negative cluster ids, got {clusters.size}")
    n_units = n if clusters is None else (int(clusters.max()) + 1 if n else 0)

    cost, acc = point_table(correct, strong_tokens, so)
    acc_weak, acc_strong = float(wc.mean()), float(sc.mean())
    fr, cpts, d, a = _frontier_metrics(cost, acc, acc_weak, acc_strong, levels)

    # Bootstrap: per-replicate problem counts, so every sum is one matrix product.
    rng = np.random.default_rng(seed)
    b_cpt = np.full((n_boot, len(levels)), np.nan)
    b_dibc = np.full(n_boot, np.nan)
    b_apgr = np.full(n_boot, np.nan)
    b_acc = np.full((n_boot, n_points), np.nan)
    b_cost = np.full((n_boot, n_points), np.nan)
    b_aw = np.full(n_boot, np.nan)
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n_units, size=(m, n_units))
        w = np.bincount((idx + n_units * np.arange(m)[:, None]).ravel(),
                        minlength=m * n_units).reshape(m, n_units).astype(float)
        if clusters is not None:  # a tree counts as often as its cluster was drawn
            w = w[:, clusters]
        tot = w.sum(axis=1)  # n for a tree bootstrap (exact in floats)
        with np.errstate(divide="ignore", invalid="ignore"):
            accs = w @ correct.T / tot[:, None]
            costs = 100.0 * (w @ strong_tokens.T) / (w @ so)[:, None]
            aw, ast = w @ wc / tot, w @ sc / tot
        b_acc[start:start + m], b_cost[start:start + m], b_aw[start:start + m] = accs, costs, aw
        for r in range(m):
            _, c_r, d_r, a_r = _frontier_metrics(costs[r], accs[r], aw[r], ast[r], levels)
            b_cpt[start + r], b_dibc[start + r], b_apgr[start + r] = c_r, d_r, a_r

    cpt_iv, cpt_frac = {}, {}
    for k, col in zip(keys, b_cpt.T):
        cpt_iv[k], cpt_frac[k] = _interval(col)
    dibc_iv, dibc_frac = _interval(b_dibc)
    apgr_iv, apgr_frac = _interval(b_apgr)

    # the frontier's accuracy band: each kept point's interval (the anchor's is always-weak's)
    aw_iv = _interval(b_aw)[0] if n_boot else [math.nan, math.nan]
    acc_iv = [_interval(col)[0] for col in b_acc.T]
    band = []
    for c_f, a_f in zip(fr.cost, fr.acc):
        hit = np.flatnonzero((cost == c_f) & (acc == a_f))
        band.append(acc_iv[int(hit[0])] if hit.size else aw_iv)
    out = {
        "points": [
            {"setting": s, "accuracy": float(acc[i]), "cost_pct": float(cost[i]),
             "strong_tokens": float(strong_tokens[i].mean())}
            for i, s in enumerate(settings)
        ],
        "frontier": {"cost_pct": fr.cost.tolist(), "accuracy": fr.acc.tolist(), "accuracy_interval": band},
        "cpt": dict(zip(keys, cpts)),
        "dibc": d,
        "apgr": a,
        "intervals": {
            "cpt": cpt_iv,
            "dibc": dibc_iv,
            "apgr": apgr_iv,
            "accuracy": acc_iv,
            "cost_pct": [_interval(col)[0] for col in b_cost.T],
            "finite_frac": {"cpt": cpt_frac, "dibc": dibc_frac, "apgr": apgr_frac},
        },
        "references": {"acc_weak": acc_weak, "acc_strong": acc_strong,
                       "strong_only_tokens": float(so.mean())},
        "n_problems": int(n),
        "n_boot": int(n_boot),
    }
    if clusters is not None:
        out["n_clusters"] = n_units
    if replicates:
        out["_replicates"] = {"cpt": b_cpt, "dibc": b_dibc, "apgr": b_apgr}
    return out


def json_safe(obj: Any) -> Any:
    """Recursively convert to plain JSON types, mapping inf/nan to None (numpy types included)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
