"""How far can a policy on the ``agg`` features go on these trees?  Exact policy iteration as a yardstick.

A tree holds the outcome of both actions at every node, so the value of a deterministic policy is
exact: one backward pass (:func:`policy_values`).  Approximate policy iteration
(:func:`agg_policy_iteration`) alternates that exact evaluation with a gradient-boosted regression
of the advantage Q(regenerate) - Q(keep) on the ``agg`` observation, weighted by how often the
current policy (with some exploration) reaches each node, and acts greedily on the fitted
advantage.  It uses the same features as TRIM-Agg but none of PPO's sampling noise, so its frontier
on held-out trees estimates what the ``agg`` features allow for a given amount of training trees
(README: "How much room the agg features leave").  It is a diagnostic, not a shipped router.

    python -m trim_rl.evaluation.headroom --train sim:math500:train:0-11 --trees sim:math500:test
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from trim_rl.agents.base import PolicyBase
from trim_rl.argtypes import OneLineParser, add_seed, int_between, output_file, positive_float, run_command
from trim_rl.data.flat import FlatTrees
from trim_rl.data.tree_dp import levels_bottom_up, policy_outcomes, reach_probability
from trim_rl.data.trees import atomic_output
from trim_rl.envs.observations import AggObservation
from trim_rl.evaluation.metrics import cpt, json_safe, upper_frontier
from trim_rl.evaluation.sweep import THRESHOLDS
from trim_rl.sim.bundled import check_tree_spec, load_trees

DEFAULT_LAMS = (1.4e-3, 1.6e-3, 1.8e-3, 2.0e-3, 2.2e-3)


@dataclass
class PolicyValue:
    """Exact outcome of a deterministic per-node policy on a set of trees."""

    q_keep: np.ndarray  # per node: correct - lam * strong tokens from here on, keeping this step
    q_regen: np.ndarray  # the same regenerating it (-inf where regenerating is not allowed)
    accuracy: float
    cost_pct: float  # strong tokens in % of always-strong


def node_features(trees: FlatTrees) -> np.ndarray:
    """The ``agg`` observation at every node (the builder the env uses)."""
    return AggObservation().at_nodes(trees)


def policy_values(trees: FlatTrees, regen: np.ndarray, lam: float, levels=None) -> PolicyValue:
    """Exact values of the policy that regenerates at the nodes where ``regen`` is true (and the
    tree allows it), from :func:`trim_rl.data.tree_dp.policy_outcomes`."""
    out = policy_outcomes(trees, regen, levels)
    q_keep = out.keep_acc - lam * out.keep_tokens
    q_regen = np.where(trees.regen_allowed, out.regen_acc - lam * out.regen_tokens, -np.inf)
    roots = trees.tree_root
    return PolicyValue(q_keep, q_regen, float(out.accuracy[roots].mean()),
                       float(100.0 * out.tokens[roots].sum() / trees.strong_only_tokens.sum()))


def reach_weights(trees: FlatTrees, regen: np.ndarray, explore: float) -> np.ndarray:
    """Probability of reaching each node when the policy's action is flipped with probability
    ``explore`` at every decision."""
    return reach_probability(trees, np.where(regen, 1.0 - explore, explore))


def agg_policy_iteration(trees: FlatTrees, lam: float, iters: int = 6, explore: float = 0.15,
                         start_threshold: float = 0.3, seed: int = 0, min_leaf: int = 200):
    """Approximate policy iteration on the ``agg`` features; returns the last fitted advantage
    model (``model.predict(features) > 0`` means regenerate)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = node_features(trees)
    regen = trees.weak_prm < start_threshold
    allowed = trees.regen_allowed
    levels = levels_bottom_up(trees)
    model = None
    for _ in range(int(iters)):
        pv = policy_values(trees, regen, lam, levels)
        w = reach_weights(trees, regen, explore)
        rows = allowed & (w > 1e-6)
        model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                              min_samples_leaf=int(min_leaf), random_state=int(seed))
        model.fit(x[rows], (pv.q_regen - pv.q_keep)[rows], sample_weight=w[rows])
        regen = model.predict(x) > 0
    return model


class AdvantagePolicy(PolicyBase):
    """A fitted advantage model as a router: regenerate where ``model.predict(agg) > 0`` (and the env
    allows it), so the evaluator plays it over the trees like any checkpoint.  ``lam`` is the price it
    was fitted at; all of one fit share ``family`` (one frontier)."""

    family = "agg policy iteration (ceiling estimate)"

    def __init__(self, model, lam: float, family: str | None = None):
        self.model, self.lam = model, float(lam)
        if family is not None:
            self.family = family

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True,
                action_masks: np.ndarray | None = None):
        x = np.asarray(observation, dtype=np.float64)  # the regression was fitted on node_features' float64
        regen = self.model.predict(x) > 0
        if action_masks is not None:
            masks = np.asarray(action_masks, dtype=bool)
            regen = np.where(masks[:, 1] & masks[:, 0], regen, masks[:, 1])  # a forced action stays forced
        return regen.astype(np.int64), state


