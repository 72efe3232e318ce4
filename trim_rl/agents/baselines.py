"""Rule-based step routers: TRIM-Thr, always-weak, always-strong and the random step router."""

from __future__ import annotations

from typing import Any

import numpy as np

from trim_rl.agents.base import PolicyBase, apply_mask, current_prm


class ThresholdPolicy(PolicyBase):
    """TRIM-Thr: regenerate when the current step's PRM score is below ``k``."""

    def __init__(self, k: float):
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"threshold k must be in [0, 1], got {k}")
        self.k = float(k)

    def predict(self, observation, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks=None):
        a = (current_prm(observation) < self.k).astype(np.int64)
        return apply_mask(a, action_masks), state


class ConstantPolicy(PolicyBase):
    """Always keep (``action=0``, always-weak) or always regenerate (``action=1``, always-strong
    within the tree's intervention budget)."""

    def __init__(self, action: int):
        self.action = int(action)

    def predict(self, observation, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks=None):
        n = np.asarray(observation).shape[0] if np.asarray(observation).ndim > 1 else 1
        return apply_mask(np.full(n, self.action), action_masks), state


class RandomStepPolicy(PolicyBase):
    """Regenerate each step with probability ``p`` (a fixed seed makes it reproducible)."""

    def __init__(self, p: float, seed: int = 0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability p must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def predict(self, observation, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks=None):
        n = np.asarray(observation).shape[0] if np.asarray(observation).ndim > 1 else 1
        return apply_mask((self.rng.random(n) < self.p).astype(np.int64), action_masks), state
