"""The router of live decoding: a policy plus the env's observation builder, one problem at a time.

``--policy`` specs: ``weak-only``, ``strong-only``, or anything :func:`trim_rl.agents.registry.load_policy`
reads: ``thr:K`` (TRIM-Thr), a checkpoint folder (an exported TRIM-Agg / TRIM-Seq network or a
TRIM-POMDP table).  A budget-conditioned checkpoint needs a budget (its budget table gives the
price) or a price.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from trim_rl.agents.registry import load_policy as registry_load_policy
from trim_rl.envs.observations import StepHistory, make_builder

MODES = ("weak-only", "strong-only")


def load_policy(spec: str):
    """A policy (SB3 ``predict`` protocol) from a ``--policy`` spec; None for the two fixed modes."""
    if spec in MODES:
        return None
    try:
        return registry_load_policy(spec)
    except FileNotFoundError as exc:
        raise ValueError(f"policy {spec!r}: {exc}") from None


class Router:
    """Decides keep (0) / regenerate (1) for one weak step from the accepted history."""

    def __init__(self, policy, lam: float | None = None, budget: float | None = None):
        """``budget`` (% of always-strong's strong tokens) picks a budget-conditioned checkpoint's price
        from its budget table; ``lam`` gives the price directly."""
        self.policy = policy
        builder = getattr(policy, "builder", None)
        self.builder = builder() if callable(builder) else make_builder(getattr(policy, "obs", "agg"),
                                                                         bool(getattr(policy, "budget_conditioned", False)))
        conditioned = bool(getattr(self.builder, "budget_conditioned", False))
        if budget is not None:
            if lam is not None:
                raise ValueError("--budget and --lam: choose one")
            if not conditioned:
                trained = getattr(policy, "requested_budget", None)
                raise ValueError("--budget: this policy is not budget-conditioned (it spends what it was trained for"
                                 + (f": {trained:g}%" if trained is not None else "") + "); pass a budget-conditioned "
                                 "checkpoint to choose the budget per run")
            lam = policy.lam_for_budget(float(budget), "--budget")
        self.lam, self.budget = lam, budget
        if conditioned and lam is None:
            lam = getattr(policy, "lam", None)
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
