"""Tests for trim_rl.envs.routing_env.RoutingEnv (gymnasium env ``trim_rl/Routing-v0``)."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest

from trim_rl.data.flat import load_flat
from trim_rl.data.schema import MAX_STEPS
from trim_rl.data.trees import write_trees
from trim_rl.envs.routing_env import KEEP, REGENERATE, RoutingEnv
from trim_rl.sim.generate import generate_file

LAM = 0.01
INFO_KEYS = {"correct", "strong_tokens", "weak_tokens", "kept_weak_tokens", "discarded_weak_tokens",
             "interventions", "steps", "tree", "lam"}


# ---------------------------------------------------------------------------------------------
# hand-built trees
# ---------------------------------------------------------------------------------------------
def _header(pid: str, k: int, so_tokens: int = 27) -> dict:
    return {"schema": "trim_rl.tree/v1", "problem_id": pid, "dataset": "toy", "split": "test",
            "problem": "What is 1 + 1?", "answer": "2", "level": 2,
            "models": {"weak": "w", "strong": "s", "prm": "p"}, "max_interventions": k,
            "strong_only": {"tokens": so_tokens, "steps": 2, "correct": True}}


def tiny_tree() -> dict:
    """max_interventions = 1.

    node 0: weak 10 tok prm .9 -> keep 1;  strong 20 tok prm .8 -> regenerate 2
    node 1: weak  5 tok prm .5 final wrong; strong 7 tok prm .6 final correct
    node 2: weak 11 tok prm .7 -> keep 3;   regenerate absent (budget used)
    node 3: weak  4 tok prm .95 final correct; regenerate absent
    """
    return {**_header("toy/0", 1), "nodes": [
        {"weak": {"tokens": 10, "prm": 0.9, "final": False}, "strong": {"tokens": 20, "prm": 0.8, "final": False},
         "keep": 1, "regenerate": 2},
        {"weak": {"tokens": 5, "prm": 0.5, "final": True, "correct": False},
         "strong": {"tokens": 7, "prm": 0.6, "final": True, "correct": True}, "keep": None, "regenerate": None},
        {"weak": {"tokens": 11, "prm": 0.7, "final": False}, "keep": 3},
        {"weak": {"tokens": 4, "prm": 0.95, "final": True, "correct": True}, "keep": None},
    ]}


def chain_tree(n_steps: int, final_last: bool = True, correct: bool = True) -> dict:
    """Weak-only chain (max_interventions = 0); step i has 3 + i tokens."""
    nodes = []
    for i in range(n_steps):
        last = i == n_steps - 1
        weak = {"tokens": 3 + i, "prm": 0.5, "final": bool(last and final_last)}
        if last and final_last:
            weak["correct"] = correct
        nodes.append({"weak": weak, "keep": None if last else i + 1})
    return {**_header(f"chain/{n_steps}/{final_last}", 0), "nodes": nodes}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("tiny") / "tiny.jsonl"
    write_trees(p, [tiny_tree(), chain_tree(MAX_STEPS, final_last=False), chain_tree(MAX_STEPS, correct=True),
                    chain_tree(2, correct=False)])
    return p


@pytest.fixture(scope="module")
def sim_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("sim") / "sim.jsonl.gz"
    generate_file("math500", "test", 0, p, limit=8, draws=4)
    return p


@pytest.fixture(scope="module")
def sim_flat(sim_path):
    return load_flat(sim_path)


def _play(env, tree, actions, lam=LAM):
    obs, info = env.reset(seed=0, options={"tree": tree, "lam": lam})
    assert info["tree"] == tree
    out = []
    for a in actions:
        masks = env.action_masks()
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, trunc, info, masks))
        if term:
            break
    return out


# ---------------------------------------------------------------------------------------------
# API conformance
# ---------------------------------------------------------------------------------------------
CONFIGS = [dict(obs="agg"), dict(obs="seq"), dict(obs="agg", budget_conditioned=True)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_gymnasium_check_env(sim_flat, cfg):
    from gymnasium.utils.env_checker import check_env

    env = RoutingEnv(sim_flat, lam=LAM, **cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings: make every one fail
        check_env(env.unwrapped, skip_render_check=True)


def test_make_takes_tree_specs_and_import_registers_the_env():
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error')\n"
            "import trim_rl, gymnasium as gym\n"
            "from gymnasium.utils.env_checker import check_env\n"
            "env = gym.make('trim_rl/Routing-v0')\n"
            "check_env(env.unwrapped, skip_render_check=True)\n"
            "env = gym.make('trim_rl/Routing-v0', trees='sim:math500:val', obs='seq', lam=2e-3)\n"
            "print(env.unwrapped.trees.n_trees, env.observation_space.shape)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["392", "(30,", "5)"]


@pytest.mark.parametrize("lam", [-1e-3, float("nan"), float("inf")])
def test_a_price_that_is_not_a_price_is_refused(sim_flat, lam):
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        RoutingEnv(sim_flat, lam=lam)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_sb3_check_env(sim_flat, cfg):
    from stable_baselines3.common.env_checker import check_env

    env = RoutingEnv(sim_flat, lam=LAM, **cfg)
    check_env(env, warn=False, skip_render_check=True)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_observations_inside_space(sim_flat, cfg):
    env = RoutingEnv(sim_flat, lam=LAM, **cfg)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1)
    episodes = 0
    while episodes < 40:
        assert env.observation_space.contains(obs), obs
        obs, _, term, trunc, _ = env.step(int(rng.random() < 0.4))
        assert not trunc
        if term:
            assert env.observation_space.contains(obs)
            assert not obs.any()  # the observation returned at episode end is all zeros
            episodes += 1
            obs, _ = env.reset()


def test_gymnasium_make(sim_path):
    import trim_rl.envs  # noqa: F401  (registers the id)

    env = gymnasium.make("trim_rl/Routing-v0", trees=str(sim_path), lam=LAM, obs="seq")
    try:
        assert isinstance(env.unwrapped, RoutingEnv)
        assert env.unwrapped.lam == LAM
        obs, info = env.reset(seed=0)
        assert obs.shape == (MAX_STEPS, 5)
        assert set(info) >= {"action_mask", "tree"}
        done, steps = False, 0
        while not done:
            obs, r, term, trunc, info = env.step(KEEP)
            done, steps = term or trunc, steps + 1
        assert set(info) >= INFO_KEYS
        assert info["steps"] == steps and info["interventions"] == 0 and info["strong_tokens"] == 0
    finally:
        env.close()


def test_bad_arguments(sim_flat, tiny_path):
    with pytest.raises(ValueError):
        RoutingEnv(sim_flat, lam=-1.0)
    with pytest.raises(ValueError):
        RoutingEnv(sim_flat, obs="nope")
    with pytest.raises(ValueError):
        RoutingEnv(sim_flat, obs="seq", budget_conditioned=True)
    env = RoutingEnv(tiny_path)
    with pytest.raises(ValueError):
        env.reset(options={"tree": 4})
    with pytest.raises(ValueError):
        env.reset(options={"tree": -1})
    env.reset(options={"tree": 3})
    env.step(KEEP)
    assert env.step(KEEP)[2]
    with pytest.raises(RuntimeError):  # stepping after the end needs a reset
        env.step(KEEP)


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------
def _random_rollout(flat, seed, cfg, n_steps=600):
    env = RoutingEnv(flat, lam=LAM, **cfg)
    rng = np.random.default_rng(1234)  # the same action stream for every env seed
    obs, info = env.reset(seed=seed)
    trace = [("reset", obs.copy(), info["tree"], tuple(info["action_mask"]))]
    for _ in range(n_steps):
        obs, r, term, trunc, info = env.step(int(rng.random() < 0.3))
        trace.append(("step", obs.copy(), r, term, trunc, sorted(info.items())))
        if term:
            obs, info = env.reset()
            trace.append(("reset", obs.copy(), info["tree"], tuple(info["action_mask"])))
    return trace


def _same(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x[0] != y[0] or not np.array_equal(x[1], y[1]) or x[2:] != y[2:]:
            return False
    return True


@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_same_seed_same_rollout_other_seed_differs(sim_flat, cfg):
    a = _random_rollout(sim_flat, 7, cfg)
    b = _random_rollout(sim_flat, 7, cfg)
    assert _same(a, b)
    c = _random_rollout(sim_flat, 8, cfg)
    assert not _same(a, c)
    trees_a = [x[2] for x in a if x[0] == "reset"]
    trees_c = [x[2] for x in c if x[0] == "reset"]
    assert trees_a != trees_c


def test_reset_draws_trees_uniformly(sim_flat):
    env = RoutingEnv(sim_flat)
    env.reset(seed=0)
    seen = np.bincount([env.reset()[1]["tree"] for _ in range(3000)], minlength=sim_flat.n_trees)
    assert (seen > 0).all()  # 32 trees, 3000 draws: every tree is drawn


def test_budget_conditioned_lambda_drawn_in_range_and_shown(sim_flat):
    lo, hi = 1e-4, 1e-2
    env = RoutingEnv(sim_flat, obs="agg", budget_conditioned=True, lam_range=(lo, hi))
    env.reset(seed=3)
    lams = []
    for _ in range(300):
        obs, _ = env.reset()
        lam = env.current_lam
        assert lo <= lam <= hi
        assert obs.shape == (7,)
        assert obs[6] == pytest.approx(np.log10(lam), abs=1e-6)
        lams.append(np.log10(lam))
    # log-uniform: the mean log10 is near the middle and both halves are hit
    assert abs(np.mean(lams) + 3.0) < 0.2
    assert min(lams) < -3.5 and max(lams) > -2.5
    # the episode-end info reports the drawn lambda
    done, info = False, {}
    while not done:
        _, _, done, _, info = env.step(KEEP)
    assert info["lam"] == env.current_lam


def test_current_node_tree_and_lam_follow_the_episode(sim_flat):
    env = RoutingEnv(sim_flat, lam=LAM)
    assert (env.current_node, env.current_tree, env.current_lam) == (-1, -1, LAM)
    _, info = env.reset(seed=0, options={"tree": 5, "lam": 0.5})
    assert (env.current_tree, env.current_node, env.current_lam) == (5, int(sim_flat.tree_root[5]), 0.5)
    done, path = False, [env.current_node]
    while not done:
        _, _, done, _, info = env.step(KEEP)
        path.append(env.current_node)
    # the weak path of tree 5, then -1 once the episode ended
    assert path[-1] == -1 and path[1:-1] == [int(sim_flat.keep_child[n]) for n in path[:-2]]
    assert info["tree"] == env.current_tree == 5 and info["lam"] == env.current_lam == 0.5
    env.reset()
    assert env.current_lam == LAM  # the option's price lasted one episode


# ---------------------------------------------------------------------------------------------
# reward accounting on the hand-built tree
# ---------------------------------------------------------------------------------------------
def test_keep_keep_incorrect(tiny_path):
    env = RoutingEnv(tiny_path, lam=LAM)
    out = _play(env, 0, [KEEP, KEEP])
    assert [o[1] for o in out] == [0.0, 0.0]
    assert [o[2] for o in out] == [False, True]
    info = out[-1][4]
    assert set(info) == INFO_KEYS
    assert info == {"correct": False, "strong_tokens": 0, "weak_tokens": 15, "kept_weak_tokens": 15,
                    "discarded_weak_tokens": 0, "interventions": 0, "steps": 2, "tree": 0, "lam": LAM}
    assert out[0][4] == {}  # no info before the end


def test_keep_regenerate_correct(tiny_path):
    env = RoutingEnv(tiny_path, lam=LAM)
    out = _play(env, 0, [KEEP, REGENERATE])
    assert out[0][1] == 0.0
    assert out[1][1] == pytest.approx(1.0 - LAM * 7)
    assert out[1][2] is True
    info = out[-1][4]
    assert info["correct"] is True
    assert info["strong_tokens"] == 7
    assert info["weak_tokens"] == 15  # kept 10 + discarded 5
    assert info["kept_weak_tokens"] == 10 and info["discarded_weak_tokens"] == 5
    assert info["interventions"] == 1 and info["steps"] == 2
    # masks: regenerate legal at both decisions
    assert out[0][5].tolist() == [True, True] and out[1][5].tolist() == [True, True]


def test_regenerate_then_masked(tiny_path):
    env = RoutingEnv(tiny_path, lam=LAM)
    obs, info = env.reset(options={"tree": 0, "lam": LAM})
    assert info["action_mask"].tolist() == [True, True]
    obs, r, term, _, info = env.step(REGENERATE)
    assert r == pytest.approx(-LAM * 20) and not term
    # node 2: the budget (1 regeneration) is used, regenerate is masked
    assert env.action_masks().tolist() == [True, False]
    np.testing.assert_allclose(obs, [0.7, 0.8, 0.8, 0.11, 1 / MAX_STEPS, 1.0], rtol=1e-6)
    obs, r, term, _, info = env.step(REGENERATE)  # illegal: played as keep
    assert r == 0.0 and not term
    np.testing.assert_allclose(obs, [0.95, 0.7, 0.8 * 0.7, 0.04, 2 / MAX_STEPS, 1.0], rtol=1e-6)
    assert env.action_masks().tolist() == [True, False]
    obs, r, term, _, info = env.step(KEEP)
    assert r == 1.0 and term
    assert info == {"correct": True, "strong_tokens": 20, "weak_tokens": 10 + 11 + 4, "kept_weak_tokens": 15,
                    "discarded_weak_tokens": 10, "interventions": 1, "steps": 3, "tree": 0, "lam": LAM}


def test_illegal_regenerate_equals_keep(tiny_path):
    env = RoutingEnv(tiny_path, lam=LAM)
    a = _play(env, 0, [REGENERATE, REGENERATE, REGENERATE])
    b = _play(env, 0, [REGENERATE, KEEP, KEEP])
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:5] == y[1:5]


def test_episode_return_matches_info(sim_flat):
    """Sum of rewards = correct - lam * strong_tokens on every episode."""
    env = RoutingEnv(sim_flat, lam=LAM)
    rng = np.random.default_rng(5)
    env.reset(seed=5)
    total, n = 0.0, 0
    while n < 60:
        m = env.action_masks()
        _, r, term, _, info = env.step(int(rng.random() < 0.5))
        total += r
        if term:
            assert total == pytest.approx(float(info["correct"]) - LAM * info["strong_tokens"], abs=1e-9)
            assert info["interventions"] <= sim_flat.max_interventions[info["tree"]]
            assert info["steps"] <= MAX_STEPS
            total, n = 0.0, n + 1
            env.reset()
        else:
            assert m[0]


def test_max_interventions_never_exceeded(sim_flat):
    env = RoutingEnv(sim_flat, lam=LAM)
    for t in range(sim_flat.n_trees):
        env.reset(options={"tree": t})
        regens, done, info = 0, False, {}
        while not done:
            m = env.action_masks()
            assert m[0]
            assert m[1] == (regens < sim_flat.max_interventions[t])
            regens += int(m[1])
            _, _, done, _, info = env.step(REGENERATE)
        assert info["interventions"] == regens


def test_depth_limit_truncates_as_incorrect(tiny_path):
    env = RoutingEnv(tiny_path, lam=LAM)
    out = _play(env, 1, [REGENERATE] * 40)  # max_interventions = 0: every regenerate plays as keep
    assert len(out) == MAX_STEPS
    assert all(not o[5][1] for o in out)
    assert [o[2] for o in out] == [False] * (MAX_STEPS - 1) + [True]
    assert all(o[3] is False for o in out)  # terminated, never truncated
    assert sum(o[1] for o in out) == 0.0
    info = out[-1][4]
    assert info["correct"] is False and info["steps"] == MAX_STEPS and info["interventions"] == 0
    assert info["weak_tokens"] == sum(3 + i for i in range(MAX_STEPS))
    # the same chain with a correct final 30th step pays +1
    out = _play(env, 2, [KEEP] * 40)
    assert len(out) == MAX_STEPS and out[-1][1] == 1.0 and out[-1][4]["correct"] is True


def test_final_incorrect_chain(tiny_path):
    env = RoutingEnv(tiny_path, lam=LAM)
    out = _play(env, 3, [KEEP] * 5)
    assert len(out) == 2 and out[-1][1] == 0.0 and out[-1][4]["correct"] is False


def test_reset_option_tree_plays_that_tree(sim_flat):
    env = RoutingEnv(sim_flat, lam=LAM)
    w = sim_flat.weak_only()
    for t in [0, 5, sim_flat.n_trees - 1, 5]:
        obs, info = env.reset(options={"tree": t})
        assert info["tree"] == t
        root = sim_flat.tree_root[t]
        assert obs[0] == np.float32(sim_flat.weak_prm[root])
        assert obs[3] == np.float32(sim_flat.weak_tokens[root] / 100)
        done, steps = False, 0
        while not done:
            _, r, done, _, info = env.step(KEEP)
            steps += 1
        assert info["tree"] == t
        assert info["correct"] == bool(w["correct"][t])
        assert info["weak_tokens"] == w["weak_tokens"][t]
        assert steps == info["steps"] == w["steps"][t]


def test_step_before_reset_raises(tiny_path):
    env = RoutingEnv(tiny_path)
    with pytest.raises(RuntimeError):
        env.step(KEEP)
    assert env.action_masks().tolist() == [True, False]
