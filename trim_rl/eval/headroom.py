"""How far can a policy on the ``agg`` features go on these trees?  Exact policy iteration as a yardstick.

A tree holds the outcome of both actions at every node, so the value of a deterministic policy is
exact: one backward pass (:func:`policy_values`).  Approximate policy iteration
(:func:`agg_policy_iteration`) alternates that exact evaluation with a gradient-boosted regression
of the advantage Q(regenerate) - Q(keep) on the ``agg`` observation, weighted by how often the
current policy (with some exploration) reaches each node, and acts greedily on the fitted
advantage.  It uses the same features as TRIM-Agg but none of PPO's sampling noise, so its frontier
on held-out trees estimates what the ``agg`` features allow for a given amount of training trees
(README: "How much room the agg features leave").  It is a diagnostic, not a shipped router.

    python -m trim_rl.eval.headroom --train sim:math500:train:0-11 --trees sim:math500:test
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trim_rl.agents.oracle import _action_outcomes, _by_depth_desc
from trim_rl.agents.pomdp.fit import path_weights
from trim_rl.data.flat import ABSENT, FlatTrees
from trim_rl.envs.observations import AggObservation
from trim_rl.eval.metrics import cpt, upper_frontier
from trim_rl.eval.sweep import THRESHOLDS

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
    return AggObservation().batch(trees.weak_prm, trees.weak_tokens, trees.prev_min, trees.prev_prod, trees.depth,
                                  trees.interventions)


def policy_values(trees: FlatTrees, regen: np.ndarray, lam: float) -> PolicyValue:
    """Exact values of the policy that regenerates at the nodes where ``regen`` is true (and the
    tree allows it), by one backward pass over the trees.  From each node on, the policy's value
    is P(correct) - lam * strong tokens, so only those two are carried."""
    f = trees
    correct = np.zeros(f.n_nodes)
    strong = np.zeros(f.n_nodes)
    q_keep = np.zeros(f.n_nodes)
    q_regen = np.full(f.n_nodes, -np.inf)
    for nodes in _by_depth_desc(f):
        kc, rc = f.keep_child[nodes], f.regen_child[nodes]
        keep_ok, again_ok = (1.0 + o for o in _action_outcomes(f, nodes, correct))
        keep_tok = np.where(kc >= 0, strong[np.maximum(kc, 0)], 0.0)
        again_tok = f.strong_tokens[nodes] + np.where(rc >= 0, strong[np.maximum(rc, 0)], 0.0)
        allowed = rc != ABSENT
        act = allowed & regen[nodes]
        q_keep[nodes] = keep_ok - lam * keep_tok
        q_regen[nodes] = np.where(allowed, again_ok - lam * again_tok, -np.inf)
        correct[nodes] = np.where(act, again_ok, keep_ok)
        strong[nodes] = np.where(act, again_tok, keep_tok)
    roots = f.tree_root
    return PolicyValue(q_keep, q_regen, float(correct[roots].mean()),
                       float(100.0 * strong[roots].sum() / f.strong_only_tokens.sum()))


def reach_weights(trees: FlatTrees, regen: np.ndarray, explore: float) -> np.ndarray:
    """Probability of reaching each node when the policy's action is flipped with probability
    ``explore`` at every decision."""
    return path_weights(trees, np.where(regen, 1.0 - explore, explore))


def agg_policy_iteration(trees: FlatTrees, lam: float, iters: int = 6, explore: float = 0.15,
                         start_threshold: float = 0.3, seed: int = 0, min_leaf: int = 200):
    """Approximate policy iteration on the ``agg`` features; returns the last fitted advantage
    model (``model.predict(features) > 0`` means regenerate)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = node_features(trees)
    regen = trees.weak_prm < start_threshold
    allowed = trees.regen_child != ABSENT
    model = None
    for _ in range(int(iters)):
        pv = policy_values(trees, regen, lam)
        w = reach_weights(trees, regen, explore)
        rows = allowed & (w > 1e-6)
        model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                              min_samples_leaf=int(min_leaf), random_state=int(seed))
        model.fit(x[rows], (pv.q_regen - pv.q_keep)[rows], sample_weight=w[rows])
        regen = model.predict(x) > 0
    return model


STUDENT_NET = {"obs_dim": 6, "net_arch": [64, 64], "activation": "tanh", "encoder": None}  # TRIM-Agg's actor


