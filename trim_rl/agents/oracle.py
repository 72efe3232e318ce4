"""Omniscient references that know every outcome in the tree.

* Step-level oracle: exact dynamic programming over each tree (:mod:`trim_rl.data.tree_dp`).  For a
  price ``lam`` it maximises ``correct - lam * strong_tokens`` per tree (:func:`step_dp`);
  :func:`min_cost_to_correct` gives the
  least strong tokens that reach a correct answer in each tree.  Because every tree contributes 0
  or 1 correct answer, the oracle's accuracy at a budget is reached by solving the cheapest trees
  first, so its exact frontier is the cumulative sum of the sorted per-tree costs; the DP at
  ``lam`` just above ``1/c`` reproduces the point that includes every tree of cost below ``c``.
* Query-level oracle: per problem the weak-only solution when it is correct (cost 0), else the
  strong model alone when that is correct (its tokens), else the weak one; budgets are filled
  cheapest problem first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trim_rl.agents.base import apply_mask
from trim_rl.data.flat import FlatTrees
from trim_rl.data.tree_dp import min_cost_to_correct, step_dp

if TYPE_CHECKING:  # the module imports stable_baselines3
    from trim_rl.envs.vec_env import RoutingVecEnv

__all__ = ["min_cost_to_correct", "step_dp", "greedy_points", "OracleStepPolicy", "query_oracle_cost"]


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
        self._env: RoutingVecEnv | None = None

    def bind(self, venv: RoutingVecEnv) -> None:
        """Play ``venv`` (built on these very trees): each decision reads its ``current_nodes``."""
        if venv.trees is not self.trees:
            raise ValueError("the oracle must play the trees it was solved on")
        self._env = venv

    @property
    def env(self) -> RoutingVecEnv | None:
        """The env it was bound to (None before :meth:`bind`)."""
        return self._env

    def predict(self, observation, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks=None):
        if self._env is None:
            raise RuntimeError("OracleStepPolicy.bind(venv) first: the oracle reads the env's current nodes")
        return apply_mask(self.table[self._env.current_nodes].astype(np.int64), action_masks), state


def query_oracle_cost(weak_correct: np.ndarray, strong_correct: np.ndarray, strong_tokens: np.ndarray) -> np.ndarray:
    """Per-problem strong tokens the query oracle needs for a correct answer (0 if weak is right,
    inf if neither is)."""
    return np.where(weak_correct, 0.0, np.where(strong_correct, strong_tokens.astype(float), np.inf))
