"""Calibration of the belief filter on trees whose latent states are known (simulated trees).

:func:`belief_trace` plays every tree once with a behaviour policy, runs the filter on the
observations it sees and pairs each decision belief with the true state of the weak candidate;
:func:`reliability` bins a predicted probability and compares it with the observed frequency.
"""

from __future__ import annotations

import numpy as np

from trim_rl.agents.pomdp.belief import BeliefFilter
from trim_rl.agents.pomdp.fit import fit_model, tree_labels
from trim_rl.data.flat import FlatTrees
from trim_rl.data.tree_dp import reach_probability
from trim_rl.sim.bundled import check_tree_spec, load_trees


def belief_trace(filt: BeliefFilter, trees: FlatTrees, behaviour, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(beliefs (n, 3), true states (n,)) at every decision ``behaviour`` (any SB3-style policy on the
    ``agg`` observation) meets when it plays each tree once; decisions with unknown state dropped."""
    # trim_rl.envs.vec_env imports stable_baselines3
    from trim_rl.envs.vec_env import RoutingVecEnv

    state_of = tree_labels(trees).weak_state
    n = trees.n_trees
    venv = RoutingVecEnv.every_tree_once(trees, obs="agg", seed=seed)
    obs = venv.reset()
    done_once = np.zeros(n, dtype=bool)
    start = np.ones(n, dtype=bool)
    fstate = bstate = None
    beliefs, states = [], []
    while not done_once.all():
        fstate, b = filt.step(fstate, obs, start)
        live = ~done_once
        beliefs.append(b[live])
        states.append(state_of[venv.current_nodes[live]])
        a, bstate = behaviour.predict(obs, state=bstate, episode_start=start, action_masks=venv.action_masks())
        obs, _, dones, _ = venv.step(np.asarray(a).reshape(n))
        start = dones
        done_once |= dones
    b, s = np.concatenate(beliefs), np.concatenate(states).astype(np.int64)
    keep = s >= 0
    return b[keep], s[keep]


def reliability(pred: np.ndarray, outcome: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Per equal-width bin of ``pred``: count, mean prediction, observed frequency, |difference|,
    and the binomial standard error of the frequency."""
    pred, outcome = np.asarray(pred, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
    idx = np.minimum((pred * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_pred = np.bincount(idx, weights=pred, minlength=bins) / count
        freq = np.bincount(idx, weights=outcome, minlength=bins) / count
        se = np.sqrt(freq * (1 - freq) / count)
    return {"count": count, "pred": mean_pred, "freq": freq, "error": np.abs(mean_pred - freq), "se": se}


def node_beliefs(filt: BeliefFilter, trees: FlatTrees) -> np.ndarray:
    """Decision belief (n_nodes, 3) over S0 / S1 / S2 at every node of the trees: the filter run along
    each node's path from the root (keep / regenerate as the tree's edges say), level by level."""
    f = trees
    n = f.n_nodes
    b = np.zeros((n, filt.D, 3))
    for d, nodes in enumerate(f.levels()):
        pre = filt.start(nodes.size)
        if d > 0:
            par = f.parent[nodes]
            regen = f.parent_action[nodes] == 1
            keep = ~regen
            pre[keep] = filt.after_keep(b[par[keep]], f.depth[par[keep]])
            pr = par[regen]
            pre[regen] = filt.after_regen(b[pr], f.depth[pr], f.prev_min[pr], f.strong_prm[pr])
        b[nodes] = filt.observe(filt.prior(pre, f.depth[nodes]), f.prev_min[nodes], f.weak_prm[nodes],
                                f.weak_tokens[nodes])
    return b.sum(axis=1)


def weighted_reliability(pred: np.ndarray, outcome: np.ndarray, weight: np.ndarray, bins: int = 10
                         ) -> dict[str, np.ndarray]:
    """:func:`reliability` with a weight per prediction; ``n_eff`` is Kish's effective sample size."""
    idx = np.minimum((np.asarray(pred) * bins).astype(np.int64), bins - 1)
    w = np.bincount(idx, weights=weight, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_pred = np.bincount(idx, weights=weight * pred, minlength=bins) / w
        freq = np.bincount(idx, weights=weight * outcome, minlength=bins) / w
        n_eff = w**2 / np.bincount(idx, weights=weight**2, minlength=bins)
    return {"weight": w, "n_eff": n_eff, "pred": mean_pred, "freq": freq, "error": np.abs(mean_pred - freq)}


def main(argv: list[str] | None = None) -> int:
    """``python -m trim_rl.agents.pomdp.calibration``: fit on training trees, print the reliability of
    P(S2) on held-out trees (every node, weighted by how often a router regenerating ``--regen-prob``
    of the steps reaches it)."""
    from trim_rl.argtypes import OneLineParser, fraction, run_command
    from trim_rl.sim.bundled import POOL_TREES

    ap = OneLineParser(prog="python -m trim_rl.agents.pomdp.calibration", description=main.__doc__)
    ap.add_argument("--train", default="sim:math500:train", help="training trees (with step_correct labels)")
    ap.add_argument("--trees", default=POOL_TREES,
                    help=f"held-out trees with step_correct labels (default {POOL_TREES}, the README's pool)")
    ap.add_argument("--regen-prob", type=fraction, default=0.2, help="weights of the decision points (default 0.2)")
    return run_command(ap, argv, _report)


def _report(args) -> int:
    check_tree_spec(args.train, "--train")
    check_tree_spec(args.trees, "--trees")
    model = fit_model(load_trees(args.train), source=args.train)
    f = load_trees(args.trees)
    state = tree_labels(f).weak_state
    known = state >= 0
    b = node_beliefs(BeliefFilter(model), f)
    for k, name in ((2, "S2 (only the newest step wrong)"), (1, "S1 (an earlier step wrong)")):
        r = weighted_reliability(b[known, k], (state[known] == k).astype(float),
                                 reach_probability(f, args.regen_prob)[known])
        print(f"P({name}) on {args.trees}: max |predicted - observed| over 10 bins = {np.nanmax(r['error']):.3f}")
        print("  bin        n_eff  predicted  observed")
        for i in range(10):
            print(f"  {i / 10:.1f}-{(i + 1) / 10:.1f}  {r['n_eff'][i]:7.0f}  {r['pred'][i]:9.3f}  {r['freq'][i]:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
