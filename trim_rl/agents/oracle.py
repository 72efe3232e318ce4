"""Omniscient references that know every outcome in the tree.

* Step-level oracle: exact dynamic programming over each tree.  For a price ``lam`` it maximises
  ``correct - lam * strong_tokens`` per tree (:func:`step_dp`); :func:`min_cost_to_correct` gives the
  least strong tokens that reach a correct answer in each tree.  Because every tree contributes 0
  or 1 correct answer, the oracle's accuracy at a budget is reached by solving the cheapest trees
  first, so its exact frontier is the cumulative sum of the sorted per-tree costs; the DP at
  ``lam`` just above ``1/c`` reproduces the point that includes every tree of cost below ``c``.
* Query-level oracle: per problem the weak-only solution when it is correct (cost 0), else the
  strong model alone when that is correct (its tokens), else the weak one; budgets are filled
  cheapest problem first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trim_rl.agents.base import apply_mask
from trim_rl.data.flat import ABSENT, FlatTrees


def _by_depth_desc(f: FlatTrees) -> list[np.ndarray]:
    order = np.argsort(-f.depth, kind="stable")
    d = f.depth[order]
    cuts = np.flatnonzero(np.diff(d)) + 1
    return np.split(order, cuts)


def _outcome(final: np.ndarray, correct: np.ndarray, child: np.ndarray, value_child: np.ndarray, end_fail: float):
    """Value of taking a step: its own outcome when final, the child's value otherwise."""
    out = np.where(final, np.where(correct == 1, 0.0, end_fail), end_fail)
    has = child >= 0
    out[has] = value_child[has]
    return out


def _action_outcomes(f: FlatTrees, nodes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keep, regenerate) at ``nodes`` of a per-node quantity ``x`` worth 1 for a correct final step,
    0 for a wrong one and carried from the child otherwise, both returned minus 1 (callers add the
    1 back, after any token price, in the order the step-level oracle always has)."""
    kc, rc = f.keep_child[nodes], f.regen_child[nodes]
    keep = _outcome(f.weak_final[nodes], f.weak_correct[nodes], kc, x[np.maximum(kc, 0)] - 1.0, -1.0)
    regen = _outcome(f.strong_final[nodes], f.strong_correct[nodes], rc, x[np.maximum(rc, 0)] - 1.0, -1.0)
    return keep, regen


def min_cost_to_correct(f: FlatTrees) -> tuple[np.ndarray, np.ndarray]:
    """(per tree, per node) least strong tokens from that node to a correct answer (inf if none)."""
    M = np.full(f.n_nodes, np.inf)
    for nodes in _by_depth_desc(f):
        kc, rc = f.keep_child[nodes], f.regen_child[nodes]
        keep = _outcome(f.weak_final[nodes], f.weak_correct[nodes], kc, M[np.maximum(kc, 0)], np.inf)
        allowed = rc != ABSENT
        regen = f.strong_tokens[nodes] + _outcome(f.strong_final[nodes], f.strong_correct[nodes], rc,
                                                  M[np.maximum(rc, 0)], np.inf)
        M[nodes] = np.where(allowed, np.minimum(keep, regen), keep)
    return M[f.tree_root], M


def step_dp(f: FlatTrees, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(per-node best action, per-node value) maximising correct - lam * strong tokens.
    Ties go to keep."""
    V = np.zeros(f.n_nodes)
    A = np.zeros(f.n_nodes, dtype=np.int8)
    for nodes in _by_depth_desc(f):
        keep_o, regen_o = _action_outcomes(f, nodes, V)
        keep = 1.0 + keep_o
        regen = -lam * f.strong_tokens[nodes] + 1.0 + regen_o
        allowed = f.regen_child[nodes] != ABSENT
        better = allowed & (regen > keep)
        A[nodes] = better
        V[nodes] = np.where(better, regen, keep)
    return A, V


def greedy_points(cost: np.ndarray, base_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Budget curve of a 0/1 oracle: problems already correct at cost 0 (``base_correct``), the rest
    bought cheapest first.  Returns (strong tokens per problem, accuracy) per point, first point
    the free one."""
    n = cost.size
    extra = np.sort(cost[~base_correct & np.isfinite(cost) & (cost > 0)])
    free = int((base_correct | (cost == 0)).sum())
    tokens = np.concatenate([[0.0], np.cumsum(extra)]) / n
    acc = (free + np.arange(extra.size + 1)) / n
    return tokens, acc


class OracleStepPolicy:
    """Acts on the step DP's table; needs the env it plays (``bind``) to know the current node."""

    obs = "agg"

    def __init__(self, trees: FlatTrees, lam: float):
        self.lam = float(lam)
        self.trees = trees
        self.table, _ = step_dp(trees, self.lam)
        self._env = None

    def bind(self, venv) -> None:
        if venv.trees is not self.trees:
            raise ValueError("the oracle must play the trees it was solved on")
        self._env = venv

    def predict(self, observation, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks=None):
        if self._env is None:
            raise RuntimeError("OracleStepPolicy.bind(venv) first: the oracle reads the env's current nodes")
        return apply_mask(self.table[self._env._node].astype(np.int64), action_masks), state


def query_oracle_cost(weak_correct: np.ndarray, strong_correct: np.ndarray, strong_tokens: np.ndarray) -> np.ndarray:
    """Per-problem strong tokens the query oracle needs for a correct answer (0 if weak is right,
    inf if neither is)."""
    return np.where(weak_correct, 0.0, np.where(strong_correct, strong_tokens.astype(float), np.inf))
