"""The typed agent and env configs: each block refuses a bad value naming the file and key, the
agent config is tagged by its ``algo``, and what a run writes into ``config.yml`` is what the YAML said."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trim_rl.agents.pomdp.config import SolverConfig
from trim_rl.configs import ConfigError
from trim_rl.resources import config_file
from trim_rl.training.config import (PomdpAgentConfig, PPOAgentConfig, PPOHyperparams, agent_from_dict, config_dict,
                                     load_agent, load_env, packaged_names)
from trim_rl.training.policy_iteration import PolicyIterationConfig

REPO = Path(__file__).resolve().parents[2]
AGENTS = ["trim_agg", "trim_agg_budget", "trim_agg_scratch", "trim_pomdp", "trim_seq"]


def refused(tmp_path: Path, text: str) -> str:
    """The one-line message of loading an agent YAML holding ``text``."""
    p = tmp_path / "bad_agent.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_agent(p)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(p) + ": "), message
    return message


@pytest.mark.parametrize("text, message", [
    # policy_iteration
    ("recipe: [policy_iteration, ppo]\npolicy_iteration: {rounds: many}\n",
     r"policy_iteration\.rounds: expected an integer, got 'many'"),
    ("recipe: [policy_iteration, ppo]\npolicy_iteration: {roundz: 3}\n",
     r"policy_iteration\.roundz: unknown key; allowed under policy_iteration: batch_size, .*token_scale"),
    ("recipe: [policy_iteration, ppo]\npolicy_iteration: {rounds: 0}\n",
     r"policy_iteration\.rounds: expected an integer >= 1, got 0"),
    ("recipe: [policy_iteration, ppo]\npolicy_iteration: {explore: 0.5}\n",
     r"policy_iteration\.explore: expected a number in \[0, 0\.5\), got 0\.5"),
    ("recipe: [policy_iteration, ppo]\npolicy_iteration: {start_threshold: 2}\n",
     r"policy_iteration\.start_threshold: expected a number in \[0, 1\], got 2"),
    ("policy_iteration: [8]\n", r"policy_iteration: expected a mapping, got \[8\]"),
    # PPO hyper-parameters
    ("hyperparams: {n_steps: 2.5}\n", r"hyperparams\.n_steps: expected a valid int, got 2\.5"),
    ("hyperparams: {learning_rate: fast}\n", r"hyperparams\.learning_rate: expected a valid float, got 'fast'"),
    ("hyperparams: {normalize_advantage: 1}\n", r"hyperparams\.normalize_advantage: expected a valid bool, got 1"),
    ("hyperparams: {gamma: 1.5}\n", r"hyperparams\.gamma: expected a valid float, got 1\.5"),
    ("hyperparams: {batch_size: 1}\n", r"hyperparams\.batch_size: expected a valid int, got 1"),
    ("hyperparams: {learning_rate: .inf}\n", r"hyperparams\.learning_rate: expected a valid float, got inf"),
    ("hyperparams: {n_step: 64}\n", r"hyperparams\.n_step: unknown key; allowed under hyperparams: batch_size, "),
    # the POMDP solver and fit
    ("algo: pomdp\nsolver: {p_grid: fine}\n", r"solver\.p_grid: expected an integer, got 'fine'"),
    ("algo: pomdp\nsolver: {p_grid: 1}\n", r"solver\.p_grid: expected an integer >= 2, got 1"),
    ("algo: pomdp\nsolver: {pgrid: 11}\n", r"solver\.pgrid: unknown key; allowed under solver: obs_bins, p_grid, "
                                           r"simplex_grid"),
    ("algo: pomdp\nfit: {regen_prob: 1}\n", r"fit\.regen_prob: expected a number in \(0, 1\), got 1"),
    ("algo: pomdp\nfit: {n_bins: [20]}\n", r"fit\.n_bins: expected an integer, got \[20\]"),
    # the tag
    ("algo: dqn\n", r"algo: expected one of 'maskable_ppo', 'pomdp', got 'dqn'"),
    ("algo: pomdp\nhyperparams: {n_steps: 64}\n", r"hyperparams: not a key of algo 'pomdp' \(its keys: fit, solver, "
                                                   r"lam_grid, validate\)"),
    ("solver: {p_grid: 11}\n", r"solver: not a key of algo 'maskable_ppo' \(its keys: recipe, policy_iteration, "),
])
def test_each_block_refuses_a_bad_value_naming_file_and_key(tmp_path, text, message):
    assert re.search(message, refused(tmp_path, text))


def test_an_override_is_checked_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"trim_agg\.yaml: hyperparams\.n_epochs: expected a valid int, got 'two'"):
        load_agent(REPO / "agents" / "trim_agg.yaml", ["n_epochs:two"])
    with pytest.raises(ConfigError, match=r"trim_pomdp\.yaml: solver\.obs_bins: expected an integer >= 2, got 0"):
        load_agent(REPO / "agents" / "trim_pomdp.yaml", ["solver.obs_bins:0"])


def test_the_agent_config_is_tagged_by_its_algo():
    agg, pomdp = load_agent(REPO / "agents" / "trim_agg.yaml"), load_agent(REPO / "agents" / "trim_pomdp.yaml")
    assert type(agg) is PPOAgentConfig and agg.algo == "maskable_ppo"
    assert type(pomdp) is PomdpAgentConfig and pomdp.algo == "pomdp"
    assert not hasattr(agg, "solver") and not hasattr(pomdp, "hyperparams")
    assert type(agent_from_dict({"obs": "agg"})) is PPOAgentConfig  # algo defaults to maskable_ppo
    # the solver block is the solver's own config type, not a copy of it
    assert type(pomdp.solver) is SolverConfig and pomdp.solver == SolverConfig(101, 20, 51)


def test_typed_blocks_hold_the_yaml_values_and_the_defaults_of_the_rest():
    agent = load_agent(REPO / "agents" / "trim_agg.yaml", ["policy_iteration.rounds:3"])
    pi = agent.policy_iteration
    assert isinstance(pi, PolicyIterationConfig)
    assert (pi.rounds, pi.samples, pi.epochs, pi.batch_size, pi.start_threshold) == (3, 600000, 6, 4096, None)
    hp = agent.hyperparams
    assert (hp.n_steps, hp.learning_rate, hp.max_grad_norm, hp.target_kl) == (64, 3e-5, 0.5, None)


def test_ppo_gets_the_keys_the_yaml_set_only():
    """MaskablePPO keeps its own defaults for keys the YAML leaves out (they are not passed)."""
    raw = yaml.safe_load((REPO / "agents" / "trim_agg.yaml").read_text())["hyperparams"]
    agent = load_agent(REPO / "agents" / "trim_agg.yaml", ["target_kl:0.02"])
    assert dict(agent.hyperparams) == {**raw, "target_kl": 0.02}
    assert list(agent.hyperparams) == [*raw, "target_kl"]  # in the file's order
    assert dict(PPOHyperparams()) == {} and dict(PPOHyperparams(n_epochs=3)) == {"n_epochs": 3}


@pytest.mark.parametrize("name", AGENTS)
def test_config_yml_holds_what_the_yaml_said_and_reads_back_the_same(name):
    path = REPO / "agents" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    agent = load_agent(path)
    data = config_dict(agent)
    sparse = ("policy_iteration", "hyperparams") if agent.algo == "maskable_ppo" else ()
    for block in sparse:  # written as given, not with every default
        assert data[block] == raw.get(block, {}), block
    for key, value in raw.items():  # the other blocks are written in full
        assert (data[key] == value if key in sparse or not isinstance(value, dict)
                else {**data[key], **value} == data[key]), key
    assert list(data)[:4] == ["algo", "name", "obs", "budget_conditioned"]
    again = agent_from_dict(yaml.safe_load(yaml.safe_dump(data, sort_keys=False)))
    assert again == agent and config_dict(again) == data


def test_an_unknown_agent_or_env_name_lists_the_packaged_ones():
    assert packaged_names("agents") == AGENTS
    assert packaged_names("envs") == ["aime", "math500", "math500_quick"]
    with pytest.raises(FileNotFoundError) as err:
        load_agent(config_file("agents", "trim_agx"))
    assert "trim_agx.yaml: no such config file" in str(err.value) and ", ".join(AGENTS) in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml: no such config file; the packaged envs: aime, "
                                                r"math500, math500_quick"):
        load_env(config_file("envs", "nope"))


@pytest.mark.parametrize("flags, names", [(["--agent", "trim_agx", "--budget", "10"], AGENTS),
                                          (["--env", "nope", "--budget", "10"], ["aime", "math500", "math500_quick"])])
def test_train_py_names_the_packaged_configs_in_one_line(tmp_path, flags, names):
    r = subprocess.run([sys.executable, "train.py", *flags, "--runs", str(tmp_path / "runs")], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ", ".join(names) in r.stderr and not (tmp_path / "runs").exists()
