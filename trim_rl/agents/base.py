"""The policy protocol shared by every router (stable-baselines3's ``predict``)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Anything with SB3's ``predict``: actions 0 (keep) / 1 (regenerate) for a batch of observations."""

    obs: str  # observation builder name ("agg" or "seq")

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]: ...


def current_prm(observation: np.ndarray) -> np.ndarray:
    """The current step's PRM score from an ``agg`` (n, d) or ``seq`` (n, 30, 5) batch (or one obs)."""
    obs = np.asarray(observation)
    if obs.ndim == 1:
        return obs[:1]
    if obs.ndim == 2 and obs.shape[-1] in (6, 7):
        return obs[:, 0]
    if obs.ndim == 2:  # one seq observation
        return obs[obs[:, 3] > 0.5, 0][:1]
    cur = obs[:, :, 3] > 0.5
    return np.where(cur.any(1), (obs[:, :, 0] * cur).sum(1), 1.0)


def apply_mask(actions: np.ndarray, action_masks: np.ndarray | None) -> np.ndarray:
    """Turn an illegal regenerate into keep."""
    actions = np.asarray(actions, dtype=np.int64)
    if action_masks is None:
        return actions
    m = np.asarray(action_masks, dtype=bool).reshape(-1, 2)
    return np.where(m[:, 1], actions, 0)
