"""Deployment checkpoints: ``model.safetensors`` + ``policy.json``, loadable with torch alone.

No stable-baselines3 and no pickle: the JSON describes the network and the observation builder,
the weights are safetensors, and their sha256 is checked on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trim_rl.agents.networks import PolicyNet

FORMAT = "trim_rl.policy/v1"
WEIGHTS = "model.safetensors"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ExportedPolicy:
    """A trained policy loaded from a checkpoint folder, on the SB3-style ``predict`` protocol."""

    def __init__(self, folder: str | Path):
        from safetensors.torch import load_file

        self.folder = Path(folder)
        meta_path = self.folder / "policy.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: not a trim_rl checkpoint folder (policy.json missing)")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format is {self.meta.get('format')!r}, expected {FORMAT!r}")
        weights = self.folder / self.meta.get("weights", WEIGHTS)
        digest = sha256_file(weights)
        if digest != self.meta["sha256"]:
            raise ValueError(f"{weights}: sha256 {digest} does not match policy.json ({self.meta['sha256']})")
        net = self.meta["network"]
        self.obs = self.meta["observation"]["name"]
        self.budget_conditioned = bool(self.meta["observation"].get("budget_conditioned", False))
        self.lam = self.meta.get("lam")
        self.family = self.meta.get("family", "policy")
        self.net = PolicyNet(self.obs, int(net["obs_dim"]), list(net["net_arch"]), net.get("activation", "tanh"),
                             net.get("encoder"))
        self.net.load_state_dict(load_file(str(weights)))
        self.net.eval()

    def builder(self):
        from trim_rl.envs.observations import builder_from_config

        return builder_from_config(self.meta["observation"])

    def logits(self, observation: np.ndarray, action_masks: np.ndarray | None = None) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32))
        single = obs.ndim == (1 if self.obs == "agg" else 2)
        if single:
            obs = obs[None]
        mask = None if action_masks is None else torch.as_tensor(np.asarray(action_masks, dtype=bool).reshape(-1, 2))
        with torch.no_grad():
            out = self.net(obs, mask).numpy()
        return out[0] if single else out

    def predict(self, observation: np.ndarray, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks: np.ndarray | None = None):
        lg = np.atleast_2d(self.logits(observation, action_masks))
        return lg.argmax(axis=1).astype(np.int64), state


def load_checkpoint(folder: str | Path):
    """An exported policy: a network (``ExportedPolicy``) or, where policy.json says ``"kind": "pomdp"``,
    a TRIM-POMDP table (:func:`trim_rl.agents.pomdp.policy.load_pomdp`)."""
    meta_path = Path(folder) / "policy.json"
    if meta_path.exists() and json.loads(meta_path.read_text(encoding="utf-8")).get("kind") == "pomdp":
        from trim_rl.agents.pomdp.policy import load_pomdp

        return load_pomdp(folder)
    return ExportedPolicy(folder)
