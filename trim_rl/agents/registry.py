"""Every policy by name: built-in routers, checkpoint folders of every kind, one place.

``load_policy(spec)`` understands the step policies of the policy table
(:data:`trim_rl.agents.catalog.POLICIES`): ``thr:K`` (TRIM-Thr at threshold K), ``always-weak`` (alias
``weak-only``), ``always-strong`` (alias ``strong-only``; regenerate every step the tree allows),
``random:P``, and a checkpoint folder (``policy.json`` of kind ``network`` or ``pomdp``).
``load_checkpoint(folder)`` dispatches a checkpoint on its ``kind``; :data:`CHECKPOINT_LOADERS` is the
registry.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from trim_rl.agents import catalog
from trim_rl.agents.base import PolicyBase
from trim_rl.agents.checkpoint import META, checkpoint_kind
from trim_rl.agents.exported import ExportedPolicy
from trim_rl.agents.pomdp.policy import load_pomdp

CHECKPOINT_LOADERS: dict[str, Callable] = {"network": ExportedPolicy, "pomdp": load_pomdp}


def load_checkpoint(folder: str | Path):
    """The policy in a checkpoint folder, loaded by the loader of its ``kind`` (``network`` when absent)."""
    meta_path = Path(folder) / META
    kind = checkpoint_kind(folder, f"{meta_path}: not a trim_rl checkpoint folder (policy.json missing)")
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


def loadable() -> str:
    """The specs :func:`load_policy` takes, as its error lists them."""
    specs = [e.spec + (f" ({', '.join(e.aliases)})" if e.aliases else "")
             for e in catalog.POLICIES if e.factory is not None]
    return ", ".join(specs) + " or a checkpoint folder"


def load_policy(spec: str | Path, seed: int = 0) -> PolicyBase:
    """A policy from its name (see the module docstring); ``seed`` seeds a random one."""
    s = str(spec)
    name, colon, value = s.partition(":")
    entry = catalog.find(name)
    if entry is not None and entry.factory is not None and bool(colon) == bool(entry.param):
        return entry.make(_number(value, s, 0.0, 1.0) if entry.param else None, seed)
    p = Path(s)
    if (p / META).exists():
        return load_checkpoint(p)
    if p.exists():
        raise FileNotFoundError(f"{p}: not a checkpoint folder (no policy.json)")
    if entry is not None and entry.factory is None:
        raise ValueError(f"policy {s!r} is evaluated from the trees (evaluate.py --policies), not loaded as a "
                         f"router; valid: {loadable()}")
    if entry is not None and entry.param:
        raise ValueError(f"policy {s!r}: expected {entry.spec}, a number in [0, 1] after ':'")
    raise catalog.unknown(s, loadable())