def distill_mlp(trees: FlatTrees, regen: np.ndarray, epochs: int = 20, explore: float = 0.15, seed: int = 0,
                batch: int = 4096):
    """An MLP actor on the ``agg`` observation (``STUDENT_NET``) trained by cross-entropy to copy a
    per-node policy (``regen``), each node weighted by how often that policy, with ``explore``
    flips, reaches it.  Returns a :class:`~trim_rl.agents.networks.PolicyNet` (exportable, and a
    starting point for ``train.py --init-from``)."""
    import torch

    from trim_rl.agents.networks import PolicyNet

    x = node_features(trees)
    w = reach_weights(trees, regen, explore)
    rows = (trees.regen_child != ABSENT) & (w > 1e-6)
    xs, ys = torch.as_tensor(x[rows]), torch.as_tensor(regen[rows].astype(np.int64))
    ws = torch.as_tensor(w[rows], dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = PolicyNet("agg", STUDENT_NET["obs_dim"], STUDENT_NET["net_arch"], STUDENT_NET["activation"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(int(epochs)):
        order = torch.randperm(len(xs), generator=gen)
        for b in range(0, len(xs), batch):
            i = order[b:b + batch]
            loss = torch.nn.functional.cross_entropy(net(xs[i]), ys[i], reduction="none")
            loss = (loss * ws[i]).sum() / ws[i].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net


def net_regen(net, features: np.ndarray) -> np.ndarray:
    """Per node (row of :func:`node_features`): does the MLP actor regenerate (greedy action)?"""
    import torch

    with torch.no_grad():
        logits = net(torch.as_tensor(features)).numpy()
    return logits.argmax(axis=1) == 1


def frontier_cpt(points: list[tuple[float, float]], acc_weak: float, acc_strong: float, level: float = 80.0) -> float:
    """CPT at ``level`` % of the gap for the upper frontier of (cost %, accuracy) points."""
    cost = np.array([c for c, _ in points], dtype=float)
    acc = np.array([a for _, a in points], dtype=float)
    return cpt(upper_frontier(cost, acc, acc_weak), acc_weak, acc_strong, level)


def headroom(train: FlatTrees, test: FlatTrees, lams, iters: int = 6, seed: int = 0, progress: bool = True,
             distill_out: str | None = None, distill_epochs: int = 20) -> dict:
    """Policy-iteration points on ``test`` per lambda next to TRIM-Thr's, with CPT(80%) of both.

    With ``distill_out``, each lambda's policy is also copied into TRIM-Agg's MLP
    (:func:`distill_mlp`), measured on ``test`` and written as an exported checkpoint
    ``distill_out/agg_pi_<lambda>``."""
    from tqdm import tqdm

    x_test = node_features(test)
    x_train = node_features(train) if distill_out else None
    acc_weak = float(test.weak_only()["correct"].mean())
    acc_strong = float(test.strong_only_correct.mean())
    rows, students = [], []
    for lam in tqdm(list(lams), desc="policy iteration", unit="lambda", disable=not progress):
        model = agg_policy_iteration(train, float(lam), iters=iters, seed=seed)
        pv = policy_values(test, model.predict(x_test) > 0, float(lam))
        rows.append({"lam": float(lam), "accuracy": pv.accuracy, "cost_pct": pv.cost_pct})
        if distill_out:
            regen = model.predict(x_train) > 0
            net = distill_mlp(train, regen, epochs=distill_epochs, seed=seed)
            spv = policy_values(test, net_regen(net, x_test), float(lam))
            w = reach_weights(train, regen, 0.0)
            agree = float(((net_regen(net, x_train) == regen) * w).sum() / w.sum())
            path = _write_student(net, float(lam), distill_out, train)
            students.append({"lam": float(lam), "accuracy": spv.accuracy, "cost_pct": spv.cost_pct,
                             "agreement": agree, "checkpoint": str(path)})
    thr = []
    for k in THRESHOLDS:
        pv = policy_values(test, test.weak_prm < k, 0.0)
        thr.append({"threshold": k, "accuracy": pv.accuracy, "cost_pct": pv.cost_pct})
    cpt_pi = frontier_cpt([(r["cost_pct"], r["accuracy"]) for r in rows], acc_weak, acc_strong)
    cpt_thr = frontier_cpt([(r["cost_pct"], r["accuracy"]) for r in thr], acc_weak, acc_strong)
    out = {"train_trees": train.n_trees, "test_trees": test.n_trees, "acc_weak": acc_weak, "acc_strong": acc_strong,
           "policy_iteration": rows, "threshold": thr,
           "cpt80_policy_iteration": cpt_pi, "cpt80_threshold": cpt_thr,
           "ratio": cpt_pi / cpt_thr if cpt_thr and math.isfinite(cpt_thr) else math.nan}
    if distill_out:
        out["distilled"] = students
        out["cpt80_distilled"] = frontier_cpt([(r["cost_pct"], r["accuracy"]) for r in students], acc_weak, acc_strong)
    return out


def _write_student(net, lam: float, folder: str, train: FlatTrees):
    """The distilled MLP as an exported TRIM-Agg checkpoint (loadable with ``load_checkpoint``)."""
    import torch

    from trim_rl import __version__
    from trim_rl.export import write_checkpoint

    meta = {"family": "TRIM-Agg (distilled from policy iteration)", "observation": AggObservation().config(),
            "lam": lam, "lam_range": None, "eval_lams": [lam],
            "network": dict(STUDENT_NET),
            "versions": {"trim_rl": __version__, "torch": str(torch.__version__)},
            "source": {"headroom": "policy iteration on the agg features, distilled into the MLP",
                       "train_trees": train.sources},
            "validation": None}
    return write_checkpoint(net, meta, Path(folder) / f"agg_pi_{lam:g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m trim_rl.eval.headroom",
        description="Estimate how far a policy on the agg features can go on these trees: approximate policy "
                    "iteration with exact tree evaluation (gradient-boosted advantage on the agg observation), "
                    "trained on --train and measured on --trees next to TRIM-Thr. A diagnostic for TRIM-Agg, "
                    "not a router.")
    ap.add_argument("--train", default="sim:math500:train",
                    help="training trees: a file or sim:PROFILE:SPLIT[:SEEDS], e.g. sim:math500:train:0-11 for 12 "
                         "draws (default: the bundled train trees)")
    ap.add_argument("--trees", default="sim:math500:test", help="held-out trees to measure on (default: bundled test)")
    ap.add_argument("--lams", type=float, nargs="+", default=list(DEFAULT_LAMS),
                    help="prices of one strong token, one policy each (default: %(default)s)")
    ap.add_argument("--iters", type=int, default=6, help="policy-iteration rounds per lambda (default: 6)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the regression (default: 0)")
    ap.add_argument("--out", help="also write the figures as JSON to this file")
    ap.add_argument("--distill-out", metavar="DIR",
                    help="also copy each lambda's policy into TRIM-Agg's MLP ([64, 64] tanh; reach-weighted "
                         "cross-entropy), report its test points and write it as an exported checkpoint "
                         "DIR/agg_pi_<lambda> (evaluate.py --checkpoints, train.py --init-from)")
    ap.add_argument("--distill-epochs", type=int, default=20, help="epochs of that supervised fit (default 20)")
    args = ap.parse_args(argv)
    from trim_rl.data.flat import load_flat
    from trim_rl.data.trees import atomic_output
    from trim_rl.sim.bundled import resolve_tree_spec

    t0 = time.time()
    train = load_flat(*resolve_tree_spec(args.train, progress=True))
    test = load_flat(*resolve_tree_spec(args.trees, progress=True))
    res = headroom(train, test, args.lams, iters=args.iters, seed=args.seed, distill_out=args.distill_out,
                   distill_epochs=args.distill_epochs)
    res.update({"train": args.train, "trees": args.trees, "seconds": round(time.time() - t0, 1)})
    print(f"{res['train_trees']} training trees ({args.train}), {res['test_trees']} test trees ({args.trees})")
    print("lambda     accuracy  cost")
    for r in res["policy_iteration"]:
        print(f"{r['lam']:<10g} {100 * r['accuracy']:6.2f}%  {r['cost_pct']:6.2f}%")
    for r in res.get("distilled", []):
        print(f"distilled MLP {r['lam']:<10g} {100 * r['accuracy']:6.2f}%  {r['cost_pct']:6.2f}%  agreement "
              f"{100 * r['agreement']:.1f}%  {r['checkpoint']}")
    print(f"CPT(80%): policy iteration on agg {res['cpt80_policy_iteration']:.1f}%, TRIM-Thr "
          f"{res['cpt80_threshold']:.1f}%, ratio {res['ratio']:.2f}")
    if "cpt80_distilled" in res:
        print(f"CPT(80%) of the distilled MLPs: {res['cpt80_distilled']:.1f}%")
    if args.out:
        with atomic_output(args.out, "w") as fh:
            fh.write(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
