"""Evaluate policies on held-out trees: operating points per family and the metrics ``evaluate.py`` writes."""

from __future__ import annotations

import sys
import time

import numpy as np

from trim_rl.agents.query import QUERY_ROUTERS
from trim_rl.data.flat import FlatTrees
from trim_rl.eval.metrics import MAX_BOOTSTRAP, policy_metrics
from trim_rl.eval.query_sweep import LABELS as QUERY_LABELS
from trim_rl.eval.query_sweep import QueryContext, sweep_query
from trim_rl.eval.report import DIBC_NOTE
from trim_rl.eval.rollout import weak_only_records
from trim_rl.eval.sweep import LABELS, Point, checkpoint_families, sweep, sweep_checkpoints
from trim_rl.sim.bundled import load_trees

DEFAULT_POLICIES = "thr,always-weak,always-strong,random,oracle-step,oracle-query"


def evaluate_policies(trees: FlatTrees, names: list[str], n_boot: int = 1000, seed: int = 0,
                      routing_errors: float = 0.0, progress: bool = True, trees_label: str = "",
                      checkpoints: list | None = None, query_ctx=None) -> dict:
    """Operating points and metrics of every policy in ``names`` (built-in) and of every family of
    exported ``checkpoints`` on ``trees``."""
    check_settings(n_boot, seed, routing_errors)
    families = checkpoint_families(checkpoints or [])
    weak = weak_only_records(trees)
    result = {"trees": trees_label, "n_problems": trees.n_trees, "n_boot": n_boot, "seed": seed,
              "routing_errors": routing_errors, "dibc_averaging": DIBC_NOTE, "policies": {}}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(names) + len(families), desc="evaluate", unit="policy", file=sys.stderr)
    for name in [*names, *families]:
        if bar is not None:
            bar.set_postfix_str(name)
        t0 = time.perf_counter()
        diagnostics = None
        if name in families:
            points: list[Point] = sweep_checkpoints(families[name], trees, seed=seed, routing_errors=routing_errors)
        elif name in QUERY_ROUTERS:
            points, diagnostics = sweep_query(name, trees, query_ctx)
            if not points:  # not applicable to these trees
                result.setdefault("not_applicable", {})[name] = diagnostics
                if bar is not None:
                    bar.update(1)
                continue
        else:
            points = sweep(name, trees, seed=seed, routing_errors=routing_errors)
        correct = np.stack([p.records.correct for p in points])
        strong = np.stack([p.records.strong_tokens for p in points])
        m = policy_metrics(correct, strong, weak.correct, trees.strong_only_correct, trees.strong_only_tokens,
                           [p.setting for p in points], n_boot=n_boot, seed=seed)
        for pt, p in zip(m["points"], points):
            pt["weak_tokens"] = float(p.records.weak_tokens.mean())
            pt["interventions"] = float(p.records.interventions.mean())
            if p.requested_budget is not None:
                pt["requested_budget"] = float(p.requested_budget)
        m["label"] = LABELS.get(name, QUERY_LABELS.get(name, name))
        if diagnostics:
            m["diagnostics"] = diagnostics
        m["seconds"] = round(time.perf_counter() - t0, 2)
        result["references"] = m["references"]
        result["policies"][name] = m
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return result


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
        return ":".join([parts[0], parts[1], split, *parts[3:]])

    train = load_trees(train_spec or derive("train"), progress)
    val = load_trees(val_spec or derive("val"), progress)
    return QueryContext(train, val, seed)
