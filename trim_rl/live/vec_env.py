"""``LiveRoutingVecEnv``: N problems routed against live models in lock step (an SB3 ``VecEnv``).

The batch engine is :class:`trim_rl.live.env.LiveBatch` (the one routing loop of live decoding
and serving, with the agent's actions between its draft+score and its decide+regenerate halves);
this class gives it SB3's API: ``reset`` / ``step_async`` / ``step_wait``, ``action_masks()`` for
MaskablePPO, ``get_attr`` / ``set_attr("lam", ...)`` for the online price update, and ``reset_infos``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from trim_rl.data.problems import Problem
from trim_rl.data.schema import MAX_STEPS
from trim_rl.live.env import LiveBatch, backends_from_urls, load_problem_set
from trim_rl.envs.routing_env import check_prices
from trim_rl.live.routing import Backends


class LiveRoutingVecEnv(VecEnv):
    """Batched live routing (see :class:`trim_rl.live.env.LiveRoutingEnv` for spaces, reward and
    ``info``).  Either ``backends`` or the URLs (with ``live decode``'s other flags as ``live_options``)."""

    render_mode = None

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

    @property
    def lam(self) -> float:
        return self.batch.lam

    @property
    def budget_conditioned(self) -> bool:
        return self.batch.budget_conditioned

    @property
    def lam_range(self) -> tuple[float, float]:
        return self.batch.lam_range

    @property
    def dropped(self) -> int:
        """Problems dropped after a backend failure so far."""
        return self.batch.dropped

    def reset(self):
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs = self.batch.reset(seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{"action_mask": m, "problem_id": p} for m, p in zip(self.action_masks(),
                                                                                 self.batch.problem_ids())]
        return obs

    def action_masks(self) -> np.ndarray:
        return self.batch.action_masks()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rew, dones, infos = self.batch.step(self._actions)
        if dones.any():
            masks, ids = self.action_masks(), self.batch.problem_ids()
            for i in np.flatnonzero(dones).tolist():
                self.reset_infos[i] = {"action_mask": masks[i], "problem_id": ids[i]}
        return obs, rew.astype(np.float32), dones, infos

    def close(self) -> None:
        self.batch.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if not hasattr(self, attr_name) or attr_name.startswith("_"):
            raise AttributeError(attr_name)
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name == "lam":  # the online price update: from the next decision on
            check_prices(float(value), self.batch.lam_range)
            b = self.batch
            b.lam = float(value)
            if not b.budget_conditioned:
                for r in b.routes:
                    if r is not None:
                        r.lam = b.lam
            return
        raise AttributeError(f"LiveRoutingVecEnv does not support setting {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._get_indices(indices)]
        raise AttributeError(f"LiveRoutingVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
