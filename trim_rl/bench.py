"""Speed benchmarks, measured side by side in one run (``python -m trim_rl.bench env``).

Timings on shared machines are noisy: every figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from trim_rl.argtypes import (add_agent_env, add_command, add_hyperparams, add_limit, add_max_steps, add_max_tokens,
                              add_problems, int_at_least)
from trim_rl.data.problems import load_problems
from trim_rl.envs.routing_env import RoutingEnv
from trim_rl.evaluation.robustness import DEFAULT_LAMS
from trim_rl.live.backend_stats import batching_ceiling, ceiling_line, llama_slots
from trim_rl.live.bench import DEFAULT_POLICIES, decision_times, defaults_throughput, throughput
from trim_rl.live.prm import VERIFY_PROMPTS
from trim_rl.live.serve.bench import main as serve_main
from trim_rl.sim.bundled import load_trees


def _steps_per_second(venv, actions: np.ndarray) -> float:
    venv.seed(0)
    venv.reset()
    t0 = time.perf_counter()
    for a in actions:
        venv.step(a)
    return actions.size / (time.perf_counter() - t0)  # actions has shape (steps, envs)


def bench_env(trees: str, n_envs: int, steps: int, repeats: int, obs: str) -> dict:
    """Env steps per second of RoutingVecEnv and of DummyVecEnv over the same RoutingEnvs."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    # trim_rl.envs.vec_env imports stable_baselines3
    from trim_rl.envs.vec_env import RoutingVecEnv

    f = load_trees(trees)
    rng = np.random.default_rng(0)
    actions = (rng.random((steps, n_envs)) < 0.2).astype(np.int64)
    batched = RoutingVecEnv(f, n_envs, obs=obs)
    dummy = DummyVecEnv([lambda: RoutingEnv(f, obs=obs) for _ in range(n_envs)])
    dummy_steps = max(20, steps // 20)
    fast, slow = [], []
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        fast.append(_steps_per_second(batched, actions))
        slow.append(_steps_per_second(dummy, actions[:dummy_steps]))
    return {"batched": statistics.median(fast), "dummy": statistics.median(slow),
            "ratio": statistics.median(fast) / statistics.median(slow)}


def bench_train(agent_yaml: str, env_yaml: str, budget: float | None, grid: bool, out: str, repeats: int = 1,
                hyperparams: list[str] | None = None) -> dict:
    """Wall time of training one budget (every stage and the tree loading included), or of the env
    YAML's whole budget grid, median of ``repeats`` runs, with each stage's seconds."""
    import json

    # trim_rl.api imports torch
    from trim_rl import api

    walls, stages = [], []
    for i in range(int(repeats)):
        t0 = time.perf_counter()
        if grid:
            runs = api.train(agent_yaml, env_yaml, budget_grid=[], runs=f"{out}/{i}", hyperparams=hyperparams or [])
        else:
            runs = [api.train(agent_yaml, env_yaml, budget=budget, runs=f"{out}/{i}", hyperparams=hyperparams or [])]
        walls.append(time.perf_counter() - t0)
        stages.append([json.loads((r.path / "train_stats.json").read_text()) for r in runs])
    i = int(np.argsort(walls)[len(walls) // 2])
    return {"runs": [str(r) for r in runs], "wall_s": statistics.median(walls), "stages": stages[i],
            "budgets": len(stages[i])}


def bench_pomdp(trees: str, lams: list[float], repeats: int) -> dict:
    """Seconds to solve TRIM-POMDP for one budget and for the whole grid (fitting excluded, timed
    once), medians of ``repeats`` runs; numpy's thread pools are limited to one thread."""
    from threadpoolctl import threadpool_limits

    # trim_rl.agents.pomdp imports scipy
    from trim_rl.agents.pomdp.fit import fit_model
    from trim_rl.agents.pomdp.solver import solve

    f = load_trees(trees)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        model = fit_model(f, source=trees)
        fit_s = time.perf_counter() - t0
        one, grid = [], []
        mid = lams[len(lams) // 2]
        for _ in range(repeats):
            t0 = time.perf_counter()
            solve(model, mid)
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for lam in lams:
                solve(model, lam)
            grid.append(time.perf_counter() - t0)
    return {"fit_s": fit_s, "one_s": statistics.median(one), "grid_s": statistics.median(grid), "lam": mid}


def _repeats(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--repeats", type=int, default=default,
                        help=f"timing runs; the median is reported (default {default})")


def _backend_flags(parser: argparse.ArgumentParser, url_help: str, slots: int | None, slots_help: str,
                   policy_help: str, problems_of: str) -> None:
    """The flags of the benchmarks that run against llama.cpp's llama-server (or a given --url)."""
    parser.add_argument("--url", help=url_help)
    parser.add_argument("--slots", type=int, default=slots, help=slots_help)
    parser.add_argument("--threads", type=int, default=1, help="threads of that llama-server (default 1)")
    parser.add_argument("--ctx", type=int, default=2048, help="context of each of its slots, in tokens (default 2048)")
    parser.add_argument("--policy", default="checkpoints/trim_agg/trim_agg_b20", help=policy_help)
    parser.add_argument("--verify-prompt", nargs="+", choices=VERIFY_PROMPTS, default=["separate"],
                        help="the self-verify question's layout(s), as live decode's --verify-prompt; two run the "
                             "comparison once per layout in this one run, side by side (default separate)")
    add_problems(parser, f"problems {problems_of}: ")


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.bench") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = add_command(sub, "env", env_command, "batched VecEnv vs DummyVecEnv steps per second")
    e.add_argument("--trees", default="sim:math500:test", help="tree file or sim:PROFILE:SPLIT (default the bundled test trees)")
    e.add_argument("--envs", type=int, default=256, help="number of parallel episodes (default 256)")
    e.add_argument("--steps", type=int, default=2000, help="vector steps per timing run of the batched env (default 2000; "
                                                            "the DummyVecEnv runs 1/20 of them)")
    _repeats(e, 5)
    e.add_argument("--obs", default="agg", choices=["agg", "seq"], help="observation builder (default agg)")
    t = add_command(sub, "train", train_command, "wall time of training one budget, or the whole budget grid")
    add_agent_env(t)
    t.add_argument("--budget", type=float, default=None, help="budget in %% (default: the env YAML's budget)")
    t.add_argument("--grid", action="store_true", help="train the env YAML's whole budget_grid instead")
    _repeats(t, 1)
    add_hyperparams(t)
    t.add_argument("--runs", default="runs/bench", help="run folder root (default runs/bench)")
    p = add_command(sub, "pomdp", pomdp_command, "seconds to solve TRIM-POMDP for one budget and for the lambda grid")
    p.add_argument("--trees", default="sim:math500:train", help="training trees (default sim:math500:train)")
    p.add_argument("--lams", nargs="*", type=float, default=list(DEFAULT_LAMS),
                   help="lambda grid (default: the 14 budgets of agents/trim_pomdp.yaml)")
    _repeats(p, 3)
    lv = add_command(sub, "live", live_command,
                     "router decision time per step; hybrid vs weak-only vs strong-only problems/s")
    lv.add_argument("--steps", type=int, default=2000, help="decisions per timing run (default 2000)")
    _repeats(lv, 5)
    _backend_flags(lv, "OpenAI-compatible server(s) for throughput, e.g. a llama-server with several --parallel "
                       "slots, or the URL list that python -m trim_rl.live serve-local prints",
                   None, "without --url: start a llama-server with this many slots and SmolLM2-135M and measure "
                         "throughput against it", "router of the hybrid throughput run", "of the throughput run")
    add_limit(lv, default=8, where=" in each throughput run")
    add_max_tokens(lv, 64, where=" in the throughput run")
    add_max_steps(lv, 8, where=" in the throughput run")
    sv = add_command(sub, "serve", serve_command, "the step-routing server: batching vs one at a time vs strong-only")
    _backend_flags(sv, "OpenAI-compatible server(s) for the weak and strong model and the self-verify scorer "
                       "(default: start a llama-server with --slots slots and SmolLM2-135M)",
                   4, "slots of the llama-server started without --url (default 4)", "the routed policy",
                   "of the requests")
    sv.add_argument("--requests", type=int, default=16, help="requests per mode against llama.cpp (default 16)")
    sv.add_argument("--overhead-requests", type=int, default=512,
                    help="requests of the overhead run against an instant backend (default 512)")
    sv.add_argument("--overhead-concurrency", type=int, default=64, help="at once in the overhead run (default 64)")
    add_max_tokens(sv, 16)
    add_max_steps(sv, 3)
    sv.add_argument("--target-share", type=float, help="also run --target-strong-share at this share")
    sv.add_argument("--compare", action="store_true",
                    help="instead: weak SmolLM2-135M and strong Gemma 3 270M (a llama-server each, --slots slots): "
                         "TRIM-Thr at 0.3 / 0.5 / 0.7 and TRIM-Agg at 8 / 16 / 30%% against strong-only and "
                         "weak-only through serve (requests/s, p50 / p95 latency, strong-token share)")
    sv.add_argument("--budget-policy", default="checkpoints/trim_agg_budget",
                    help="budget-conditioned checkpoint of the --target-share run")
    sv.add_argument("--control-requests", type=int, default=128, help="requests of the --target-share stream")
    sv.add_argument("--control-concurrency", type=int, default=16, help="in flight in the --target-share stream")
    o = add_command(sub, "online", online_command,
                    "live env steps/s vs live decode; generations per problem online vs a tree")
    o.add_argument("--problems", type=int, default=256, help="simulated problems per timing run (default 256)")
    o.add_argument("--envs", type=int, default=32, help="problems stepped at once (default 32)")
    _repeats(o, 3)
    o.add_argument("--scratch-steps", type=_scratch_steps, default=0, metavar="N",
                   help="also train online PPO from scratch (trim_agg_scratch) for at most N env steps against the "
                        "simulated backend, scored every --scratch-every steps on the sim test trees, and report the "
                        "problems it needs to reach --scratch-checkpoint's accuracy at its budget next to the "
                        "generations of their trees (0: skip, the default; at least 2048, one PPO rollout of 32 envs "
                        "x 64 steps; 262144 takes about 17 minutes on 2 cores)")
    o.add_argument("--scratch-every", type=int_at_least(1), default=8192, metavar="N",
                   help="env steps between those evaluations (default 8192)")
    o.add_argument("--scratch-checkpoint", metavar="DIR",
                   help="the tree-trained checkpoint to reach (default checkpoints/trim_agg/trim_agg_b16)")
    args = ap.parse_args(argv)
    return COMMANDS[args.cmd](args)


def _scratch_steps(text: str) -> int:
    """``--scratch-steps``: 0 (skip) or at least one PPO rollout."""
    n = int_at_least(0)(text)
    if 0 < n < 2048:
        raise argparse.ArgumentTypeError(f"expected 0 (skip) or at least 2048 (one PPO rollout: 32 envs x 64 steps), "
                                         f"got {n}")
    return n


def env_command(args) -> int:
    """Env steps per second (one env step = one decision in one episode) of the numpy-batched
    RoutingVecEnv and of SB3's DummyVecEnv over the same number of RoutingEnvs, on the same trees and
    actions; prints the median ratio last."""
    import torch

    torch.set_num_threads(1)
    r = bench_env(args.trees, args.envs, args.steps, args.repeats, args.obs)
    print(f"envs: {args.envs}, obs: {args.obs}, median of {args.repeats} runs")
    print(f"RoutingVecEnv (batched numpy): {r['batched']:,.0f} env steps/s")
    print(f"DummyVecEnv over RoutingEnv:   {r['dummy']:,.0f} env steps/s")
    print(f"ratio: {r['ratio']:.1f}")
    return 0


def train_command(args) -> int:
    """Train one budget (or, with --grid, the env YAML's budget grid, one process per core) with the
    given agent and print the wall time, tree loading and every stage included, and each stage's seconds;
    the median of --repeats runs."""
    r = bench_train(args.agent, args.env, args.budget, args.grid, args.runs, args.repeats, args.hyperparams)
    for run, st in zip(r["runs"], r["stages"]):
        parts = ", ".join(f"{k.replace('_seconds', '')} {v:.0f} s" for k, v in st.items() if k.endswith("seconds"))
        print(f"run: {run}  ({parts})")
    what = f"the grid of {r['budgets']} budgets" if args.grid else "one budget"
    print(f"wall time of {what}, every stage and tree loading included: {r['wall_s']:.0f} s "
          f"(median of {args.repeats})")
    return 0


def pomdp_command(args) -> int:
    """Fit TRIM-POMDP on the training trees once, then time value iteration (and the policy table) for
    one budget and for every lambda of the grid on one core; prints the medians of --repeats runs."""
    r = bench_pomdp(args.trees, args.lams, args.repeats)
    print(f"fit on {args.trees}: {r['fit_s']:.1f} s (once)")
    print(f"solve one budget (lambda {r['lam']:g}): {r['one_s']:.2f} s, median of {args.repeats} runs, one core")
    print(f"solve the grid ({len(args.lams)} budgets): {r['grid_s']:.1f} s, median of {args.repeats} runs, one core")
    return 0


def live_command(args) -> int:
    """Time each router's decision (observation building + predict) per step on one core, median of
    --repeats runs; with --url also decode --limit problems with hybrid routing, weak-only and
    strong-only against that server and print problems per second and their ratios, what the backend
    alone gains from batching (the ceiling of what follows), then the decoder's and the collector's step
    generations per second at the new throughput defaults against the old ones and one at a time."""
    times = decision_times(DEFAULT_POLICIES, args.steps, args.repeats)
    print(f"router decision time per step (one core, median of {args.repeats} runs of {args.steps} decisions):")
    for name, ms in times.items():
        print(f"  {name:<11} {ms:.4f} ms  ({DEFAULT_POLICIES[name]})")
    server = None
    if args.url is None and args.slots:
        from trim_rl.live.local import LlamaCppServer

        server = LlamaCppServer(parallel=args.slots, n_ctx=args.ctx, n_threads=args.threads)
        args.url = server.start()
        print(f"llama-server: {args.slots} slots of {args.ctx} tokens, {server.n_threads} threads, "
              f"{server.model.name}", flush=True)
    try:
        if args.url:
            _live_throughput(args)
    finally:
        if server is not None:
            server.stop()
    return 0


def serve_command(args) -> int:
    """Start python -m trim_rl.live serve in front of llama.cpp's llama-server (--slots slots decoded
    together, or --url) and send the same GSM8K requests through OpenAI's client with continuous batching
    (all at once), one at a time, and strong-only; print requests/s, p50 latency, the router +
    scheduler time per step and what the backend alone gains from batching; with --target-share also
    how closely --target-strong-share holds it on a stream."""
    return serve_main(args)


def online_command(args) -> int:
    """Against the simulated backend (no latency): env steps per second of LiveRoutingVecEnv next to live
    decode's steps per second, TRIM-Thr(0.5) on the same problems (medians of --repeats, the ratio last);
    then what one problem costs in generations online (one episode) next to collecting its tree; with
    --scratch-steps, how many problems online PPO from scratch needs to reach a tree-trained checkpoint."""
    from trim_rl.live.bench_online import env_vs_decode, generations_per_problem, problems_to_reach, reach_lines

    r = env_vs_decode(args.problems, args.envs, args.repeats)
    print(f"simulated backend, {r['problems']} problems, {r['envs']} at once, TRIM-Thr(0.5), median of {r['repeats']}:")
    print(f"  LiveRoutingVecEnv: {r['env_steps_s']:,.0f} env steps/s")
    print(f"  live decode:       {r['decode_steps_s']:,.0f} steps/s")
    print(f"  ratio env / decode: {r['ratio']:.2f}")
    g = generations_per_problem()
    print(f"generations per problem ({g['trees']}): its tree {g['tree_generations']:.1f} (+ as many PRM calls), "
          f"one online episode {g['online_generations']:.1f} (+ as many PRM calls): {g['ratio']:.1f}x")
    if args.scratch_steps:
        r = problems_to_reach(args.scratch_checkpoint, max_steps=args.scratch_steps, eval_every=args.scratch_every,
                              log=lambda line: print("  " + line, file=sys.stderr, flush=True))
        print("\n".join(reach_lines(r)))
    return 0


COMMANDS = {"env": env_command, "train": train_command, "pomdp": pomdp_command, "live": live_command,
            "serve": serve_command, "online": online_command}


def _live_throughput(args) -> None:
    """``bench live --url``: hybrid vs weak-only vs strong-only, then old vs new throughput defaults."""
    r = throughput(args.url, args.policy, args.problems, args.limit, args.max_tokens, args.max_steps,
                   max(1, min(3, args.repeats)))
    print(f"problems/s on {args.url} ({args.limit} {args.problems} problems):")
    for mode, v in r.items():
        print(f"  {mode:<12} {v:.3f}")
    print(f"ratio hybrid/weak-only: {r['hybrid'] / r['weak-only']:.2f}, "
          f"hybrid/strong-only: {r['hybrid'] / r['strong-only']:.2f}")
    reps = max(1, min(3, args.repeats))
    print(ceiling_line(batching_ceiling(args.url, [p.problem for p in load_problems(args.problems)[: args.limit]],
                                        args.max_tokens), args.limit, args.max_tokens), flush=True)
    if llama_slots(args.url) is not None:  # the runs below flush them (trim_rl.live.bench)
        print("every run below starts from empty prompt caches (each llama-server slot flushed first)")
    for layout in args.verify_prompt:
        _defaults_throughput(args, reps, layout)


def _defaults_throughput(args, reps: int, layout: str) -> None:
    d = defaults_throughput(args.url, args.problems, args.limit, args.max_tokens, args.max_steps, reps, layout)
    print(f"step generations/s, old throughput defaults (16 in flight per server, batch 8, chunk 4) vs new "
          f"(256, 256, 64) vs one request at a time (1, 1, 1), median of {reps} interleaved runs; self-verify "
          f"question: {layout}:")
    backend = d.pop("backend", None)
    for what, by in d.items():
        print(f"  {what:<8} old {by['old']:.3f}  new {by['new']:.3f}  ratio new/old: {by['new'] / by['old']:.2f}  "
              f"one at a time {by['one']:.3f}  ratio new/one: {by['new'] / by['one']:.2f}")
    if backend:
        print("llama-server's own time per run (medians; prompt tokens computed, not cached; slot-seconds):")
        for what, by in backend.items():
            for name, b in by.items():
                print(f"  {what:<8} {name:<4} prompt {b['prompt_tokens']:.0f} tok {b['prompt_s']:.0f} s, generated "
                      f"{b['generated_tokens']:.0f} tok {b['generation_s']:.0f} s, {b['decode_calls']:.0f} decode calls "
                      f"of {b['busy_slots_per_call']:.2f} busy slots")


if __name__ == "__main__":
    sys.exit(main())
