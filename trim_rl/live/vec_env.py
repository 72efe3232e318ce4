"""``LiveRoutingVecEnv``: N problems routed against live models in lock step (an SB3 ``VecEnv``).

The batch engine is :class:`trim_rl.live.env.LiveBatch` (the one routing loop of live decoding
and serving, with the agent's actions between its draft+score and its decide+regenerate halves);
this class gives it SB3's API: ``reset`` / ``step_async`` / ``step_wait``, ``action_masks()`` for
MaskablePPO, ``get_attr`` / ``set_attr("lam", ...)`` for the online price update, and ``reset_infos``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from trim_rl.data.problems import Problem
from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.vec_env import MaskedVecEnv
from trim_rl.live.env import LiveBatch, backends_from_urls, load_problem_set
from trim_rl.live.routing import Backends


class LiveRoutingVecEnv(MaskedVecEnv):
    """Batched live routing (see :class:`trim_rl.live.env.LiveRoutingEnv` for spaces, reward and
    ``info``).  Either ``backends`` or the URLs (with ``live decode``'s other flags as ``live_options``)."""

    def __init__(self, backends: Backends | None = None, problems: Sequence[Problem] | str = (), num_envs: int = 8,
                 lam: float = 1e-3, obs: str = "agg", budget_conditioned: bool = False,
                 lam_range: tuple[float, float] = (1e-4, 1e-2), max_interventions: int | None = None,
                 max_steps: int = MAX_STEPS, weak_url: str | None = None, strong_url: str | None = None,
                 prm_url: str | None = None, live_options: dict | None = None):
        if backends is None:
            backends = backends_from_urls(weak_url, strong_url, prm_url, live_options)
        self.batch = LiveBatch(backends, load_problem_set(problems), num_envs, lam, obs, budget_conditioned,
                               lam_range, max_interventions, max_steps)
        self.builder = self.batch.builder
        super().__init__(self.batch.n, self.builder.space, spaces.Discrete(2))
        self._actions = np.zeros(self.num_envs, dtype=np.int64)

    # the batch's settings, read-only
    lam = property(attrgetter("batch.lam"))
    budget_conditioned = property(attrgetter("batch.budget_conditioned"))
    lam_range = property(attrgetter("batch.lam_range"))
    dropped = property(attrgetter("batch.dropped"), doc="Problems dropped after a backend failure so far.")

    def reset(self):
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs = self.batch.reset(seed)
        self._reset_seeds()
        self._reset_options()
        self._set_reset_infos()
        return obs

    def action_masks(self) -> np.ndarray:
        return self.batch.action_masks()

    def _begun(self) -> tuple[str, list]:
        return "problem_id", self.batch.problem_ids()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rew, dones, infos = self.batch.step(self._actions)
        if dones.any():
            self._set_reset_infos(np.flatnonzero(dones).tolist())
        return obs, rew.astype(np.float32), dones, infos

    def close(self) -> None:
        self.batch.close()

    def _set_lam(self, lam: float) -> None:  # the online price update: from the next decision on
        b = self.batch
        b.lam = lam
        if not b.budget_conditioned:
            for r in b.routes:
                if r is not None:
                    r.lam = b.lam
