"""Exact dynamic programming over flat trajectory trees.

A tree holds the outcome of both actions at every node, so whatever a deterministic policy does,
its accuracy and strong-token spend are exact: one backward pass over the nodes
(:func:`policy_outcomes`), or one forward walk along the policy's own path (:func:`play`, about a
hundred times cheaper when only the totals are needed).  The step-level oracle
(:func:`step_dp`, :func:`min_cost_to_correct`), policy iteration in the trainer, the headroom
yardstick and the POMDP fitter's node weights (:func:`reach_probability`) all use these.

Conventions: a per-node policy is a boolean array ``regen`` (True: regenerate, where the tree
allows it; a masked regenerate plays as keep).  Accuracy is P(correct) in [0, 1]; tokens are the
strong model's, summed along the path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_rl.data.flat import ABSENT, FlatTrees

__all__ = ["levels_bottom_up", "levels_top_down", "action_outcomes", "PolicyOutcomes", "policy_outcomes",
           "play", "reach_probability", "min_cost_to_correct", "step_dp", "max_spend", "cost_pct"]


def levels_bottom_up(f: FlatTrees) -> list[np.ndarray]:
    """Node indices grouped by depth, deepest first (children before parents)."""
    order = np.argsort(-f.depth, kind="stable")
    d = f.depth[order]
    cuts = np.flatnonzero(np.diff(d)) + 1
    return np.split(order, cuts)


def levels_top_down(f: FlatTrees) -> list[np.ndarray]:
    """Node indices grouped by depth, roots first (parents before children)."""
    return levels_bottom_up(f)[::-1]


def _outcome(final: np.ndarray, correct: np.ndarray, child: np.ndarray, value_child: np.ndarray,
             end_fail: float) -> np.ndarray:
    """Value of taking a step: its own outcome when final, the child's value otherwise."""
    out = np.where(final, np.where(correct == 1, 0.0, end_fail), end_fail)
    has = child >= 0
    out[has] = value_child[has]
    return out


def action_outcomes(f: FlatTrees, nodes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keep, regenerate) at ``nodes`` of a per-node quantity ``x`` worth 1 for a correct final step,
    0 for a wrong one (or the depth limit) and carried from the child otherwise, both returned
    minus 1 (callers add the 1 back after any token price, which keeps the step oracle's
    arithmetic, and so its ties, exactly as it has always been)."""
    kc, rc = f.keep_child[nodes], f.regen_child[nodes]
    keep = _outcome(f.weak_final[nodes], f.weak_correct[nodes], kc, x[np.maximum(kc, 0)] - 1.0, -1.0)
    regen = _outcome(f.strong_final[nodes], f.strong_correct[nodes], rc, x[np.maximum(rc, 0)] - 1.0, -1.0)
    return keep, regen


def _child_tokens(child: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return np.where(child >= 0, tokens[np.maximum(child, 0)], 0.0)


@dataclass
class PolicyOutcomes:
    """Exact outcome of a deterministic per-node policy, from every node on.

    ``keep_*`` / ``regen_*``: taking that action at the node and following the policy afterwards
    (``regen_*`` is nan where the tree does not allow regenerating); ``accuracy`` and ``tokens``:
    following the policy from the node.  Tree totals: ``accuracy[tree_root]``.
    """

    keep_acc: np.ndarray
    keep_tokens: np.ndarray
    regen_acc: np.ndarray
    regen_tokens: np.ndarray
    accuracy: np.ndarray
    tokens: np.ndarray

    def advantage(self, lam: float) -> np.ndarray:
        """Q(regenerate) - Q(keep) of the reward correct - lam * strong tokens (0 where masked)."""
        adv = (self.regen_acc - self.keep_acc) - lam * (self.regen_tokens - self.keep_tokens)
        return np.nan_to_num(adv, nan=0.0)


def policy_outcomes(f: FlatTrees, regen: np.ndarray, levels: list[np.ndarray] | None = None) -> PolicyOutcomes:
    """One backward pass: what the policy ``regen`` reaches from every node (see :class:`PolicyOutcomes`)."""
    n = f.n_nodes
    acc, tok = np.zeros(n), np.zeros(n)
    k_acc, k_tok = np.zeros(n), np.zeros(n)
    r_acc, r_tok = np.full(n, np.nan), np.full(n, np.nan)
    for nodes in levels if levels is not None else levels_bottom_up(f):
        kc, rc = f.keep_child[nodes], f.regen_child[nodes]
        keep_o, regen_o = action_outcomes(f, nodes, acc)
        ka, kt = 1.0 + keep_o, _child_tokens(kc, tok)
        ra, rt = 1.0 + regen_o, f.strong_tokens[nodes] + _child_tokens(rc, tok)
        allowed = rc != ABSENT
        act = allowed & regen[nodes]
        k_acc[nodes], k_tok[nodes] = ka, kt
        r_acc[nodes] = np.where(allowed, ra, np.nan)
        r_tok[nodes] = np.where(allowed, rt, np.nan)
        acc[nodes] = np.where(act, ra, ka)
        tok[nodes] = np.where(act, rt, kt)
    return PolicyOutcomes(k_acc, k_tok, r_acc, r_tok, acc, tok)


def play(f: FlatTrees, regen) -> tuple[np.ndarray, np.ndarray]:
    """Walk every tree from its root along a deterministic policy: (correct, strong tokens) per tree.

    ``regen`` is a boolean per node, or a function from an array of node indices to booleans (called
    once per depth with the nodes the walk stands on, so a network is asked only about the nodes
    the policy reaches).  Only the policy's own paths are touched, so this is the cheap way to get
    a deterministic policy's accuracy and spend (``policy_outcomes`` gives the same totals)."""
    decide = regen if callable(regen) else (lambda nodes: regen[nodes])
    node = f.tree_root.copy()
    correct = np.zeros(f.n_trees, dtype=bool)
    tokens = np.zeros(f.n_trees, dtype=np.int64)
    live = np.arange(f.n_trees)
    while live.size:
        n = node[live]
        rc = f.regen_child[n]
        act = np.asarray(decide(n), dtype=bool) & (rc != ABSENT)
        tokens[live] += np.where(act, f.strong_tokens[n], 0)
        final = np.where(act, f.strong_final[n], f.weak_final[n])
        right = np.where(act, f.strong_correct[n], f.weak_correct[n]) == 1
        correct[live[final]] = right[final]
        nxt = np.where(act, rc, f.keep_child[n])
        node[live] = nxt
        live = live[nxt >= 0]  # a final step or the depth limit ends the episode
    return correct, tokens


