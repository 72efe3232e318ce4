"""Evaluate policies on held-out trees: operating points per family and the metrics ``evaluate.py`` writes."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from trim_rl.agents import catalog
from trim_rl.data.flat import FlatTrees
from trim_rl.evaluation.metrics import MAX_BOOTSTRAP, policy_metrics
from trim_rl.evaluation.query_sweep import QueryContext, sweep_query
from trim_rl.evaluation.report import DIBC_NOTE
from trim_rl.evaluation.rollout import weak_only_records
from trim_rl.evaluation.sweep import Point, checkpoint_families, sweep, sweep_checkpoints
from trim_rl.sim.bundled import POOL_SEEDS, POOL_TREES, load_trees  # noqa: F401 (POOL_SEEDS re-exported)

#: every step-level family of the policy table: thr,always-weak,always-strong,random,oracle-step,oracle-query
DEFAULT_POLICIES = ",".join(catalog.names(catalog.STEP))
#: the test trees of every evaluation by default: the README's pool (:data:`trim_rl.sim.bundled.POOL_TREES`)
DEFAULT_TREES = POOL_TREES


def evaluate_policies(trees: FlatTrees, names: list[str], n_boot: int = 1000, seed: int = 0,
                      routing_errors: float = 0.0, progress: bool = True, trees_label: str = "",
                      checkpoints: list | None = None, query_ctx=None, groups: list[tuple[str, int]] | None = None) -> dict:
    """Operating points and metrics of every policy in ``names`` (built-in) and of every family of
    exported ``checkpoints`` on ``trees``.

    ``groups``: (label, number of trees) of consecutive parts of ``trees`` (one per test seed, see
    :func:`load_pool`).  With two or more, the figures are pooled over all trees, with intervals from
    a bootstrap over test problems (every draw of a problem on every seed resampled together), and
    each policy also gets its per-seed figures and their spread (``per_seed``, ``spread``)."""
    check_settings(n_boot, seed, routing_errors)
    # built-in names by their canonical spelling (weak-only -> always-weak), each once; unknown ones refused
    # before any work
    names = list(dict.fromkeys(catalog.canonical(n) for n in names))
    families = checkpoint_families(checkpoints or [])
    weak = weak_only_records(trees)
    pooled = groups is not None and len(groups) > 1
    if pooled and sum(n for _, n in groups) != trees.n_trees:
        raise ValueError(f"groups: {sum(n for _, n in groups)} trees for {trees.n_trees}")
    clusters = problem_clusters(trees) if pooled else None
    result = {"trees": trees_label, "n_problems": trees.n_trees, "n_boot": n_boot, "seed": seed,
              "routing_errors": routing_errors, "dibc_averaging": DIBC_NOTE, "policies": {}}
    if pooled:
        result["pool"] = {"seeds": [g for g, _ in groups], "trees_per_seed": [int(n) for _, n in groups],
                          "n_test_problems": int(clusters.max()) + 1}
    replicates = {}
    from tqdm import tqdm

    bar = tqdm(total=len(names) + len(families), desc="evaluate", unit="policy", file=sys.stderr, disable=not progress)
    for name in [*names, *families]:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        diagnostics = None
        if name in families:
            points: list[Point] = sweep_checkpoints(families[name], trees, seed=seed, routing_errors=routing_errors)
        elif catalog.lookup(name).level == catalog.QUERY:
            points, diagnostics = sweep_query(name, trees, query_ctx)
            if not points:  # not applicable to these trees
                result.setdefault("not_applicable", {})[name] = diagnostics
                bar.update(1)
                continue
        else:
            points = sweep(name, trees, seed=seed, routing_errors=routing_errors)
        correct = np.stack([p.records.correct for p in points])
        strong = np.stack([p.records.strong_tokens for p in points])
        m = policy_metrics(correct, strong, weak.correct, trees.strong_only_correct, trees.strong_only_tokens,
                           [p.setting for p in points], n_boot=n_boot, seed=seed, clusters=clusters, replicates=pooled)
        if pooled:
            replicates[name] = m.pop("_replicates")
            m["per_seed"], m["spread"] = per_seed_metrics(correct, strong, weak.correct, trees, groups)
        for pt, p in zip(m["points"], points):
            pt["weak_tokens"] = float(p.records.weak_tokens.mean())
            pt["interventions"] = float(p.records.interventions.mean())
            if p.requested_budget is not None:
                pt["requested_budget"] = float(p.requested_budget)
        m["label"] = catalog.label(name)
        if diagnostics:
            m["diagnostics"] = diagnostics
        m["seconds"] = round(time.perf_counter() - t0, 2)
        result["references"] = m["references"]
        result["policies"][name] = m
        bar.update(1)
    bar.close()
    if pooled and "thr" in result["policies"]:
        result["ratios"] = cpt_ratios(result["policies"], replicates, "thr")
    return result


SPREAD_KEYS = ("cpt50", "cpt80", "cpt95", "dibc", "apgr")


def problem_clusters(trees: FlatTrees) -> np.ndarray:
    """One id per test problem (``PROBLEM#draw`` ids share ``PROBLEM``), in order of appearance."""
    base = [pid.rsplit("#", 1)[0] for pid in trees.problem_id]
    _, inverse = np.unique(np.asarray(base, dtype=object), return_inverse=True)
    return inverse.astype(np.int64).ravel()


def spread(values) -> dict:
    """mean, sd (n - 1), min and max over seeds; ``n_inf`` seeds where the figure is inf (never reached),
    which the other statistics leave out (all of them inf when every seed is)."""
    v = np.asarray(values, dtype=float)
    fin = v[np.isfinite(v)]
    n_inf = int(np.isinf(v).sum())
    if fin.size == 0:
        return {"mean": math.inf if n_inf else math.nan, "sd": math.nan, "min": math.inf if n_inf else math.nan,
                "max": math.inf if n_inf else math.nan, "n_inf": n_inf, "n": int(v.size)}
    return {"mean": float(fin.mean()), "sd": float(fin.std(ddof=1)) if fin.size > 1 else 0.0,
            # a ratio is undefined (nan) on a seed where the reference never reaches the level: not a maximum
            "min": float(fin.min()), "max": math.inf if n_inf else float(fin.max()), "n_inf": n_inf,
            "n": int(v.size)}


def per_seed_metrics(correct: np.ndarray, strong: np.ndarray, weak_correct: np.ndarray, trees: FlatTrees,
                     groups: list[tuple[str, int]]) -> tuple[dict, dict]:
    """A policy's CPT(50/80/95), dIBC and APGR on each group of trees alone, and their spread."""
    per = {k: [] for k in SPREAD_KEYS}
    costs = []
    start = 0
    for _, n in groups:
        sl = slice(start, start + n)
        start += n
        m = policy_metrics(correct[:, sl], strong[:, sl], weak_correct[sl], trees.strong_only_correct[sl],
                           trees.strong_only_tokens[sl], list(range(correct.shape[0])), n_boot=0)
        for x in ("50", "80", "95"):
            per[f"cpt{x}"].append(m["cpt"][x])
        per["dibc"].append(m["dibc"])
        per["apgr"].append(m["apgr"])
        costs.append([p["cost_pct"] for p in m["points"]])
    return {"seeds": [g for g, _ in groups], **per, "cost_pct": costs}, {k: spread(v) for k, v in per.items()}


def cpt_ratios(policies: dict, replicates: dict, ref: str = "thr") -> dict:
    """Each policy's CPT(x%) / ``ref``'s: pooled, its bootstrap interval (paired replicates) and the
    spread of the per-seed ratios."""
    out = {}
    r_ref = replicates[ref]["cpt"]
    for name, m in policies.items():
        if name == ref or name not in replicates or len(m["points"]) < 2:
            continue  # a single point (always-weak / -strong) is no frontier to compare
        entry = {}
        for j, x in enumerate(("50", "80", "95")):
            pooled = float(finite_ratio(m["cpt"][x], policies[ref]["cpt"][x]))
            boot = finite_ratio(replicates[name]["cpt"][:, j], r_ref[:, j])
            seeds = finite_ratio(m["per_seed"][f"cpt{x}"], policies[ref]["per_seed"][f"cpt{x}"])
            iv = [math.nan, math.nan]
            fin = boot[np.isfinite(boot)]
            if fin.size:
                iv = [float(v) for v in np.percentile(fin, [2.5, 97.5])]
            entry[x] = {"pooled": float(pooled), "interval": iv, "per_seed": seeds.tolist(), "spread": spread(seeds)}
        out[name] = entry
    return {"reference": ref, "cpt": out}


def finite_ratio(a, b) -> np.ndarray:
    """a / b, undefined (nan) where the reference b never reaches the level (inf): x / inf is no 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(b), a / b, np.nan)


def load_pool(specs, progress: bool = False) -> tuple[FlatTrees, list[tuple[str, int]]]:
    """Trees of one or more tree specs, with one group per test seed (``sim:P:S:100-109``: ten
    groups) or per tree file, in order: what :func:`evaluate_policies` pools over."""
    from trim_rl.data.flat import concat, load_flat
    from trim_rl.data.flat_cache import load_flat_cached
    from trim_rl.sim.bundled import _parse_spec, check_tree_spec, resolve_tree_spec

    specs = [str(s) for s in specs] if isinstance(specs, (list, tuple)) else [str(specs)]
    check_tree_spec(specs)
    resolve_tree_spec(specs, progress)  # every missing seed generated under one progress bar
    parts, groups = [], []
    for s in specs:
        parsed = _parse_spec(s)
        paths = resolve_tree_spec(s)
        if isinstance(parsed, Path):
            labels = [parsed.name]
        else:
            labels = [f"{parsed[0]}:{parsed[1]}:{seed}" for seed in parsed[2]]
        for label, path in zip(labels, paths):
            f = load_flat_cached(path) if s.startswith("sim:") else load_flat(path)
            parts.append(f)
            groups.append((label, f.n_trees))
    return concat(parts), groups


def check_settings(n_boot: int, seed: int, routing_errors: float) -> None:
    """The evaluation's numbers checked before any policy runs (names as the API spells them)."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(n_boot) or not 1 <= n_boot <= MAX_BOOTSTRAP:
        raise ValueError(f"n_boot: expected a number of bootstrap resamples in [1, {MAX_BOOTSTRAP}], got {n_boot!r}")
    if not is_int(seed) or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"seed: expected an integer in [0, {2**32 - 1}], got {seed!r}")
    if isinstance(routing_errors, bool) or not isinstance(routing_errors, (int, float, np.floating)) \
            or not 0.0 <= routing_errors <= 1.0:
        raise ValueError(f"routing_errors: expected a fraction in [0, 1], got {routing_errors!r}")


def make_query_context(test_spec: str, train_spec: str | None, val_spec: str | None, seed: int = 0,
                       progress: bool = False):
    """Train/val trees for the learned query routers (derived from a sim:PROFILE:test spec)."""
    def derive(split):
        parts = test_spec.split(":")
        if not (test_spec.startswith("sim:") and len(parts) >= 3):
            raise ValueError("learned query routers need --train-trees and --val-trees for a tree file")
        # one test seed: the train / val trees of that seed; a pool of seeds: the bundled ones (a pool's
        # seeds of the train split would be ten times the trees these routers need)
        seeds = parts[3:] if len(parts) == 4 and parts[3].isdigit() else []
        return ":".join([parts[0], parts[1], split, *seeds])

    train = load_trees(train_spec or derive("train"), progress)
    val = load_trees(val_spec or derive("val"), progress)
    return QueryContext(train, val, seed)
