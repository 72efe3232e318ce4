"""Training configuration: agent YAML + env YAML (typed) + ``--hyperparams key:value`` overrides.

An agent YAML names its recipe (the stages the trainer runs, in order) and each stage's settings;
an env YAML names the trees and the default budgets.  Both are read with YAML 1.2 numbers and
type-checked field by field (:mod:`trim_rl.configs`), so a typo or a wrong type is one line naming
the file and key before anything is written.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trim_rl.agents.pomdp.config import FitConfig, SolverConfig
from trim_rl.configs import ConfigError, Sparse, check, expect, from_mapping, load_yaml_file, parse_yaml, to_mapping
from trim_rl.resources import project_folder
from trim_rl.training.checks import check_memory
from trim_rl.training.policy_iteration import PolicyIterationConfig
from trim_rl.training.seq_iteration import SeqPolicyIterationConfig

STAGES = ("policy_iteration", "seq_policy_iteration", "distill", "ppo")

_pos = check(lambda v: v > 0, "a number > 0")
_pos_int = check(lambda v: v >= 1, "an integer >= 1")
# a price is correct answers per strong token: at 1 no regeneration pays for itself, so a higher
# one trains the same never-regenerate policy (and a huge one overflows PPO's returns)
_price = check(lambda v: 0 < v <= 1, "a price > 0 and at most 1")
_prices = check(lambda v: len(v) >= 1 and all(0 < x <= 1 for x in v) and len(set(v)) == len(v),
                "a list of distinct prices > 0 and at most 1")


def _ppo(tp: str, predicate=None) -> dict:
    # the words of the type table this block replaced ("expected a valid int, got 2.5")
    return expect(f"a valid {tp}", predicate)


@dataclass
class PPOHyperparams(Sparse, Mapping):
    """MaskablePPO keyword arguments (``hyperparams`` of an agent YAML).  A field left out keeps
    SB3's default (the field's default here); as a mapping it holds the keys the YAML set, which
    are what :func:`trim_rl.training.ppo_stage.make_model` passes to MaskablePPO."""

    n_steps: int = field(default=2048, metadata=_ppo("int", lambda v: v >= 1))
    batch_size: int = field(default=64, metadata=_ppo("int", lambda v: v >= 2))
    n_epochs: int = field(default=10, metadata=_ppo("int", lambda v: v >= 1))
    learning_rate: float = field(default=3.0e-4, metadata=_ppo("float", lambda v: v >= 0))
    gamma: float = field(default=0.99, metadata=_ppo("float", lambda v: 0 <= v <= 1))
    gae_lambda: float = field(default=0.95, metadata=_ppo("float", lambda v: 0 <= v <= 1))
    clip_range: float = field(default=0.2, metadata=_ppo("float", lambda v: v > 0))
    ent_coef: float = field(default=0.0, metadata=_ppo("float", lambda v: v >= 0))
    vf_coef: float = field(default=0.5, metadata=_ppo("float", lambda v: v >= 0))
    max_grad_norm: float = field(default=0.5, metadata=_ppo("float", lambda v: v > 0))
    target_kl: float | None = field(default=None, metadata=_ppo("float", lambda v: v > 0))
    normalize_advantage: bool = field(default=True, metadata=_ppo("bool"))

    def __getitem__(self, key: str) -> Any:
        if key not in self.given_keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.given_keys())

    def __len__(self) -> int:
        return len(self.given_keys())


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
class AgentConfig:
    """An agent YAML (``agents/*.yaml``), tagged by its ``algo``: a :class:`PPOAgentConfig` or a
    :class:`PomdpAgentConfig` (:data:`AGENT_TYPES`); these are the keys both have."""

    algo: Literal["maskable_ppo", "pomdp"] = "maskable_ppo"
    name: str = ""
    obs: Literal["agg", "seq"] = "agg"
    budget_conditioned: bool = False


@dataclass
class PPOAgentConfig(AgentConfig):
    """``algo: maskable_ppo``: the stages of ``recipe`` (policy iteration, distillation, PPO) on a network."""

    algo: Literal["maskable_ppo"] = "maskable_ppo"
    recipe: list[Literal["policy_iteration", "seq_policy_iteration", "distill", "ppo"]] = field(
        default_factory=lambda: ["ppo"])
    policy_iteration: PolicyIterationConfig = field(default_factory=PolicyIterationConfig)
    seq_policy_iteration: SeqPolicyIterationConfig = field(default_factory=SeqPolicyIterationConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    lam_range: list[float] | None = field(default=None, metadata=check(
        lambda v: len(v) == 2 and 0 < v[0] < v[1] <= 1, "[low, high] with 0 < low < high <= 1"))
    total_timesteps: int = field(default=200_000, metadata=_pos_int)
    n_envs: int = field(default=64, metadata=_pos_int)
    eval_freq: int = field(default=20_000, metadata=_pos_int)
    lam_warmup: LamWarmup | None = None
    initial_regen_prob: float = field(default=0.5, metadata=check(lambda v: 0 < v < 1, "a number in (0, 1)"))
    budget_control: float = field(default=0.0, metadata=check(lambda v: v >= 0, "a number >= 0"))
    hyperparams: PPOHyperparams = field(default_factory=PPOHyperparams)
    policy_kwargs: NetworkSpec = field(default_factory=NetworkSpec)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    init_from: str | None = None

    @property
    def pi(self) -> PolicyIterationConfig:
        """The policy-iteration settings (``policy_iteration``)."""
        return self.policy_iteration

    @property
    def has_ppo(self) -> bool:
        return "ppo" in self.recipe


@dataclass
class PomdpAgentConfig(AgentConfig):
    """``algo: pomdp``: fit TRIM-POMDP on the training trees and solve it for each price."""

    algo: Literal["pomdp"] = "pomdp"
    fit: FitConfig = field(default_factory=FitConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    lam_grid: list[float] | None = field(default=None, metadata=_prices)
    validate: bool = True


AGENT_TYPES: dict[str, type[AgentConfig]] = {"maskable_ppo": PPOAgentConfig, "pomdp": PomdpAgentConfig}


def _own_keys(cls: type[AgentConfig]) -> list[str]:
    """The keys of one algo's agent config that the other algo does not have."""
    common = {f.name for f in dataclasses.fields(AgentConfig)}
    return [f.name for f in dataclasses.fields(cls) if f.name not in common]


def _typed_agent(data: dict, where: str) -> AgentConfig:
    """The agent config of ``data``'s ``algo`` (default ``maskable_ppo``), every field checked."""
    algo = data.get("algo", "maskable_ppo")
    cls = AGENT_TYPES.get(algo) if isinstance(algo, str) else None
    if cls is None:
        raise ConfigError(f"{where}: algo: expected one of {', '.join(repr(a) for a in AGENT_TYPES)}, got {algo!r}")
    own = _own_keys(cls)
    others = {k for c in AGENT_TYPES.values() if c is not cls for k in _own_keys(c)}
    other = [k for k in data if k in others and k not in own]
    if other:
        raise ConfigError(f"{where}: {other[0]}: not a key of algo {algo!r} (its keys: {', '.join(own)})")
    agent = from_mapping(cls, data, where)
    if isinstance(agent, PPOAgentConfig):
        _check_ppo(agent, where)
    check_memory(agent, where)
    return agent


def _check_ppo(agent: PPOAgentConfig, where: str) -> None:
    """Cross-field checks of a PPO-family agent (a recipe that makes sense, sizes PPO can run)."""
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
    seq_pi = "seq_policy_iteration" in agent.recipe
    if seq_pi and agent.obs != "seq":
        raise ConfigError(f"{where}: recipe: seq_policy_iteration runs the seq observation's transformer; obs is agg")
    if seq_pi and "policy_iteration" not in agent.recipe:
        raise ConfigError(f"{where}: recipe: seq_policy_iteration needs a policy_iteration stage before it (its start)")
    if seq_pi and "distill" in agent.recipe:
        raise ConfigError(f"{where}: recipe: seq_policy_iteration and distill both make the seq network; choose one")
    if agent.obs == "seq" and "policy_iteration" in agent.recipe and "distill" not in agent.recipe and not seq_pi:
        raise ConfigError(f"{where}: recipe: policy iteration runs on agg; a seq agent needs a distill or "
                          f"seq_policy_iteration stage after it")
    if agent.obs == "seq" and agent.budget_conditioned:
        raise ConfigError(f"{where}: budget_conditioned: the seq observation carries no lambda; use obs agg")
    if agent.budget_conditioned and agent.lam_range is None:
        raise ConfigError(f"{where}: lam_range: a budget-conditioned agent needs [low, high]")
    if agent.obs == "seq" and agent.policy_kwargs.encoder is None:
        agent.policy_kwargs.encoder = EncoderSpec()
    if agent.obs == "agg" and agent.policy_kwargs.encoder is not None:
        raise ConfigError(f"{where}: policy_kwargs.encoder: only a seq agent has an encoder")
    hp = agent.hyperparams
    buf = hp.n_steps * agent.n_envs
    if hp.batch_size > buf:
        raise ConfigError(f"{where}: hyperparams.batch_size: {hp.batch_size} is more than one rollout "
                          f"(n_steps x n_envs = {buf})")
    batch = min(hp.batch_size, buf)
    if hp.normalize_advantage and (batch == 1 or buf % batch == 1):
        # the advantages of a one-row minibatch normalise to NaN, and PPO stops on NaN logits mid-run
        raise ConfigError(f"{where}: hyperparams.batch_size: a rollout of {buf} steps (n_steps x n_envs) in "
                          f"minibatches of {batch} leaves one of a single step, whose advantages cannot be "
                          f"normalised; choose sizes that avoid it")


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
    data = apply_overrides(_read_config("agents", path), overrides or [])
    agent = _typed_agent(data, where)
    if not agent.name:
        agent.name = Path(path).stem
    if ".." in Path(agent.name).parts or "/" in agent.name or "\\" in agent.name:
        raise ConfigError(f"{where}: name: {agent.name!r} must be a plain folder name")
    return agent


def agent_from_dict(data: dict, where: str = "agent config") -> AgentConfig:
    """An agent config from plain data (a run's ``config.yml``), checked like a file."""
    return _typed_agent(data, where)


def load_env(path: str | Path) -> EnvConfig:
    """An env YAML, checked (it must name its ``train`` and ``val`` trees); ``name`` defaults to the file stem."""
    data = _read_config("envs", path)
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
    top = {f.name for cls in AGENT_TYPES.values() for f in dataclasses.fields(cls)}
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
    return to_mapping(obj)


def packaged_names(kind: str) -> list[str]:
    """The names of the agent (``kind`` ``agents``) or env (``envs``) YAMLs that come with trim_rl."""
    return sorted(p.stem for p in project_folder(kind).glob("*.yaml"))


def _read_config(kind: str, path: str | Path) -> dict:
    """The mapping of an agent or env YAML; a missing file is one line listing the packaged names."""
    try:
        return load_yaml_file(path)
    except FileNotFoundError as exc:
        names = ", ".join(packaged_names(kind)) or "none"
        raise FileNotFoundError(f"{exc}; the packaged {kind}: {names} (or give a YAML file's path)") from None
