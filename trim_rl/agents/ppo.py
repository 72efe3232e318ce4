"""TRIM-Agg / TRIM-Seq: MaskablePPO (sb3-contrib) pieces."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from trim_rl.agents.networks import SeqEncoder


class SeqTransformerExtractor(BaseFeaturesExtractor):
    """SB3 features extractor wrapping :class:`~trim_rl.agents.networks.SeqEncoder`."""

    def __init__(self, observation_space: gym.spaces.Box, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 dim_ff: int = 64):
        super().__init__(observation_space, features_dim=d_model)
        t, f = observation_space.shape
        self.encoder = SeqEncoder(n_features=f, d_model=d_model, n_heads=n_heads, n_layers=n_layers, dim_ff=dim_ff,
                                  max_steps=t)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations)


class SB3Policy:
    """A trained MaskablePPO model on the trim_rl policy protocol (for rollouts and validation)."""

    def __init__(self, model, obs: str, budget_conditioned: bool = False):
        self.model, self.obs, self.budget_conditioned = model, obs, budget_conditioned

    def predict(self, observation: np.ndarray, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks=None):
        with torch.no_grad():
            a, _ = self.model.predict(observation, deterministic=deterministic, action_masks=action_masks)
        return np.asarray(a, dtype=np.int64), state
