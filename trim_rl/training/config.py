"""Training configuration: agent YAML + env YAML (typed) + ``--hyperparams key:value`` overrides.

An agent YAML names its recipe (the stages the trainer runs, in order) and each stage's settings;
an env YAML names the trees and the default budgets.  Both are read with YAML 1.2 numbers and
type-checked field by field (:mod:`trim_rl.configs`), so a typo or a wrong type is one line naming
the file and key before anything is written.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trim_rl.configs import ConfigError, check, from_mapping, load_yaml_file, parse_yaml, to_mapping
from trim_rl.training.checks import check_memory
from trim_rl.training.policy_iteration import PolicyIterationConfig

STAGES = ("policy_iteration", "distill", "ppo")

_pos = check(lambda v: v > 0, "a number > 0")
_pos_int = check(lambda v: v >= 1, "an integer >= 1")
_unit = check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
# a price is correct answers per strong token: at 1 no regeneration pays for itself, so a higher
# one trains the same never-regenerate policy (and a huge one overflows PPO's returns)
_price = check(lambda v: 0 < v <= 1, "a price > 0 and at most 1")
_prices = check(lambda v: len(v) >= 1 and all(0 < x <= 1 for x in v) and len(set(v)) == len(v),
                "a list of distinct prices > 0 and at most 1")

# MaskablePPO keyword arguments an agent YAML may set under ``hyperparams``, with their checks
PPO_KEYS: dict[str, tuple[type, Any]] = {
    "n_steps": (int, lambda v: v >= 1), "batch_size": (int, lambda v: v >= 2), "n_epochs": (int, lambda v: v >= 1),
    "learning_rate": (float, lambda v: v >= 0), "gamma": (float, lambda v: 0 <= v <= 1),
    "gae_lambda": (float, lambda v: 0 <= v <= 1), "clip_range": (float, lambda v: v > 0),
    "ent_coef": (float, lambda v: v >= 0), "vf_coef": (float, lambda v: v >= 0),
    "max_grad_norm": (float, lambda v: v > 0), "target_kl": (float, lambda v: v > 0),
    "normalize_advantage": (bool, None),
}


@dataclass
class EncoderSpec:
    """Transformer encoder of TRIM-Seq (``policy_kwargs.encoder``)."""

    d_model: int = field(default=32, metadata=_pos_int)
    n_heads: int = field(default=4, metadata=_pos_int)
    n_layers: int = field(default=2, metadata=_pos_int)
    dim_ff: int = field(default=64, metadata=_pos_int)

    def __post_init__(self):
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(f"encoder: d_model {self.d_model} must be even and divisible by n_heads {self.n_heads}")


@dataclass
class NetworkSpec:
    """The actor network (``policy_kwargs``): MLP sizes and activation, plus the encoder for ``seq``."""

    net_arch: list[int] = field(default_factory=lambda: [64, 64],
                                metadata=check(lambda v: len(v) >= 1 and all(n >= 1 for n in v),
                                               "a non-empty list of layer sizes >= 1"))
    activation: Literal["tanh", "relu"] = "tanh"
    encoder: EncoderSpec | None = None


@dataclass
class LamWarmup:
    """Lambda rises from ``start`` x its value over the first ``fraction`` of PPO training."""

    start: float = field(default=0.25, metadata=check(lambda v: 0 < v <= 1, "a number in (0, 1]"))
    fraction: float = field(default=0.5, metadata=check(lambda v: 0 < v <= 1, "a number in (0, 1]"))


@dataclass
class DistillConfig:
    """Copy the policy-iteration policy into a network over another observation (TRIM-Seq's transformer)."""

    samples: int = field(default=300_000, metadata=_pos_int)
    epochs: int = field(default=4, metadata=_pos_int)
    batch_size: int = field(default=1024, metadata=_pos_int)
    learning_rate: float = field(default=1.0e-3, metadata=_pos)
    explore: float = field(default=0.1, metadata=check(lambda v: 0 <= v < 0.5, "a number in [0, 0.5)"))


@dataclass
class PomdpFit:
    """TRIM-POMDP's fit (``fit``; see :func:`trim_rl.agents.pomdp.fit.fit_model`)."""

    n_bins: int = field(default=20, metadata=check(lambda v: v >= 2, "an integer >= 2"))
    bandwidth: float = field(default=0.02, metadata=_pos)
    token_bins: int = field(default=4, metadata=_pos_int)
    n_classes: int = field(default=2, metadata=_pos_int)
    regen_prob: float = field(default=0.2, metadata=check(lambda v: 0 < v < 1, "a number in (0, 1)"))
    min_labelled: float = field(default=0.5, metadata=_unit)
    use_token_evidence: bool = True
    table: str | None = None


@dataclass
class PomdpSolver:
    """TRIM-POMDP's solver grids (``solver``; see :class:`trim_rl.agents.pomdp.solver.SolverConfig`)."""

    p_grid: int = field(default=101, metadata=check(lambda v: v >= 2, "an integer >= 2"))
    obs_bins: int = field(default=20, metadata=check(lambda v: v >= 2, "an integer >= 2"))
    simplex_grid: int = field(default=51, metadata=check(lambda v: v >= 2, "an integer >= 2"))


@dataclass
class AgentConfig:
    """An agent YAML (``agents/*.yaml``).  ``algo: maskable_ppo`` runs the stages of ``recipe``;
    ``algo: pomdp`` fits and solves TRIM-POMDP (keys ``fit``, ``solver``, ``lam_grid``, ``validate``)."""

    algo: Literal["maskable_ppo", "pomdp"] = "maskable_ppo"
    name: str = ""
    obs: Literal["agg", "seq"] = "agg"
    budget_conditioned: bool = False
    recipe: list[Literal["policy_iteration", "distill", "ppo"]] = field(default_factory=lambda: ["ppo"])
    policy_iteration: dict = field(default_factory=dict)
    distill: DistillConfig = field(default_factory=DistillConfig)
    lam_range: list[float] | None = field(default=None, metadata=check(
        lambda v: len(v) == 2 and 0 < v[0] < v[1] <= 1, "[low, high] with 0 < low < high <= 1"))
    total_timesteps: int = field(default=200_000, metadata=_pos_int)
    n_envs: int = field(default=64, metadata=_pos_int)
    eval_freq: int = field(default=20_000, metadata=_pos_int)
    lam_warmup: LamWarmup | None = None
    initial_regen_prob: float = field(default=0.5, metadata=check(lambda v: 0 < v < 1, "a number in (0, 1)"))
    budget_control: float = field(default=0.0, metadata=check(lambda v: v >= 0, "a number >= 0"))
    hyperparams: dict = field(default_factory=dict)
    policy_kwargs: NetworkSpec = field(default_factory=NetworkSpec)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    init_from: str | None = None
    # TRIM-POMDP (algo: pomdp)
    fit: PomdpFit = field(default_factory=PomdpFit)
    solver: PomdpSolver = field(default_factory=PomdpSolver)
    lam_grid: list[float] | None = field(default=None, metadata=_prices)
    validate: bool = True

    @property
    def pi(self) -> PolicyIterationConfig:
        return PolicyIterationConfig(**self.policy_iteration)

    @property
    def has_ppo(self) -> bool:
        return "ppo" in self.recipe


PPO_ONLY = ("recipe", "policy_iteration", "distill", "total_timesteps", "n_envs", "eval_freq", "lam_warmup",
            "initial_regen_prob", "budget_control", "hyperparams", "policy_kwargs", "init_from", "lam_range",
            "device")
POMDP_ONLY = ("fit", "solver", "lam_grid", "validate")


def _check_agent(agent: AgentConfig, data: dict, where: str) -> AgentConfig:
    """Cross-field checks of an agent config (one key set per algorithm, a recipe that makes sense)."""
    own = POMDP_ONLY if agent.algo == "pomdp" else PPO_ONLY
    other = [k for k in data if k in (PPO_ONLY if agent.algo == "pomdp" else POMDP_ONLY)]
    if other:
        raise ConfigError(f"{where}: {other[0]}: not a key of algo {agent.algo!r} (its keys: {', '.join(own)})")
    if agent.algo == "pomdp":
        check_memory(agent, where)
        return agent
    for key, value in agent.hyperparams.items():
        if key not in PPO_KEYS:
            raise ConfigError(f"{where}: hyperparams.{key}: unknown PPO setting; allowed: {', '.join(PPO_KEYS)}")
        tp, ok = PPO_KEYS[key]
        good = isinstance(value, bool) if tp is bool else (
            not isinstance(value, bool) and isinstance(value, (int, float) if tp is float else int))
        if good and tp is float:
            good = math.isfinite(float(value))
        if not good or (ok is not None and not ok(value)):
            raise ConfigError(f"{where}: hyperparams.{key}: expected a valid {tp.__name__}, got {value!r}")
    allowed_pi = sorted(f.name for f in dataclasses.fields(PolicyIterationConfig))
    for k in agent.policy_iteration:
        if k not in allowed_pi:
            raise ConfigError(f"{where}: policy_iteration.{k}: unknown key; allowed under policy_iteration: "
                              f"{', '.join(allowed_pi)}")
    try:
        _ = agent.pi  # builds (and so checks) the policy-iteration settings
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: policy_iteration: {exc}") from None
    if not agent.recipe or len(set(agent.recipe)) != len(agent.recipe):
        raise ConfigError(f"{where}: recipe: expected stages in order, each once, from {', '.join(STAGES)}")
    order = [STAGES.index(s) for s in agent.recipe]
    if order != sorted(order):
        raise ConfigError(f"{where}: recipe: stages run in the order {', '.join(STAGES)}; got {agent.recipe}")
    if agent.init_from is not None and agent.recipe != ["ppo"]:
        # the earlier stages would make the start and the checkpoint be ignored
        raise ConfigError(f"{where}: init_from: the checkpoint replaces the earlier stages, so the recipe must be "
                          f"[ppo], got {agent.recipe} (train.py --init-from sets both)")
    if "distill" in agent.recipe and "policy_iteration" not in agent.recipe:
        raise ConfigError(f"{where}: recipe: distill needs a policy_iteration stage before it")
    if "distill" in agent.recipe and agent.obs == "agg":
        raise ConfigError(f"{where}: recipe: distill copies the agg policy into another observation; obs is agg")
    if agent.obs == "seq" and "policy_iteration" in agent.recipe and "distill" not in agent.recipe:
        raise ConfigError(f"{where}: recipe: policy iteration runs on agg; a seq agent needs a distill stage after it")
    if agent.obs == "seq" and agent.budget_conditioned:
        raise ConfigError(f"{where}: budget_conditioned: the seq observation carries no lambda; use obs agg")
    if agent.budget_conditioned and agent.lam_range is None:
        raise ConfigError(f"{where}: lam_range: a budget-conditioned agent needs [low, high]")
    if agent.obs == "seq" and agent.policy_kwargs.encoder is None:
        agent.policy_kwargs.encoder = EncoderSpec()
    if agent.obs == "agg" and agent.policy_kwargs.encoder is not None:
        raise ConfigError(f"{where}: policy_kwargs.encoder: only a seq agent has an encoder")
    hp = agent.hyperparams
    if "batch_size" in hp and "n_steps" in hp and hp["batch_size"] > hp["n_steps"] * agent.n_envs:
        raise ConfigError(f"{where}: hyperparams.batch_size: {hp['batch_size']} is more than one rollout "
                          f"(n_steps x n_envs = {hp['n_steps'] * agent.n_envs})")
    buf = hp.get("n_steps", 2048) * agent.n_envs
    batch = min(hp.get("batch_size", 64), buf)
    if hp.get("normalize_advantage", True) and (batch == 1 or buf % batch == 1):
        # the advantages of a one-row minibatch normalise to NaN, and PPO stops on NaN logits mid-run
        raise ConfigError(f"{where}: hyperparams.batch_size: a rollout of {buf} steps (n_steps x n_envs) in "
                          f"minibatches of {batch} leaves one of a single step, whose advantages cannot be "
                          f"normalised; choose sizes that avoid it")
    check_memory(agent, where)
    return agent


TreeSpec = str | list[str]
_trees = check(lambda v: bool(v) and all(isinstance(x, str) and x.strip() for x in ([v] if isinstance(v, str) else v)),
               "a tree spec (a tree file or sim:PROFILE:SPLIT[:SEEDS]) or a non-empty list of them")
# the trees a training reads: an env YAML must name them (a default would train on other trees unnoticed)
REQUIRED_TREES = {"train": "the trees to train on", "val": "the held-out trees that score and calibrate a policy"}


@dataclass
class EnvConfig:
    """An env YAML (``envs/*.yaml``): trees of each split, the held-out trees a budget is measured
    on (``calib``, default ``val``), the default budgets and, for experts, prices."""

    name: str = ""
    train: TreeSpec = field(default="sim:math500:train", metadata=_trees)
    val: TreeSpec = field(default="sim:math500:val", metadata=_trees)
    test: TreeSpec = field(default="sim:math500:test", metadata=_trees)
    calib: TreeSpec | None = field(default=None, metadata=_trees)
    budget: float | None = field(default=None, metadata=check(lambda v: v > 0, "a budget > 0 (% of always-strong)"))
    budget_grid: list[float] | None = field(default=None, metadata=check(
        lambda v: len(v) >= 1 and all(b > 0 for b in v) and len(set(v)) == len(v),
        "a list of distinct budgets > 0 (% of always-strong)"))
    lam: float | None = field(default=None, metadata=_price)
    lam_grid: list[float] | None = field(default=None, metadata=_prices)

    @property
    def calib_spec(self) -> TreeSpec:
        return self.calib if self.calib is not None else self.val


def load_agent(path: str | Path, overrides: list[str] | None = None) -> AgentConfig:
    """An agent YAML with ``--hyperparams`` overrides applied, checked; ``name`` defaults to the file stem."""
    where = str(path)
    data = apply_overrides(load_yaml_file(path), overrides or [])
    agent = _check_agent(from_mapping(AgentConfig, data, where), data, where)
    if not agent.name:
        agent.name = Path(path).stem
    if ".." in Path(agent.name).parts or "/" in agent.name or "\\" in agent.name:
        raise ConfigError(f"{where}: name: {agent.name!r} must be a plain folder name")
    return agent


def agent_from_dict(data: dict, where: str = "agent config") -> AgentConfig:
    """An agent config from plain data (a run's ``config.yml``), checked like a file."""
    return _check_agent(from_mapping(AgentConfig, data, where), data, where)


def load_env(path: str | Path) -> EnvConfig:
    """An env YAML, checked (it must name its ``train`` and ``val`` trees); ``name`` defaults to the file stem."""
    data = load_yaml_file(path)
    for key, what in REQUIRED_TREES.items():
        if data.get(key) is None:
            raise ConfigError(f"{path}: {key}: missing; an env YAML names {what} (a tree file or "
                              f"sim:PROFILE:SPLIT[:SEEDS], or a list of them)")
    env = from_mapping(EnvConfig, data, str(path))
    if not env.name:
        env.name = Path(path).stem
    if ".." in Path(env.name).parts or "/" in env.name:
        raise ConfigError(f"{path}: name: {env.name!r} must be a plain folder name")
    return env


def env_from_dict(data: dict, where: str = "env config") -> EnvConfig:
    return from_mapping(EnvConfig, data, where)


def apply_overrides(agent: dict, overrides: list[str]) -> dict:
    """``key:value`` pairs; keys are PPO hyper-parameters, top-level agent keys, or dotted paths
    (``policy_kwargs.net_arch:[32,32]``); values are parsed as YAML 1.2."""
    out = copy.deepcopy(agent)
    top = {f.name for f in dataclasses.fields(AgentConfig)}
    for item in overrides:
        if ":" not in item:
            raise ConfigError(f"--hyperparams {item!r}: use key:value")
        key, raw = item.split(":", 1)
        if not key:
            raise ConfigError(f"--hyperparams {item!r}: use key:value")
        value = parse_yaml(raw, f"--hyperparams {key}")
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in top:
            parts = ["hyperparams", parts[0]]
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--hyperparams {item!r}: {p} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def config_dict(obj) -> dict:
    """Plain data of a config, as written to ``config.yml`` (an agent's keys of its own algo only)."""
    data = to_mapping(obj)
    if isinstance(obj, AgentConfig):
        drop = PPO_ONLY if obj.algo == "pomdp" else POMDP_ONLY
        data = {k: v for k, v in data.items() if k not in drop}
    return data
