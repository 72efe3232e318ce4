"""The policy protocol shared by every router (stable-baselines3's ``predict``) and the defaults of
its optional members (:class:`PolicyBase`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Anything with SB3's ``predict``: actions 0 (keep) / 1 (regenerate) for a batch of observations.

    What evaluation, live decoding and the server read of a policy (:class:`PolicyBase` gives each
    its default, so a policy declares only what it has):

    * ``obs``: the observation builder's name (``agg`` or ``seq``); ``builder()``: that builder.
    * ``budget_conditioned``: whether the price ``lam`` is part of the observation; ``lam``: the price
      the policy was trained at (None: none, or one per run for a budget-conditioned policy).
    * ``requested_budget``: the budget (% of always-strong's strong tokens) it was trained for, if any;
      ``budget_table``: a budget-conditioned checkpoint's budget -> price table (None otherwise);
      ``lam_for_budget(budget, what)``: the price that spends ``budget`` (ValueError naming ``what``).
    * ``stateful``: whether ``predict`` carries per-problem ``state`` (the POMDP belief).
    * ``meta``: its checkpoint's ``policy.json`` (empty for a built-in); ``family``: the frontier it
      joins in an evaluation; ``folder``: its checkpoint folder (None for a built-in).

    Optional capabilities, probed by the code that uses them (no default would be right):
    ``bind(venv)`` (a policy that reads the env's current nodes: the step oracle) and
    ``action_probs(obs, masks)`` (a stochastic policy's probabilities, for off-policy estimates).
    """

    obs: str
    budget_conditioned: bool
    stateful: bool
    lam: float | None
    requested_budget: float | None
    budget_table: Any
    meta: Mapping[str, Any]
    family: str
    folder: Path | None

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]: ...

    def builder(self) -> Any: ...

    def lam_for_budget(self, budget: float, what: str = "--budget") -> float: ...


class PolicyBase:
    """The defaults of :class:`Policy`'s members: an ``agg`` observation, no price, no budget, no
    state, no checkpoint.  Subclasses override what they have (as attributes or properties)."""

    obs: str = "agg"
    budget_conditioned: bool = False
    stateful: bool = False
    lam: float | None = None
    requested_budget: float | None = None
    budget_table: Any = None
    meta: Mapping[str, Any] = MappingProxyType({})
    family: str = "policy"
    folder: Path | None = None

    def builder(self) -> Any:
        """The observation builder this policy reads (the env's, by ``obs`` and ``budget_conditioned``)."""
        # trim_rl.envs.observations imports gymnasium: only a router needs it
        from trim_rl.envs.observations import make_builder

        return make_builder(self.obs, bool(self.budget_conditioned))

    def lam_for_budget(self, budget: float, what: str = "--budget") -> float:
        """The price that spends ``budget``: only a budget-conditioned checkpoint's table knows it."""
        raise ValueError(f"{what}: this policy carries no budget table to turn a budget into a price; "
                         "give the price itself")


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
