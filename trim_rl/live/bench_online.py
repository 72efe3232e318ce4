"""``python -m trim_rl.bench online``: what stepping problems live costs next to decoding them, and what a
problem costs in generations online next to collecting its tree.

Both against the simulated backend (``python -m trim_rl.sim serve``'s app in a thread, no latency), so
the figures are the client side's: the env (observations, masks, grading, the routing loop split around
the agent's action) against ``live decode`` (the same loop, the router inside), TRIM-Thr(0.5) either way.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def env_vs_decode(n_problems: int = 256, envs: int = 32, repeats: int = 3, max_interventions: int = 6) -> dict:
    """Env steps per second of LiveRoutingVecEnv and steps per second of live decode, TRIM-Thr(0.5) on the
    same simulated problems; medians of ``repeats``."""
    from trim_rl.live.decoder import DecodeSettings, HybridDecoder
    from trim_rl.live.engines import OpenAICompatibleEngine, Sampling
    from trim_rl.live.prm import VLLMPoolingPRM
    from trim_rl.live.results import ResultsFile
    from trim_rl.live.router import Router, load_policy
    from trim_rl.live.routing import Backends
    from trim_rl.live.vec_env import LiveRoutingVecEnv
    from trim_rl.sim.backend import problems
    from trim_rl.sim.server import SimServer

    sampling = Sampling(max_tokens=4096)
    probs = problems("math500", "test", draws=2)[:n_problems]
    env_rate, dec_rate = [], []
    with SimServer(seed=0) as srv:
        def engines():
            return (OpenAICompatibleEngine(srv.url, "sim-weak", sampling),
                    OpenAICompatibleEngine(srv.url, "sim-strong", sampling), VLLMPoolingPRM(srv.url, "sim-prm"))

        for rep in range(repeats):
            env = LiveRoutingVecEnv(Backends(*engines()), probs, num_envs=envs, max_interventions=max_interventions)
            env.seed(rep)
            obs, steps, episodes = env.reset(), 0, 0
            t0 = time.perf_counter()
            while episodes < len(probs):
                obs, _, done, _ = env.step(((obs[:, 0] < 0.5) & env.action_masks()[:, 1]).astype(int))
                steps += envs
                episodes += int(done.sum())
            env_rate.append(steps / (time.perf_counter() - t0))
            env.close()
            dec = HybridDecoder(*engines(), Router(load_policy("thr:0.5")),
                                DecodeSettings(concurrency=envs, max_interventions=max_interventions, seed=rep))
            with tempfile.TemporaryDirectory() as d:
                out = ResultsFile(Path(d) / "r.jsonl")
                t0 = time.perf_counter()
                dec.run(probs, out, progress=False)
                dec_rate.append(sum(r["n_steps"] for r in out.done.values()) / (time.perf_counter() - t0))
    env_s, dec_s = statistics.median(env_rate), statistics.median(dec_rate)
    return {"env_steps_s": env_s, "decode_steps_s": dec_s, "ratio": env_s / dec_s, "problems": len(probs),
            "envs": envs, "repeats": repeats}


def generations_per_problem(trees: str = "sim:math500:test") -> dict:
    """Generations a problem costs: its whole tree (every node's weak and strong step, and a PRM call for
    each), against one online episode of TRIM-Thr(0.5) (each step's draft and score, plus the strong
    step and its score where it regenerates)."""
    from trim_rl.data.flat import ABSENT
    from trim_rl.data.tree_dp import play
    from trim_rl.sim.bundled import load_trees

    f = load_trees(trees)
    tree_gens = float(f.n_nodes + f.strong_present.sum()) / f.n_trees
    counted = {"steps": 0, "regens": 0}

    def threshold(nodes):  # TRIM-Thr(0.5) on the walk play makes, counting what each episode generates
        act = f.weak_prm[nodes] < 0.5
        counted["steps"] += len(nodes)
        counted["regens"] += int((act & (f.regen_child[nodes] != ABSENT)).sum())
        return act

    play(f, threshold)
    online = (counted["steps"] + counted["regens"]) / f.n_trees
    # every generation is scored once, so PRM calls equal generations on both sides
    return {"tree_generations": tree_gens, "online_generations": online, "ratio": tree_gens / online, "trees": trees}
