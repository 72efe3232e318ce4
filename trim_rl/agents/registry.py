"""Every policy by name: built-in routers, checkpoint folders of every kind, one place.

``load_policy(spec)`` understands ``thr:K`` (TRIM-Thr at threshold K), ``always-weak``,
``always-strong`` (regenerate every step the tree allows), ``random:P`` and a checkpoint folder
(``policy.json`` of kind ``network`` or ``pomdp``).  ``load_checkpoint(folder)`` dispatches a
checkpoint on its ``kind``; :data:`CHECKPOINT_LOADERS` is the registry.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from trim_rl.agents.baselines import ConstantPolicy, RandomStepPolicy, ThresholdPolicy
from trim_rl.agents.checkpoint import META, read_policy_json
from trim_rl.agents.exported import ExportedPolicy
from trim_rl.agents.pomdp.policy import load_pomdp

CHECKPOINT_LOADERS: dict[str, Callable] = {"network": ExportedPolicy, "pomdp": load_pomdp}


def load_checkpoint(folder: str | Path):
    """The policy in a checkpoint folder, loaded by the loader of its ``kind`` (``network`` when absent)."""
    meta_path = Path(folder) / META
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: not a trim_rl checkpoint folder (policy.json missing)")
    kind = read_policy_json(meta_path).get("kind", "network")
    if kind not in CHECKPOINT_LOADERS:
        raise ValueError(f"{meta_path}: field 'kind' is {kind!r}; known: {', '.join(CHECKPOINT_LOADERS)}")
    return CHECKPOINT_LOADERS[kind](folder)


def _number(text: str, spec: str, lo: float, hi: float) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not lo <= v <= hi:
        raise ValueError(f"policy {spec!r}: expected a number in [{lo:g}, {hi:g}] after ':'")
    return v


def load_policy(spec: str | Path, seed: int = 0):
    """A policy from its name (see the module docstring)."""
    s = str(spec)
    if s.startswith("thr:"):
        return ThresholdPolicy(_number(s[4:], s, 0.0, 1.0))
    if s == "always-weak":
        return ConstantPolicy(0)
    if s == "always-strong":
        return ConstantPolicy(1)
    if s.startswith("random:"):
        return RandomStepPolicy(_number(s[7:], s, 0.0, 1.0), seed)
    p = Path(s)
    if (p / META).exists():
        return load_checkpoint(p)
    if p.exists():
        raise FileNotFoundError(f"{p}: not a checkpoint folder (no policy.json)")
    raise ValueError(f"policy {s!r}: expected thr:K, always-weak, always-strong, random:P or a checkpoint folder")
