"""Tests for trim_rl.envs.vec_env.RoutingVecEnv: exact agreement with DummyVecEnv over RoutingEnvs."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.routing_env import RoutingEnv
from trim_rl.envs.vec_env import RoutingVecEnv

LAM = 2e-3
N_ENVS = 6
STEPS = 2000


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("test", 1, limit=10, draws=3)


def _pair(flat, seed, **cfg):
    vec = RoutingVecEnv(flat, num_envs=N_ENVS, lam=LAM, **cfg)
    dummy = DummyVecEnv([lambda: RoutingEnv(flat, lam=LAM, **cfg) for _ in range(N_ENVS)])
    vec.seed(seed)
    dummy.seed(seed)
    return vec, dummy


def _assert_info_equal(a: dict, b: dict, where: str):
    assert set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f"{where}: {k}")
            assert np.asarray(x).dtype == np.asarray(y).dtype, f"{where}: {k} dtype"
        else:
            assert x == y, f"{where}: {k}: {x!r} vs {y!r}"
            assert type(x) is type(y) or {type(x), type(y)} <= {int, np.int64}, f"{where}: {k} type"


CONFIGS = [dict(obs="agg"), dict(obs="seq"), dict(obs="agg", budget_conditioned=True, lam_range=(1e-4, 1e-2))]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_agrees_exactly_with_dummy_vec_env(flat, cfg):
    vec, dummy = _pair(flat, 11, **cfg)
    ov, od = vec.reset(), dummy.reset()
    np.testing.assert_array_equal(ov, od)
    assert ov.dtype == od.dtype == np.float32
    for i in range(N_ENVS):
        _assert_info_equal(vec.reset_infos[i], dummy.reset_infos[i], f"reset env {i}")
    rng = np.random.default_rng(0)
    episodes = 0
    trees_seen = set()
    for t in range(STEPS):
        mv = vec.action_masks()
        md = np.stack(dummy.env_method("action_masks"))
        np.testing.assert_array_equal(mv, md, err_msg=f"masks at step {t}")
        np.testing.assert_array_equal(np.stack(vec.env_method("action_masks")), md)
        # random actions, illegal regenerates included (both must play them as keep)
        actions = (rng.random(N_ENVS) < 0.35).astype(np.int64)
        ov, rv, dv, iv = vec.step(actions)
        od, rd, dd, idd = dummy.step(actions)
        np.testing.assert_array_equal(ov, od, err_msg=f"obs at step {t}")
        np.testing.assert_array_equal(rv, rd, err_msg=f"rewards at step {t}")
        assert rv.dtype == rd.dtype
        np.testing.assert_array_equal(dv, dd, err_msg=f"dones at step {t}")
        for i in range(N_ENVS):
            _assert_info_equal(iv[i], idd[i], f"step {t} env {i}")
            if dv[i]:
                trees_seen.add(iv[i]["tree"])
        episodes += int(dv.sum())
    assert episodes > 200  # the comparison covered many episodes and auto-resets
    assert len(trees_seen) > flat.n_trees // 2


def test_seeds_are_per_env_and_reproducible(flat):
    a = RoutingVecEnv(flat, num_envs=4, lam=LAM)
    b = RoutingVecEnv(flat, num_envs=4, lam=LAM)
    a.seed(5), b.seed(5)
    np.testing.assert_array_equal(a.reset(), b.reset())
    assert [i["tree"] for i in a.reset_infos] == [i["tree"] for i in b.reset_infos]
    # env i seeded 5 + i plays what a single RoutingEnv seeded 5 + i plays
    for i in range(4):
        _, info = RoutingEnv(flat, lam=LAM).reset(seed=5 + i)
        assert a.reset_infos[i]["tree"] == info["tree"]
    c = RoutingVecEnv(flat, num_envs=4, lam=LAM)
    c.seed(6)
    c.reset()
    trees = lambda v: [v.reset_infos[i]["tree"] for i in range(4)]  # noqa: E731
    first = trees(a)
    # a different seed gives a different tree sequence over a few resets
    seq_a, seq_c = [], []
    for v, out in ((a, seq_a), (c, seq_c)):
        for _ in range(5):
            v.seed(None)
            out.append(trees(v))
            v.reset()
    assert first == seq_a[0]
    assert seq_a != seq_c


def test_sequential_schedule_plays_every_tree(flat):
    n = flat.n_trees
    vec = RoutingVecEnv(flat, num_envs=n, lam=LAM, schedule="sequential")
    vec.seed(0)
    vec.reset()
    assert [i["tree"] for i in vec.reset_infos] == list(range(n))
    w = flat.weak_only()
    finished = np.zeros(n, dtype=bool)
    for _ in range(MAX_STEPS):
        _, _, dones, infos = vec.step(np.zeros(n, dtype=np.int64))
        for i in np.flatnonzero(dones & ~finished):
            assert infos[i]["tree"] == i
            assert infos[i]["correct"] == bool(w["correct"][i])
            assert infos[i]["steps"] == w["steps"][i]
            assert infos[i]["weak_tokens"] == w["weak_tokens"][i]
        finished |= dones
    assert finished.all()


def test_bad_schedule_and_set_attr(flat):
    with pytest.raises(ValueError):
        RoutingVecEnv(flat, schedule="round-robin")
    vec = RoutingVecEnv(flat, num_envs=2, lam=LAM)
    vec.set_attr("lam", 0.5)
    vec.seed(0)
    vec.reset()
    assert vec.get_attr("lam") == [0.5, 0.5]
    with pytest.raises(AttributeError):
        vec.set_attr("trees", None)


def test_maskable_ppo_learns_on_it(flat, tmp_path):
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.logger import configure
    from sb3_contrib.common.maskable.utils import get_action_masks

    torch.set_num_threads(1)
    vec = RoutingVecEnv(flat, num_envs=8, lam=LAM)
    model = MaskablePPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu",
                        policy_kwargs={"net_arch": [16]})
    model.set_logger(configure(str(tmp_path), ["csv"]))  # not SB3's default folder under /tmp
    model.learn(total_timesteps=256)
    assert (tmp_path / "progress.csv").stat().st_size > 0
    assert model.num_timesteps >= 256
    vec.seed(1)
    obs = vec.reset()
    for _ in range(200):
        masks = get_action_masks(vec)
        assert masks.shape == (8, 2)
        actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
        assert actions.shape == (8,)
        # a masked action is never chosen
        assert not np.any((actions == 1) & ~masks[:, 1])
        obs, _, _, _ = vec.step(actions)
    assert np.isfinite(obs).all()
    only_keep = np.tile([True, False], (8, 1))
    for _ in range(5):
        actions, _ = model.predict(obs, action_masks=only_keep, deterministic=False)
        assert (actions == 0).all()


def test_reset_infos_follow_auto_reset_like_dummy(flat):
    vec, dummy = _pair(flat, 0, obs="agg")
    vec.reset(), dummy.reset()
    ended = 0
    for t in range(60):
        a = np.zeros(N_ENVS, dtype=np.int64)
        _, _, dv, _ = vec.step(a)
        dummy.step(a)
        for i in range(N_ENVS):
            _assert_info_equal(vec.reset_infos[i], dummy.reset_infos[i], f"reset_infos step {t} env {i}")
        ended += int(dv.sum())
    assert ended > 0


# ---------------------------------------------------------------------------------------------
# public state and reset options
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_current_nodes_trees_and_lams_follow_the_dummy_envs(flat, cfg):
    vec, dummy = _pair(flat, 4, **cfg)
    obs = vec.reset()
    dummy.reset()
    rng = np.random.default_rng(1)
    ended = 0
    for t in range(300):
        np.testing.assert_array_equal(vec.current_nodes, [e.current_node for e in dummy.envs], err_msg=f"step {t}")
        np.testing.assert_array_equal(vec.current_trees, [e.current_tree for e in dummy.envs], err_msg=f"step {t}")
        np.testing.assert_array_equal(vec.current_lams, [e.current_lam for e in dummy.envs], err_msg=f"step {t}")
        # the current node is the one the observation shows
        assert (vec.current_nodes >= 0).all()
        if cfg["obs"] == "agg":
            np.testing.assert_allclose(obs[:, 0], flat.weak_prm[vec.current_nodes], rtol=1e-6)
            if cfg.get("budget_conditioned"):
                np.testing.assert_allclose(obs[:, 6], np.log10(vec.current_lams), rtol=1e-6)
        actions = (rng.random(N_ENVS) < 0.3).astype(np.int64)
        obs, _, dv, _ = vec.step(actions)
        dummy.step(actions)
        ended += int(dv.sum())
    assert ended > 20
    nodes = vec.current_nodes
    nodes[:] = -5  # a copy: writing to it leaves the env alone
    assert (vec.current_nodes >= 0).all()


@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_reset_options_agree_with_dummy_and_last_one_reset(flat, cfg):
    vec, dummy = _pair(flat, 9, **cfg)
    options = [{"tree": 7}, {}, {"lam": 0.25}, {"tree": 2, "lam": 5e-3}, {"tree": flat.n_trees - 1}, {}]
    vec.set_options(options)
    dummy.set_options(options)
    ov, od = vec.reset(), dummy.reset()
    np.testing.assert_array_equal(ov, od)
    assert vec.current_trees[[0, 3, 4]].tolist() == [7, 2, flat.n_trees - 1]
    assert vec.current_lams[2] == 0.25 and vec.current_lams[3] == 5e-3
    for i in range(N_ENVS):
        _assert_info_equal(vec.reset_infos[i], dummy.reset_infos[i], f"reset env {i}")
    rng = np.random.default_rng(2)
    for t in range(400):
        actions = (rng.random(N_ENVS) < 0.35).astype(np.int64)
        ov, rv, dv, iv = vec.step(actions)
        od, rd, dd, idd = dummy.step(actions)
        np.testing.assert_array_equal(ov, od, err_msg=f"obs at step {t}")
        np.testing.assert_array_equal(rv, rd, err_msg=f"rewards at step {t}")
        np.testing.assert_array_equal(dv, dd, err_msg=f"dones at step {t}")
        for i in range(N_ENVS):
            _assert_info_equal(iv[i], idd[i], f"step {t} env {i}")
    # the option's price lasted one episode: every env is back at its own price now
    if not cfg.get("budget_conditioned"):
        assert (vec.current_lams == LAM).all()
    # options are spent by the reset they applied to: the next reset draws like one without options
    vec.seed(9)
    plain = RoutingVecEnv(flat, num_envs=N_ENVS, lam=LAM, **cfg)
    plain.seed(9)
    np.testing.assert_array_equal(vec.reset(), plain.reset())
    np.testing.assert_array_equal(vec.current_trees, plain.current_trees)


def test_a_reset_option_out_of_range_is_refused(flat):
    vec = RoutingVecEnv(flat, num_envs=2, lam=LAM)
    vec.set_options([{}, {"tree": flat.n_trees}])
    with pytest.raises(ValueError, match=rf"tree {flat.n_trees} out of range \[0, {flat.n_trees}\)"):
        vec.reset()
    vec.set_options({"lam": -1.0})
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        vec.reset()


# ---------------------------------------------------------------------------------------------
# every_tree_once: the deterministic sweep
# ---------------------------------------------------------------------------------------------
def _sweep(venv: RoutingVecEnv, seed: int) -> tuple[list[np.ndarray], list[dict]]:
    """Random legal actions from ``seed`` until every env finished one episode: (observations, infos)."""
    n = venv.num_envs
    rng = np.random.default_rng(seed)
    seen, infos = [venv.reset()], [{} for _ in range(n)]
    finished = np.zeros(n, dtype=bool)
    while not finished.all():
        obs, _, dones, step_infos = venv.step((rng.random(n) < 0.4).astype(np.int64))
        seen.append(obs)
        for i in np.flatnonzero(dones & ~finished):
            infos[i] = {k: v for k, v in step_infos[i].items() if k != "terminal_observation"}
        finished |= dones
    return seen, infos


def test_every_tree_once_plays_each_tree_once(flat):
    venv = RoutingVecEnv.every_tree_once(flat, lam=LAM, seed=0)
    assert venv.num_envs == flat.n_trees and venv.schedule == "sequential"
    venv.reset()
    assert venv.current_trees.tolist() == list(range(flat.n_trees))
    np.testing.assert_array_equal(venv.current_nodes, flat.tree_root)
    _, infos = _sweep(venv, 0)
    assert [i["tree"] for i in infos] == list(range(flat.n_trees))
    assert all(i["lam"] == LAM for i in infos)


def test_every_tree_once_is_deterministic_for_a_seed(flat):
    for obs in ("agg", "seq"):
        a, ia = _sweep(RoutingVecEnv.every_tree_once(flat, lam=LAM, obs=obs, seed=3), 5)
        b, ib = _sweep(RoutingVecEnv.every_tree_once(flat, lam=LAM, obs=obs, seed=3), 5)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        assert ia == ib
        _, ic = _sweep(RoutingVecEnv.every_tree_once(flat, lam=LAM, obs=obs, seed=3), 6)
        assert ia != ic  # the actions decide the outcomes: the comparison above could have failed


def test_every_tree_once_budget_conditioned_shows_its_price(flat):
    lam = 3e-3
    venv = RoutingVecEnv.every_tree_once(flat, lam=lam, budget_conditioned=True, seed=0)
    assert venv.observation_space.shape == (7,)
    obs = venv.reset()
    assert obs.shape == (flat.n_trees, 7) and venv.observation_space.contains(obs[0])
    np.testing.assert_allclose(venv.current_lams, lam, rtol=1e-12)
    np.testing.assert_allclose(obs[:, 6], np.log10(lam), rtol=1e-6)
    with pytest.raises(ValueError, match="seq observation is not budget-conditioned"):
        RoutingVecEnv.every_tree_once(flat, lam=lam, obs="seq", budget_conditioned=True)


# ---------------------------------------------------------------------------------------------
# conformance: the env it batches passes the checkers; its own observations lie in its space
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CONFIGS, ids=["agg", "seq", "agg-bc"])
def test_check_env_passes_and_observations_lie_in_the_space(flat, cfg):
    import warnings

    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    single = RoutingEnv(flat, lam=LAM, **cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(single, skip_render_check=True)
    sb3_check_env(RoutingEnv(flat, lam=LAM, **cfg), warn=False, skip_render_check=True)
    vec = RoutingVecEnv(flat, num_envs=N_ENVS, lam=LAM, **cfg)
    assert vec.observation_space == single.observation_space and vec.action_space == single.action_space
    vec.seed(0)
    obs = vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(100):
        assert obs.shape == (N_ENVS,) + vec.observation_space.shape and obs.dtype == np.float32
        assert all(vec.observation_space.contains(o) for o in obs)
        obs, _, _, infos = vec.step((rng.random(N_ENVS) < 0.3).astype(np.int64))
        for info in infos:
            if "terminal_observation" in info:
                assert vec.observation_space.contains(info["terminal_observation"])
