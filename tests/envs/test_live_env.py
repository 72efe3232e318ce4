"""The live routing envs (``LiveRoutingVecEnv``, ``trim_rl/LiveRouting-v0``) against the simulated backend
over real HTTP: the env checkers, determinism, fault isolation, and agreement with the offline env on
trees of the same profile."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("uvicorn")

from trim_rl.live.vec_env import LiveRoutingVecEnv  # noqa: E402
from trim_rl.live.engines import OpenAICompatibleEngine, Sampling  # noqa: E402
from trim_rl.live.http import EngineError  # noqa: E402
from trim_rl.live.prm import VLLMPoolingPRM  # noqa: E402
from trim_rl.live.routing import Backends  # noqa: E402
from trim_rl.sim.backend import problems  # noqa: E402
from trim_rl.sim.server import SimServer  # noqa: E402

K_MAX = 6  # the math500 profile's max_interventions, as its trees allow
BIG = Sampling(max_tokens=4096)  # no step is cut, as in the offline simulator


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=0) as srv:
        yield srv


def _backends(url: str, sampling: Sampling = BIG) -> Backends:
    return Backends(OpenAICompatibleEngine(url, "sim-weak", sampling), OpenAICompatibleEngine(url, "sim-strong", sampling),
                    VLLMPoolingPRM(url, "sim-prm"))


def thr(obs: np.ndarray, masks: np.ndarray, k: float = 0.5) -> np.ndarray:
    """TRIM-Thr on agg observations: regenerate a draft scored under k where allowed."""
    return ((obs[:, 0] < k) & masks[:, 1]).astype(np.int64)


def _episodes(env, n_episodes: int, policy=thr, max_steps: int = 100_000):
    obs, out, trace = env.reset(), [], []
    for _ in range(max_steps):
        a = policy(obs, env.action_masks())
        obs, rew, done, infos = env.step(a)
        trace.append((obs.copy(), rew.copy(), done.copy()))
        out += [info for info, d in zip(infos, done) if d]
        if len(out) >= n_episodes:
            break
    return out[:n_episodes], trace


def test_gymnasium_and_sb3_checkers(server):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    # by URLs and live decode's flags, as a registry user makes it (its kwargs are copied by gymnasium)
    env = gym.make("trim_rl/LiveRouting-v0", weak_url=server.url, strong_url=server.url, prm_url=server.url,
                   live_options={"weak_model": "sim-weak", "strong_model": "sim-strong", "prm_model": "sim-prm",
                                 "max_tokens": 4096},
                   problems=problems("math500", "test", limit=4), max_interventions=K_MAX)
    gym_check(env.unwrapped, skip_render_check=True)
    sb3_check(env.unwrapped, warn=True)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["action_mask"][0]
    done, steps = False, 0
    while not done:
        obs, rew, term, trunc, info = env.step(1)
        done, steps = term or trunc, steps + 1
    assert info["steps"] == steps and info["interventions"] == min(steps, K_MAX)
    assert info["strong_tokens"] > 0 and rew <= 1.0 and "wall_s" in info and info["problem_id"].startswith("sim-")
    env.close()


def test_vec_env_steps_masks_and_info(server):
    env = LiveRoutingVecEnv(_backends(server.url), problems("math500", "test", limit=6), num_envs=3, lam=1e-3,
                            max_interventions=1)
    env.seed(0)
    obs = env.reset()
    assert obs.shape == (3, 6) and env.action_masks().all()
    eps, _ = _episodes(env, 6, policy=lambda o, m: m[:, 1].astype(np.int64))  # regenerate whenever allowed
    for info in eps:
        assert info["interventions"] == 1  # the limit holds: later regenerates were masked
        assert info["weak_tokens"] == info["kept_weak_tokens"] + info["discarded_weak_tokens"]
    # every problem of the set was played before the first came back (the batch stays full)
    assert len({e["problem_id"] for e in eps}) == 6
    env.close()


def test_reward_is_correct_minus_price_of_strong_tokens(server):
    env = LiveRoutingVecEnv(_backends(server.url), problems("math500", "test", limit=4), num_envs=2, lam=1e-3,
                            max_interventions=K_MAX)
    env.seed(1)
    obs, ret, eps = env.reset(), np.zeros(2), []
    while len(eps) < 4:
        obs, rew, done, infos = env.step(thr(obs, env.action_masks()))
        ret += rew
        for i in np.flatnonzero(done):
            eps.append((ret[i], infos[i]))
            ret[i] = 0.0
    for r, info in eps:
        assert math.isclose(r, float(info["correct"]) - 1e-3 * info["strong_tokens"], abs_tol=1e-4)
    env.close()


def test_budget_conditioned_and_seq_observations(server):
    env = LiveRoutingVecEnv(_backends(server.url), problems("math500", "test", limit=3), num_envs=2, obs="agg",
                            budget_conditioned=True, lam_range=(1e-4, 1e-2))
    env.seed(0)
    obs = env.reset()
    assert obs.shape == (2, 7) and np.all((obs[:, 6] >= -4) & (obs[:, 6] <= -2))
    seq = LiveRoutingVecEnv(_backends(server.url), problems("math500", "test", limit=3), num_envs=2, obs="seq")
    seq.seed(0)
    o = seq.reset()
    assert o.shape == (2, 30, 5) and np.all(o[:, 0, 3] == 1)  # the first row is the current draft
    o, *_ = seq.step(np.zeros(2, dtype=np.int64))
    assert np.all(o[:, 0, 4] == 1)
    env.close()
    seq.close()


def test_same_seed_same_rollouts(server):
    sampled = Sampling(max_tokens=4096, temperature=0.7)  # each call's seed is the env's: runs must still agree

    def run(seed):
        env = LiveRoutingVecEnv(_backends(server.url, sampled), problems("math500", "test", limit=5), num_envs=3,
                                max_interventions=K_MAX)
        env.seed(seed)
        eps, trace = _episodes(env, 8)
        env.close()
        return [{k: v for k, v in e.items() if k not in ("wall_s", "terminal_observation")} for e in eps], trace

    a, ta = run(7)
    b, tb = run(7)
    c, _ = run(8)
    assert a == b
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(ta, tb))
    assert a != c  # another seed: another order and other samples


class _Flaky:
    """A weak engine whose requests for one problem always fail (after the engine's own retries)."""

    def __init__(self, inner, bad: str):
        self.inner, self.bad, self.name = inner, bad, inner.name

    def generate(self, requests):
        if any(self.bad in r.problem for r in requests):
            raise EngineError("weak", "simulated outage for one problem")
        return self.inner.generate(requests)


def test_a_failing_problem_is_dropped_and_counted(server, caplog):
    b = _backends(server.url)
    b.weak = _Flaky(b.weak, "sim problem 2 of")
    env = LiveRoutingVecEnv(b, problems("math500", "test", limit=4), num_envs=2, max_interventions=K_MAX)
    env.seed(0)
    with caplog.at_level("WARNING"):
        eps, _ = _episodes(env, 9)
    assert env.dropped >= 2  # problem 2 of 4, on each pass over the set
    assert all(e["problem_id"] != "sim-math500/test-2-0" for e in eps)
    assert "dropped from training" in caplog.text
    env.close()


@pytest.mark.slow
def test_live_env_agrees_with_offline_env_on_trees_of_the_same_profile(server):
    from trim_rl.envs.vec_env import RoutingVecEnv

    n = 400
    live = LiveRoutingVecEnv(_backends(server.url), problems("math500", "test", draws=2), num_envs=32,
                             max_interventions=K_MAX)
    live.seed(0)
    got, _ = _episodes(live, n)
    live.close()
    off = RoutingVecEnv("sim:math500:test", num_envs=32, schedule="sequential")
    off.seed(0)
    ref, _ = _episodes(off, n)
    for key in ("correct", "strong_tokens"):
        x = np.array([e[key] for e in got], dtype=float)
        y = np.array([e[key] for e in ref], dtype=float)
        se = math.sqrt(x.var() / len(x) + y.var() / len(y))
        assert abs(x.mean() - y.mean()) < 4 * se, (key, x.mean(), y.mean(), se)
