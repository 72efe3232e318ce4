"""The router of live decoding: a policy plus the env's observation builder, one problem at a time.

``--policy`` specs are those of :func:`trim_rl.agents.registry.load_policy` (re-exported here):
``thr:K`` (TRIM-Thr), a checkpoint folder (an exported TRIM-Agg / TRIM-Seq network or a TRIM-POMDP
table), and ``always-weak`` / ``always-strong`` (aliases ``weak-only`` / ``strong-only``), which live
decoding runs without a router (:func:`trim_rl.agents.catalog.decode_mode`).  A budget-conditioned
checkpoint needs a budget (its budget table gives the price) or a price.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from trim_rl.agents.base import PolicyBase
from trim_rl.agents.registry import load_policy
from trim_rl.envs.observations import StepHistory

__all__ = ["Router", "load_policy"]


class Router:
    """Decides keep (0) / regenerate (1) for one weak step from the accepted history."""

    def __init__(self, policy: PolicyBase, lam: float | None = None, budget: float | None = None):
        """``budget`` (% of always-strong's strong tokens) picks a budget-conditioned checkpoint's price
        from its budget table; ``lam`` gives the price directly."""
        self.policy = policy
        self.builder = policy.builder()
        conditioned = bool(self.builder.budget_conditioned)
        if budget is not None:
            if lam is not None:
                raise ValueError("--budget and --lam: choose one")
            if not conditioned:
                trained = policy.requested_budget
                raise ValueError("--budget: this policy is not budget-conditioned (it spends what it was trained for"
                                 + (f": {trained:g}%" if trained is not None else "") + "); pass a budget-conditioned "
                                 "checkpoint to choose the budget per run")
            lam = policy.lam_for_budget(float(budget), "--budget")
        self.lam, self.budget = lam, budget
        if conditioned and lam is None:
            lam = policy.lam
            if lam is None:
                raise ValueError("this policy is budget-conditioned: give --budget PCT (or the price with --lam)")
            self.lam = float(lam)
        self.seconds: list[float] = []

    def decide(self, history: StepHistory, prm: float, tokens: int, can_regenerate: bool,
               state: Any = None, lam: float | None = None) -> tuple[int, Any]:
        """Action for the weak step (``prm``, ``tokens``) after ``history``; ``state`` carries per-problem
        policy state (the POMDP belief) from the previous call, None at the first step; ``lam`` replaces
        the router's price for this decision (a served request's own budget)."""
        t0 = time.perf_counter()
        obs = self.builder.from_history(history, prm, tokens, self.lam if lam is None else lam)
        mask = np.array([[True, bool(can_regenerate)]])
        action, state = self.policy.predict(obs[None], state=state, episode_start=np.array([history.depth == 0]),
                                            deterministic=True, action_masks=mask)
        self.seconds.append(time.perf_counter() - t0)
        return int(np.asarray(action).reshape(-1)[0]), state
