"""MaskablePPO on the batched routing env: building the model, moving actors in and out, saving safely.

The actor of an SB3 policy and :class:`~trim_rl.agents.networks.PolicyNet` hold the same layers
under different names (:data:`ACTOR_PREFIXES`), so an actor found by an earlier stage starts PPO
(:func:`copy_actor_in`) and PPO's actor is read back as a plain network for validation and export
(:func:`actor_net`) without going through files.
"""

from __future__ import annotations

import os
from pathlib import Path

from trim_rl.envs.observations import make_builder
from trim_rl.training.config import NetworkSpec, PPOAgentConfig

# SB3 actor parameter prefixes and their names in PolicyNet
ACTOR_PREFIXES = (("features_extractor.encoder.", "extractor."), ("mlp_extractor.policy_net.", "pi."),
                  ("action_net.", "action."))


def actor_key(sb3_name: str) -> str | None:
    """The PolicyNet name of an SB3 policy parameter, or None where it is not part of the actor."""
    for sb3_prefix, ours in ACTOR_PREFIXES:
        if sb3_name.startswith(sb3_prefix):
            return ours + sb3_name[len(sb3_prefix):]
    return None


def network_meta(obs: str, budget_conditioned: bool, spec: NetworkSpec) -> dict:
    """The ``network`` block of a checkpoint's policy.json for this agent."""
    dim = int(make_builder(obs, budget_conditioned).space.shape[-1])
    return {"obs_dim": dim, "net_arch": list(spec.net_arch), "activation": spec.activation,
            "encoder": None if obs != "seq" else dict(vars(spec.encoder))}


def new_actor(agent: PPOAgentConfig):
    """A fresh :class:`PolicyNet` shaped like the agent's actor."""
    # trim_rl.agents.networks imports torch
    from trim_rl.agents.networks import PolicyNet

    m = network_meta(agent.obs, agent.budget_conditioned, agent.policy_kwargs)
    return PolicyNet(agent.obs, m["obs_dim"], m["net_arch"], m["activation"], m["encoder"])


def sb3_policy_kwargs(agent: PPOAgentConfig) -> dict:
    import torch

    # trim_rl.agents.ppo imports stable_baselines3
    from trim_rl.agents.ppo import SeqTransformerExtractor

    spec = agent.policy_kwargs
    kwargs = {"net_arch": list(spec.net_arch),
              "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[spec.activation]}
    if agent.obs == "seq":
        kwargs["features_extractor_class"] = SeqTransformerExtractor
        kwargs["features_extractor_kwargs"] = dict(vars(spec.encoder))
    return kwargs


def make_model(agent: PPOAgentConfig, venv, seed: int, verbose: int = 0):
    """MaskablePPO for ``agent`` on ``venv`` (the ``hyperparams`` the YAML set, network and device)."""
    from sb3_contrib import MaskablePPO

    return MaskablePPO("MlpPolicy", venv, policy_kwargs=sb3_policy_kwargs(agent), seed=seed, verbose=verbose,
                       device=agent.device, **dict(agent.hyperparams))


def copy_actor_in(model, net) -> None:
    """Copy a PolicyNet's weights into the SB3 model's actor; every actor weight must match."""
    import torch

    ours = net.state_dict()
    copied = set()
    with torch.no_grad():
        for name, p in model.policy.named_parameters():
            key = actor_key(name)
            if key is not None:
                if key not in ours or ours[key].shape != p.shape:
                    raise ValueError(f"actor weight {key} does not fit the agent's network")
                p.copy_(ours[key])
                copied.add(key)
    missing = set(ours) - copied
    if missing:
        raise ValueError(f"weights {sorted(missing)[:3]} have no place in the agent's actor")


def actor_net(model, agent: PPOAgentConfig):
    """The SB3 model's actor as a PolicyNet (a copy, in eval mode)."""
    net = new_actor(agent)
    mapped = {key: v.detach().clone().cpu() for k, v in model.policy.state_dict().items() if (key := actor_key(k))}
    net.load_state_dict(mapped)  # strict: every actor weight must be present
    net.eval()
    return net


def save_model(model, path: str | Path) -> Path:
    """``model.save`` into a temporary file beside ``path``, then rename: a signal during the write
    never leaves a truncated zip where a good one was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.zip")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
