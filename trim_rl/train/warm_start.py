"""``init_from``: start PPO's actor from an exported checkpoint (fine-tuning a deployed policy at another
budget, or from a policy found by another method); the critic starts fresh."""

from __future__ import annotations

from pathlib import Path


def checkpoint_mismatches(meta: dict, agent: dict) -> list[str]:
    """Fields where the checkpoint's ``policy.json`` differs from what the agent YAML builds."""
    pk = agent.get("policy_kwargs", {})
    want = {
        "observation.name": agent["obs"],
        "observation.budget_conditioned": bool(agent.get("budget_conditioned", False)),
        "network.net_arch": list(pk.get("net_arch", [64, 64])),
        "network.activation": pk.get("activation", "tanh"),
    }
    if agent["obs"] == "seq":
        want["network.encoder"] = dict(pk.get("encoder", {}))
    have = {
        "observation.name": meta["observation"].get("name"),
        "observation.budget_conditioned": bool(meta["observation"].get("budget_conditioned", False)),
        "network.net_arch": list(meta["network"].get("net_arch", [])),
        "network.activation": meta["network"].get("activation", "tanh"),
        "network.encoder": meta["network"].get("encoder") or {},
    }
    return [f"{k} is {have[k]!r}, the agent asks for {v!r}" for k, v in want.items() if have[k] != v]


def check_checkpoint(folder: str | Path, agent: dict):
    """The exported checkpoint in ``folder`` (format and sha256 checked) if the agent YAML builds the
    same actor; else ``ValueError`` naming policy.json and each field that differs."""
    from trim_rl.agents.exported import ExportedPolicy

    ck = ExportedPolicy(folder)
    bad = checkpoint_mismatches(ck.meta, agent)
    if bad:
        raise ValueError(f"{Path(folder) / 'policy.json'}: cannot start this agent from it: " + "; ".join(bad))
    return ck


def load_actor(model, folder: str | Path, agent: dict) -> None:
    """Copy the actor weights of the exported checkpoint in ``folder`` into ``model`` (a MaskablePPO
    built from ``agent``).  Raises ``ValueError`` naming the field when the networks differ."""
    import torch

    from trim_rl.export import actor_key

    ours = check_checkpoint(folder, agent).net.state_dict()
    copied = set()
    with torch.no_grad():
        for name, p in model.policy.named_parameters():
            key = actor_key(name)
            if key is not None:
                p.copy_(ours[key])
                copied.add(key)
    missing = set(ours) - copied
    if missing:
        raise ValueError(f"{folder}: weights {sorted(missing)[:3]} have no place in the agent's actor")
