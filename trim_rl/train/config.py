"""Training configuration: agent YAML + env YAML + ``--hyperparams key:value`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

AGENT_KEYS = {"algo", "name", "obs", "budget_conditioned", "lam_range", "total_timesteps", "n_envs", "eval_freq",
              "hyperparams", "policy_kwargs", "device", "initial_regen_prob", "lam_warmup", "init_from",
              "fit", "solver", "lam_grid", "validate"}  # the last four: TRIM-POMDP (algo: pomdp)
ENV_KEYS = {"name", "train", "val", "test", "lam", "lam_grid"}


def load_yaml(path: str | Path, allowed: set[str], what: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} config {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {what} config must be a mapping")
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown {what} keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return data


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; numbers written that way are meant as floats."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def apply_overrides(agent: dict, overrides: list[str]) -> dict:
    """``key:value`` pairs; keys are PPO hyper-parameters, top-level agent keys, or dotted paths
    (``policy_kwargs.net_arch:[32,32]``); values are parsed as YAML."""
    out = copy.deepcopy(agent)
    for item in overrides:
        if ":" not in item:
            raise ValueError(f"--hyperparams {item!r}: use key:value")
        key, raw = item.split(":", 1)
        value: Any = _number(yaml.safe_load(raw))
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in AGENT_KEYS:
            parts = ["hyperparams", parts[0]]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