def fit_policies(train: FlatTrees, lams, iters: int = 6, seed: int = 0, progress: bool = True,
                 family: str | None = None) -> list[AdvantagePolicy]:
    """:func:`agg_policy_iteration` on ``train`` at each price of ``lams``, one router each."""
    from tqdm import tqdm

    return [AdvantagePolicy(agg_policy_iteration(train, float(lam), iters=iters, seed=seed), lam, family)
            for lam in tqdm(list(lams), desc="policy iteration", unit="lambda", disable=not progress)]


def frontier_cpt(points: list[tuple[float, float]], acc_weak: float, acc_strong: float, level: float = 80.0) -> float:
    """CPT at ``level`` % of the gap for the upper frontier of (cost %, accuracy) points."""
    cost = np.array([c for c, _ in points], dtype=float)
    acc = np.array([a for _, a in points], dtype=float)
    return cpt(upper_frontier(cost, acc, acc_weak), acc_weak, acc_strong, level)


def headroom(train: FlatTrees, test: FlatTrees, lams, iters: int = 6, seed: int = 0, progress: bool = True) -> dict:
    """Policy-iteration points on ``test`` per lambda next to TRIM-Thr's, with CPT(80%) of both."""
    x_test = node_features(test)
    acc_weak = float(test.weak_only()["correct"].mean())
    acc_strong = float(test.strong_only_correct.mean())
    rows = []
    for pol in fit_policies(train, lams, iters=iters, seed=seed, progress=progress):
        pv = policy_values(test, pol.model.predict(x_test) > 0, pol.lam)
        rows.append({"lam": pol.lam, "accuracy": pv.accuracy, "cost_pct": pv.cost_pct})
    thr = []
    for k in THRESHOLDS:
        pv = policy_values(test, test.weak_prm < k, 0.0)
        thr.append({"threshold": k, "accuracy": pv.accuracy, "cost_pct": pv.cost_pct})
    cpt_pi = frontier_cpt([(r["cost_pct"], r["accuracy"]) for r in rows], acc_weak, acc_strong)
    cpt_thr = frontier_cpt([(r["cost_pct"], r["accuracy"]) for r in thr], acc_weak, acc_strong)
    return {"train_trees": train.n_trees, "test_trees": test.n_trees, "acc_weak": acc_weak, "acc_strong": acc_strong,
            "policy_iteration": rows, "threshold": thr,
            "cpt80_policy_iteration": cpt_pi, "cpt80_threshold": cpt_thr,
            "ratio": cpt_pi / cpt_thr if cpt_thr and math.isfinite(cpt_thr) else math.nan}


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.evaluation.headroom") -> int:
    ap = OneLineParser(prog=prog, description=inspect.getdoc(_main))
    ap.add_argument("--train", default="sim:math500:train",
                    help="training trees: a file or sim:PROFILE:SPLIT[:SEEDS], e.g. sim:math500:train:0-11 for 12 "
                         "draws (default: the bundled train trees)")
    ap.add_argument("--trees", default="sim:math500:test", help="held-out trees to measure on (default: bundled test)")
    ap.add_argument("--lams", type=positive_float, nargs="+", default=list(DEFAULT_LAMS),
                    help="prices of one strong token, one policy each (default: %(default)s)")
    ap.add_argument("--iters", type=int_between(1, 1000), default=6, help="policy-iteration rounds per lambda (default: 6)")
    add_seed(ap, "seed of the regression")
    ap.add_argument("--out", type=output_file, help="also write the figures as JSON to this file")
    return run_command(ap, argv, _main)


def _main(args) -> int:
    """Estimate how far a policy on the agg features can go on these trees: approximate policy iteration
    with exact tree evaluation (gradient-boosted advantage on the agg observation), trained on --train and
    measured on --trees next to TRIM-Thr. A diagnostic for TRIM-Agg, not a router."""
    t0 = time.time()
    check_tree_spec(args.train, "--train")  # both before either is generated or read
    check_tree_spec(args.trees, "--trees")
    train = load_trees(args.train, progress=True)
    test = load_trees(args.trees, progress=True)
    res = headroom(train, test, args.lams, iters=args.iters, seed=args.seed)
    res.update({"train": args.train, "trees": args.trees, "seconds": round(time.time() - t0, 1)})
    print(f"{res['train_trees']} training trees ({args.train}), {res['test_trees']} test trees ({args.trees})")
    print("lambda     accuracy  cost")
    for r in res["policy_iteration"]:
        print(f"{r['lam']:<10g} {100 * r['accuracy']:6.2f}%  {r['cost_pct']:6.2f}%")
    print(f"CPT(80%): policy iteration on agg {res['cpt80_policy_iteration']:.1f}%, TRIM-Thr "
          f"{res['cpt80_threshold']:.1f}%, ratio {res['ratio']:.2f}")
    if args.out:
        with atomic_output(args.out, "w") as fh:
            fh.write(json.dumps(json_safe(res), indent=1, allow_nan=False) + "\n")  # a CPT never reached: null
    return 0


if __name__ == "__main__":
    sys.exit(main())
