"""Deployment checkpoints: ``model.safetensors`` + ``policy.json``, loadable with torch alone.

No stable-baselines3 and no pickle: the JSON describes the network and the observation builder,
the weights are safetensors, and their sha256 is checked on load.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trim_rl.agents.base import PolicyBase
from trim_rl.agents.checkpoint import (FORMAT, WEIGHTS, file_in_folder, price_field, read_policy_json, requested_budget,
                                      sha256_file)
from trim_rl.agents.networks import PolicyNet
from trim_rl.envs.observations import builder_from_config
from trim_rl.agents.budget_table import BudgetTable

__all__ = ["ExportedPolicy", "FORMAT", "WEIGHTS", "read_policy_json", "sha256_file"]


REQUIRED_FIELDS = ("sha256", "network.obs_dim", "network.net_arch", "observation.name")


def _is_int(v, lo: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _check_fields(meta: dict, meta_path: Path) -> None:
    """The fields the evaluation reads, each of the kind it expects (named with the file on failure)."""
    def bad(key: str, expected: str, got) -> ValueError:
        shown = repr(got) if len(repr(got)) <= 40 else repr(got)[:40] + "..."
        return ValueError(f"{meta_path}: field {key!r} must be {expected}, got {shown}")

    family = meta.get("family", "policy")
    if not isinstance(family, str) or not family:
        raise bad("family", "a non-empty string", family)
    bc = meta["observation"].get("budget_conditioned", False)
    if not isinstance(bc, bool):
        raise bad("observation.budget_conditioned", "true or false", bc)
    budget = meta.get("budget")
    if budget is not None:
        req = budget.get("requested") if isinstance(budget, dict) else budget
        if not isinstance(budget, dict) or (req is not None and not _finite_positive(req)):
            raise bad("budget.requested", "a finite number > 0 (or null)", req)
    if bc and meta.get("budget_table") is None:  # an older budget-conditioned checkpoint: evaluated per lambda
        lams = meta.get("eval_lams")
        if lams is not None and (not isinstance(lams, list) or not lams or not all(map(_finite_positive, lams))):
            raise bad("eval_lams", "a list of finite prices > 0", lams)
        rng = meta.get("lam_range")
        if lams is None and (not isinstance(rng, list) or len(rng) != 2 or not all(map(_finite_positive, rng))):
            raise bad("lam_range", "two finite prices > 0 (or eval_lams)", rng)


def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and v > 0


def _least_weights(net: dict, obs: str, meta_path: Path) -> int:
    """A lower bound on the weights of the network ``net`` describes (its linear layers), from the
    description alone; malformed sizes are refused by name."""
    arch = net.get("net_arch")
    if not isinstance(arch, list) or not all(_is_int(v) for v in arch):
        raise ValueError(f"{meta_path}: field 'network.net_arch' must be a list of layer sizes >= 1, got {arch!r}"[:300])
    if obs == "seq":
        enc = net.get("encoder") or {}
        if not isinstance(enc, dict) or not all(_is_int(v) for v in enc.values()):
            raise ValueError(f"{meta_path}: field 'network.encoder' must map names to sizes >= 1, got {enc!r}"[:300])
        d, ff, layers = enc.get("d_model", 32), enc.get("dim_ff", 64), enc.get("n_layers", 2)
        feat, extra = d, layers * (4 * d * d + 2 * d * ff)
    else:
        feat = net.get("obs_dim")
        if not _is_int(feat):
            raise ValueError(f"{meta_path}: field 'network.obs_dim' must be an integer >= 1, got {feat!r}"[:300])
        extra = 0
    sizes = [feat, *arch, 2]
    return extra + sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


class ExportedPolicy(PolicyBase):
    """A trained policy loaded from a checkpoint folder, on the SB3-style ``predict`` protocol."""

    def __init__(self, folder: str | Path):
        from safetensors.torch import load_file

        self.folder = Path(folder)
        meta_path = self.folder / "policy.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: not a trim_rl checkpoint folder (policy.json missing)")
        self.meta: dict[str, Any] = read_policy_json(meta_path)
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format is {self.meta.get('format')!r}, expected {FORMAT!r}")
        for key in REQUIRED_FIELDS:
            head, _, tail = key.partition(".")
            if not isinstance(self.meta.get(head), dict if tail else str) or (tail and tail not in self.meta[head]):
                raise ValueError(f"{meta_path}: field {key!r} is missing or malformed")
        weights = file_in_folder(self.folder, self.meta.get("weights", WEIGHTS), meta_path)
        lam = price_field(self.meta.get("lam"), meta_path)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: weights file named by {meta_path} is missing")
        digest = sha256_file(weights)
        if digest != self.meta["sha256"]:
            raise ValueError(f"{weights}: sha256 {digest} does not match policy.json ({self.meta['sha256']})")
        net = self.meta["network"]
        self.obs = self.meta["observation"]["name"]
        self.budget_conditioned = self.meta["observation"].get("budget_conditioned", False)
        self.lam = lam
        self.family = self.meta.get("family", "policy")
        _check_fields(self.meta, meta_path)
        tensors = load_file(str(weights))
        bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
        if bad:
            raise ValueError(f"{weights}: tensor {bad[0]!r} holds NaN or infinite values")
        # before the network is built: a policy.json asking for layers of a billion units would be
        # allocated in full (and killed by the kernel) before load_state_dict could refuse it
        need, held = _least_weights(net, self.obs, meta_path), sum(int(v.numel()) for v in tensors.values())
        if need > held:
            raise ValueError(f"{weights}: does not fit the network described in {meta_path} (field 'network'): "
                             f"it needs at least {need} weights, the file holds {held}")
        try:
            self.net = PolicyNet(self.obs, int(net["obs_dim"]), list(net["net_arch"]), net.get("activation", "tanh"),
                                 net.get("encoder"))
            self.net.load_state_dict(tensors)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{weights}: does not fit the network described in {meta_path} (field 'network'): "
                             f"{str(exc).splitlines()[0]}") from exc
        self.net.eval()

    @property
    def requested_budget(self) -> float | None:
        """The budget (% of always-strong's strong tokens) this checkpoint was trained for, if any."""
        return requested_budget(self.meta)

    @property
    def budget_table(self):
        """A budget-conditioned checkpoint's :class:`~trim_rl.training.budget.BudgetTable` (None otherwise)."""
        data = self.meta.get("budget_table")
        return None if data is None else BudgetTable.from_json(data, str(self.folder / "policy.json"))

    def lam_for_budget(self, budget: float, what: str = "--budget") -> float:
        """The price to show a budget-conditioned checkpoint so that it spends ``budget``."""
        table = self.budget_table
        if table is None and self.budget_conditioned:
            raise ValueError(f"{what}: {self.folder} carries no budget table (exported by trim_rl 0.1); give its "
                             "price instead (--lam), or export its run again")
        if table is None:
            raise ValueError(f"{what}: {self.folder} is not budget-conditioned (it was trained for "
                             + (f"a {self.requested_budget:g}% budget" if self.requested_budget is not None
                                else f"lambda {self.lam:g}") + "); use a budget-conditioned checkpoint to choose one")
        return table.lam_for(budget, what)

    def builder(self):
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