def reach_probability(f: FlatTrees, regen_prob: float | np.ndarray) -> np.ndarray:
    """Probability that a router regenerating each step with ``regen_prob`` (keeping otherwise)
    reaches each node; a regenerate masked by the budget is played as keep.  ``regen_prob`` is one
    probability for every node or an array with one per node."""
    regen_prob = np.broadcast_to(np.asarray(regen_prob, dtype=float), (f.n_nodes,))
    w = np.ones(f.n_nodes)
    if f.n_nodes == 0:
        return w
    for nodes in levels_top_down(f)[1:]:
        par = f.parent[nodes]
        allowed = f.regen_child[par] != ABSENT
        p = regen_prob[par]
        step = np.where(f.parent_action[nodes] == 1, p, np.where(allowed, 1.0 - p, 1.0))
        w[nodes] = w[par] * step
    return w


def min_cost_to_correct(f: FlatTrees) -> tuple[np.ndarray, np.ndarray]:
    """(per tree, per node) least strong tokens from that node to a correct answer (inf if none)."""
    m = np.full(f.n_nodes, np.inf)
    for nodes in levels_bottom_up(f):
        kc, rc = f.keep_child[nodes], f.regen_child[nodes]
        keep = _outcome(f.weak_final[nodes], f.weak_correct[nodes], kc, m[np.maximum(kc, 0)], np.inf)
        allowed = rc != ABSENT
        regen = f.strong_tokens[nodes] + _outcome(f.strong_final[nodes], f.strong_correct[nodes], rc,
                                                  m[np.maximum(rc, 0)], np.inf)
        m[nodes] = np.where(allowed, np.minimum(keep, regen), keep)
    return m[f.tree_root], m


def step_dp(f: FlatTrees, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(per-node best action, per-node value) maximising correct - lam * strong tokens with every
    outcome known (the step-level oracle).  Ties go to keep."""
    v = np.zeros(f.n_nodes)
    a = np.zeros(f.n_nodes, dtype=np.int8)
    for nodes in levels_bottom_up(f):
        keep_o, regen_o = action_outcomes(f, nodes, v)
        keep = 1.0 + keep_o
        regen = -lam * f.strong_tokens[nodes] + 1.0 + regen_o
        allowed = f.regen_child[nodes] != ABSENT
        better = allowed & (regen > keep)
        a[nodes] = better
        v[nodes] = np.where(better, regen, keep)
    return a, v


def max_spend(f: FlatTrees) -> np.ndarray:
    """Per tree: the most strong tokens any policy can spend (the costliest path the tree allows)."""
    m = np.zeros(f.n_nodes)
    for nodes in levels_bottom_up(f):
        kc, rc = f.keep_child[nodes], f.regen_child[nodes]
        keep = _child_tokens(kc, m)
        regen = np.where(rc != ABSENT, f.strong_tokens[nodes] + _child_tokens(rc, m), -np.inf)
        m[nodes] = np.maximum(keep, regen)
    return m[f.tree_root]


def cost_pct(f: FlatTrees, strong_tokens: np.ndarray) -> float:
    """Strong tokens per tree as a % of always-strong's (the strong model alone) on the same trees."""
    return float(100.0 * np.sum(strong_tokens) / f.strong_only_tokens.sum())
