"""``python -m trim_rl.bench online``: what stepping problems live costs next to decoding them, and what a
problem costs in generations online next to collecting its tree.

Both against the simulated backend (``python -m trim_rl.sim serve``'s app in a thread, no latency), so
the figures are the client side's: the env (observations, masks, grading, the routing loop split around
the agent's action) against ``live decode`` (the same loop, the router inside), TRIM-Thr(0.5) either way.

:func:`problems_to_reach` (``--scratch-steps``): the live problems online PPO from scratch needs to reach
a tree-trained checkpoint's score at its budget, against the generations of those problems' trees
(docs/research/online_from_scratch.md).
"""

from __future__ import annotations

import math
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


def budget_tolerance(budget: float) -> float:
    """How far a spend may miss a budget and still count as that budget: max(3 points, 20% of it)."""
    return max(3.0, 0.2 * float(budget))


def _score(trees, net, builder, budget: float) -> dict:
    """A network's deterministic accuracy and cost % on ``trees``, and its accuracy with its regenerate
    logit shifted to spend ``budget`` on them (what its ranking of steps is worth at the budget)."""
    from trim_rl.training.budget import NodeMargins, calibrate_offset, spend

    margins = NodeMargins(trees, net, builder)
    acc, cost = spend(trees, margins, 0.0)
    return {"accuracy": acc, "cost_pct": cost, "accuracy_at_budget": calibrate_offset(trees, margins, budget, 30).accuracy}


