"""Policy networks in plain torch (no stable-baselines3), shared by training and exported checkpoints."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class SeqEncoder(nn.Module):
    """Transformer encoder over the ``seq`` observation, read out at the current (newest) step.

    Input (B, T, 5) with columns prm, tokens, regenerated, current, valid; padding rows
    (valid = 0) are masked out of attention; sinusoidal positional encoding; output (B, d_model).
    """

    def __init__(self, n_features: int = 5, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 dim_ff: int = 64, max_steps: int = 30):
        super().__init__()
        self.d_model = d_model
        self.inp = nn.Linear(n_features, d_model)
        self.register_buffer("pos", sinusoidal_positions(max_steps, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        valid = x[..., 4] > 0.5
        current = x[..., 3] > 0.5
        pad = ~valid
        pad[:, 0] = pad[:, 0] & valid.any(dim=1)  # an all-padding row (terminal obs) keeps position 0
        h = self.inp(x) + self.pos[: x.shape[1]]
        h = self.encoder(h, src_key_padding_mask=pad)
        idx = torch.where(current.any(dim=1), current.float().argmax(dim=1), torch.zeros_like(current[:, 0], dtype=torch.long))
        return self.norm(h[torch.arange(x.shape[0]), idx])


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """Features -> policy MLP -> action logits: the actor of a trained PPO policy."""

    def __init__(self, obs: str, obs_dim: int, net_arch: list[int], activation: str = "tanh",
                 encoder: dict | None = None):
        super().__init__()
        self.obs = obs
        if obs == "seq":
            self.extractor: nn.Module = SeqEncoder(**(encoder or {}))
            feat = self.extractor.d_model
        else:
            self.extractor = nn.Flatten()
            feat = obs_dim
        self.pi = mlp([feat, *net_arch], activation)
        self.action = nn.Linear(net_arch[-1] if net_arch else feat, 2)

    def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.action(self.pi(self.extractor(obs)))
        if mask is not None:
            logits = torch.where(mask, logits, torch.full_like(logits, -1e8))
        return logits
