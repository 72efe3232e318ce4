"""``init_from``: start PPO's actor from an exported checkpoint (fine-tuning a deployed policy at another
budget, or from a policy found by another method); the critic starts fresh."""

from __future__ import annotations

from pathlib import Path

from trim_rl.agents.checkpoint import META, checkpoint_kind
from trim_rl.configs import ConfigError
from trim_rl.training.config import AgentConfig
from trim_rl.training.ppo_stage import copy_actor_in, network_meta


def checkpoint_mismatches(meta: dict, agent: AgentConfig) -> list[str]:
    """Fields where the checkpoint's ``policy.json`` differs from what the agent YAML builds."""
    net = network_meta(agent.obs, agent.budget_conditioned, agent.policy_kwargs)
    want = {
        "observation.name": agent.obs,
        "observation.budget_conditioned": bool(agent.budget_conditioned),
        "network.net_arch": net["net_arch"],
        "network.activation": net["activation"],
    }
    if agent.obs == "seq":
        want["network.encoder"] = net["encoder"]
    have = {
        "observation.name": meta["observation"].get("name"),
        "observation.budget_conditioned": bool(meta["observation"].get("budget_conditioned", False)),
        "network.net_arch": list(meta["network"].get("net_arch", [])),
        "network.activation": meta["network"].get("activation", "tanh"),
        "network.encoder": meta["network"].get("encoder") or {},
    }
    return [f"{k} is {have[k]!r}, the agent asks for {v!r}" for k, v in want.items() if have[k] != v]


def apply_init_from(agent: AgentConfig, folder: str | Path, flag: str = "--init-from") -> None:
    """Make ``agent`` start PPO from the checkpoint in ``folder`` (which replaces the recipe's
    earlier stages); the checkpoint itself is checked with the trees (:func:`check_checkpoint`)."""
    if agent.algo == "pomdp":
        raise ConfigError(f"{flag}: applies to PPO agents, not TRIM-POMDP (agent {agent.name})")
    if "ppo" not in agent.recipe:
        raise ConfigError(f"{flag}: agent {agent.name} has no ppo stage to start")
    agent.init_from = str(Path(folder).resolve())
    agent.recipe = ["ppo"]


def check_checkpoint(folder: str | Path, agent: AgentConfig):
    """The exported checkpoint in ``folder`` (format and sha256 checked) if the agent YAML builds the
    same actor; else ``ValueError`` naming policy.json and each field that differs."""
    # trim_rl.agents.exported imports torch
    from trim_rl.agents.exported import ExportedPolicy

    meta_path = Path(folder) / META
    kind = checkpoint_kind(folder, f"{folder}: no policy.json there (export a run first)")
    if kind != "network":
        raise ValueError(f"{meta_path}: a {'TRIM-POMDP' if kind == 'pomdp' else repr(kind)} checkpoint (kind "
                         f"{kind!r}) has no network to start PPO from; give a TRIM-Agg or TRIM-Seq checkpoint")
    ck = ExportedPolicy(folder)
    bad = checkpoint_mismatches(ck.meta, agent)
    if bad:
        raise ValueError(f"{Path(folder) / 'policy.json'}: cannot start this agent from it: " + "; ".join(bad))
    return ck


def load_init_from(agent: AgentConfig) -> tuple:
    """The network of the agent's ``init_from`` checkpoint and the price (``lam``) its policy.json records;
    (None, None) without one.  A checkpoint that does not fit the agent is a ConfigError."""
    if not agent.init_from:
        return None, None
    try:
        ck = check_checkpoint(agent.init_from, agent)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"--init-from: {exc}") from None
    return ck.net, ck.meta.get("lam")


def load_actor(model, folder: str | Path, agent: AgentConfig) -> None:
    """Copy the actor weights of the exported checkpoint in ``folder`` into ``model`` (a MaskablePPO
    built from ``agent``).  Raises ``ValueError`` naming the field when the networks differ."""
    copy_actor_in(model, check_checkpoint(folder, agent).net)