def _evaluating(every: int, evaluate):
    """A factory of online training's extra callback (:func:`trim_rl.live.online.train_online`'s
    ``callbacks``): ``evaluate(model, run_callback)`` after the first PPO update past every ``every`` env
    steps and at the end; once that returns True, learning stops."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Evaluating(BaseCallback):
        def __init__(self, run):
            super().__init__()
            self.run, self.reached, self.next_eval = run, False, every

        def _on_step(self) -> bool:
            return not self.reached

        def _evaluate(self) -> None:
            n = self.model.num_timesteps
            self.next_eval = n - n % every + every
            self.reached = bool(evaluate(self.model, self.run))

        def _on_rollout_start(self) -> None:  # the policy PPO's update made of the steps so far
            if self.model.num_timesteps >= self.next_eval:
                self._evaluate()

        def _on_training_end(self) -> None:
            if not self.reached:
                self._evaluate()

    return Evaluating


def problems_to_reach(checkpoint: str | Path | None = None, budget: float | None = None, *,
                      max_steps: int = 16384, eval_every: int = 4096, agent: str = "trim_agg_scratch",
                      hyperparams: tuple | list = ("n_envs:32", "n_steps:64", "batch_size:512"),
                      problems: str = "sim:math500:train", trees: str = "sim:math500:test", seed: int = 0,
                      max_interventions: int = 6, strong_ref_problems: int = 64, log=None) -> dict:
    """How many live problems online PPO from scratch needs to reach a tree-trained checkpoint's score
    at its budget, and the generations that costs next to collecting those problems' trees.

    ``checkpoint``: the tree-trained policy to match (default the shipped ``trim_agg/trim_agg_b16``).

    ``agent`` (PPO alone, as ``train.py --live`` trains it: :func:`trim_rl.live.online.train_live`) is
    trained online against the simulated backend for ``budget`` (default: the checkpoint's), its price
    following the measured spend; after the first PPO update past every ``eval_every`` env steps its
    deterministic policy is scored on ``trees``, as the checkpoint is.  Reached: accuracy at least the
    checkpoint's less one standard error, at a cost at most ``budget + budget_tolerance(budget)``;
    training stops there, or at ``max_steps``.  Problems: finished episodes, the ``n_envs`` in flight
    and the strong-only reference problems; generations: every prompt the backend answered (weak
    drafts, strong steps, the reference solutions).  ``log`` (a callable) gets a line per point."""
    from trim_rl.agents.exported import ExportedPolicy
    from trim_rl.envs.observations import make_builder
    from trim_rl.live.online import train_live
    from trim_rl.sim.bundled import load_trees
    from trim_rl.sim.server import SimServer
    from trim_rl.training.ppo_stage import actor_net

    if max_steps < 1 or eval_every < 1:
        raise ValueError("max_steps and eval_every: expected at least 1 env step")
    from trim_rl.resources import project_folder

    checkpoint = Path(checkpoint) if checkpoint is not None else project_folder("checkpoints") / "trim_agg" / "trim_agg_b16"
    f = load_trees(trees)
    tree = ExportedPolicy(checkpoint)
    budget = float(tree.requested_budget if budget is None else budget)
    tol = budget_tolerance(budget)
    target = _score(f, tree.net, tree.builder(), budget)
    target["se"] = math.sqrt(target["accuracy"] * (1 - target["accuracy"]) / f.n_trees)
    tree_gens = generations_per_problem(trees)["tree_generations"]
    curve, t0 = [], time.perf_counter()

    def reached(p: dict) -> bool:
        return p["accuracy"] >= target["accuracy"] - target["se"] and p["cost_pct"] <= budget + tol

    with SimServer(seed=seed) as srv:
        def evaluate(model, cb) -> bool:
            agent_cfg, venv = cb.agent, cb.venv
            recent = cb.recent
            ref = sum(e["reference"] for e in recent)
            p = {"env_steps": int(model.num_timesteps), "episodes": cb.episodes,
                 "problems": cb.episodes + venv.num_envs + strong_ref_problems,
                 "generations": int(srv.backend.stats["prompts"]),
                 **_score(f, actor_net(model, agent_cfg), make_builder(agent_cfg.obs), budget),
                 "lam": float(cb.budget.lam),
                 "online_cost_pct": 100.0 * sum(e["strong_tokens"] for e in recent) / ref if ref else None,
                 "online_accuracy": float(sum(e["correct"] for e in recent) / len(recent)) if recent else None,
                 "wall_s": round(time.perf_counter() - t0, 1)}
            curve.append(p)
            if log is not None:
                log(f"{p['env_steps']} env steps, {p['problems']} problems: accuracy {p['accuracy']:.3f} at "
                    f"{p['cost_pct']:.1f}% ({p['accuracy_at_budget']:.3f} shifted to {budget:g}%); online "
                    f"{p['online_cost_pct'] or float('nan'):.1f}% at price {p['lam']:.3g}")
            return reached(p)

        with tempfile.TemporaryDirectory() as tmp:
            train_live(agent, problems=problems, budget=budget, seed=seed, runs=tmp,
                       hyperparams=[*hyperparams, f"total_timesteps:{max_steps}"], max_interventions=max_interventions,
                       checkpoint_every=max_steps + 1, strong_ref_problems=strong_ref_problems,
                       command=f"trim_rl.live.bench_online.problems_to_reach (seed {seed})",
                       weak_url=srv.url, strong_url=srv.url, prm_url=srv.url, weak_model="sim-weak",
                       strong_model="sim-strong", prm_model="sim-prm", max_tokens=4096,
                       callbacks=[_evaluating(eval_every, evaluate)])
    if not curve:
        raise ValueError(f"max_steps {max_steps}: less than one evaluation (eval_every {eval_every}) was trained")
    last = curve[-1]
    out = {"checkpoint": str(checkpoint), "budget": budget, "tolerance": tol, "trees": trees, "problem_set": problems,
           "agent": agent, "hyperparams": list(hyperparams), "seed": seed, "max_steps": max_steps,
           "eval_every": eval_every, "target": target, "curve": curve, "reached": reached(last),
           "problems": last["problems"], "online_generations": last["generations"],
           "tree_generations_per_problem": tree_gens, "tree_generations": last["problems"] * tree_gens,
           "seconds": last["wall_s"]}
    out["ratio"] = out["tree_generations"] / max(out["online_generations"], 1)
    if out["reached"]:
        out["gap"] = None
        out["message"] = (f"reached after {last['problems']} problems ({last['env_steps']} env steps): "
                          f"{last['generations']} generations online against {out['tree_generations']:.0f} "
                          f"to collect their trees")
    else:
        out["gap"] = {"accuracy": target["accuracy"] - target["se"] - last["accuracy"],
                      "cost_pct": last["cost_pct"] - (budget + tol)}
        out["message"] = (f"not reached within {last['problems']} problems ({last['env_steps']} env steps): accuracy "
                          f"{last['accuracy']:.3f} at {last['cost_pct']:.1f}% against {target['accuracy']:.3f} "
                          f"(-{target['se']:.3f}) at {budget:g}% (+{tol:.1f}%)")
    return out


def reach_lines(r: dict) -> list[str]:
    """:func:`problems_to_reach`'s result as ``bench online`` prints it: the target, the curve, the answer."""
    t, b = r["target"], r["budget"]
    lines = [f"online PPO from scratch ({r['agent']}, seed {r['seed']}) against {Path(r['checkpoint']).name} at "
             f"{b:g}% (+{r['tolerance']:.1f}), scored on {r['trees']}: target accuracy {t['accuracy']:.3f} "
             f"(-{t['se']:.3f}) at {t['cost_pct']:.1f}%",
             f"  {'env steps':>9} {'problems':>8} {'generations':>11} {'accuracy':>8} {'cost %':>6} "
             f"{'at ' + format(b, 'g') + '%':>7} {'online %':>8} {'price':>8}"]
    for p in r["curve"]:
        online = "" if p["online_cost_pct"] is None else f"{p['online_cost_pct']:.1f}"
        lines.append(f"  {p['env_steps']:>9,} {p['problems']:>8,} {p['generations']:>11,} {p['accuracy']:>8.3f} "
                     f"{p['cost_pct']:>6.1f} {p['accuracy_at_budget']:>7.3f} {online:>8} {p['lam']:>8.3g}")
    lines.append(f"  {r['message']}; the tree collector: {r['problems']:,} trees x "
                 f"{r['tree_generations_per_problem']:.0f} = {r['tree_generations']:,.0f} generations "
                 f"({r['ratio']:.0f}x online's {r['online_generations']:,})")
    return lines
