"""The router of live decoding: a policy plus the env's observation builder, one problem at a time.

``--policy`` specs: ``weak-only``, ``strong-only``, ``thr:K`` (TRIM-Thr), or a checkpoint folder
(an exported TRIM-Agg / TRIM-Seq network or a TRIM-POMDP table, see
:func:`trim_rl.agents.exported.load_checkpoint`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from trim_rl.agents.baselines import ThresholdPolicy
from trim_rl.envs.observations import StepHistory, make_builder

MODES = ("weak-only", "strong-only")


def load_policy(spec: str):
    """A policy (SB3 ``predict`` protocol) from a ``--policy`` spec; None for the two fixed modes."""
    if spec in MODES:
        return None
    if spec.startswith("thr:"):
        try:
            k = float(spec[4:])
        except ValueError:
            raise ValueError(f"policy {spec!r}: the threshold after 'thr:' must be a number in [0, 1]") from None
        return ThresholdPolicy(k)
    path = Path(spec)
    if not (path / "policy.json").is_file():
        raise ValueError(f"policy {spec!r}: use weak-only, strong-only, thr:K or a checkpoint folder with policy.json")
    from trim_rl.agents.exported import load_checkpoint

    return load_checkpoint(path)


class Router:
    """Decides keep (0) / regenerate (1) for one weak step from the accepted history."""

    def __init__(self, policy, lam: float | None = None):
        self.policy = policy
        builder = getattr(policy, "builder", None)
        self.builder = builder() if callable(builder) else make_builder(getattr(policy, "obs", "agg"),
                                                                         bool(getattr(policy, "budget_conditioned", False)))
        self.lam = lam
        if getattr(self.builder, "budget_conditioned", False) and lam is None:
            lam = getattr(policy, "lam", None)
            if lam is None:
                raise ValueError("this policy is budget-conditioned: give the price of a strong token with --lam")
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
