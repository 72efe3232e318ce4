"""TRIM-Agg / TRIM-Seq: MaskablePPO (sb3-contrib) pieces."""

from __future__ import annotations


import gymnasium as gym
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


