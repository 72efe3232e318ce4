"""Online training: MaskablePPO on :class:`~trim_rl.live.vec_env.LiveRoutingVecEnv`, against live servers.

``train.py --live --weak-url ... --strong-url ... --prm-url ... --problems PROBLEMS --budget 15`` trains
the agent YAML's network (from scratch, or ``--init-from`` a tree-trained checkpoint) on problems
solved by the servers as it routes them.  No trees: each step costs one weak draft, one scorer input,
and for a regenerate one strong step and one more scorer input.

Budget: a budget is, as offline, the strong tokens spent as a % of always-strong's.  Before training,
the strong model solves ``--strong-ref-problems`` (64) problems of the set alone and their mean strong
tokens are always-strong's; with 0, they are estimated per episode as ``strong tokens + kept weak
tokens x r`` (``r``: strong / weak tokens of the same step, measured on every regenerated step), which
undercounts them (strong solutions run more steps): a tree-trained 16% policy measured 22% that way
on the simulator.  The price follows the serving controller's update
(:class:`trim_rl.live.serve.control.PriceController`, one implementation) on that share, once per rollout
(:class:`_Budget`); ``--lam`` fixes the price instead.

The run folder is the offline one (``config.yml``, ``command.txt``, ``git_hash.txt``, ``tb/``,
``stages/online_ppo/`` (the policy at each checkpoint), ``model.zip`` + ``state.json`` (saved every
``--checkpoint-every`` env steps and on SIGINT/SIGTERM, for ``--resume``), ``policy/`` and
``result.json``) plus ``rollouts.jsonl``: every finished episode, appended at once, with each decision's
observation, mask, action and the behaviour policy's probability of it (the log
:mod:`trim_rl.evaluation.offpolicy` evaluates other policies on).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

from trim_rl.configs import ConfigError, parse_yaml
from trim_rl.data.problems import Problem
from trim_rl.evaluation.offpolicy import EpisodeLog, decision_row
from trim_rl.fsutil import write_json, write_text
from trim_rl.training.config import AgentConfig, agent_from_dict, apply_overrides, config_dict
from trim_rl.training.context import Interrupted, Target, make_logger, stop_on_signals

STAGE = "online_ppo"
LOG_NAME = "rollouts.jsonl"
LAM_BOUNDS = (1e-6, 1.0)


@dataclass
class LiveSpec:
    """What an online run routes: the servers (``live decode``'s URLs and options), the problems and the
    route's limits; recorded in ``config.yml`` (``live``) so ``--resume`` reconnects alike."""

    weak_url: str
    strong_url: str | None
    prm_url: str | None
    problems: str
    options: dict = field(default_factory=dict)
    max_interventions: int | None = None
    checkpoint_every: int = 2048
    strong_ref_problems: int = 64  # problems solved strong-only before training, to measure always-strong's tokens

    @property
    def name(self) -> str:
        """The run folder's env part: ``live-`` and the problem set."""
        stem = Path(self.problems).stem if self.problems.endswith((".jsonl", ".gz")) else self.problems
        return "live-" + stem.replace(":", "-").replace("/", "-")


def load_problem_spec(spec: str, flag: str = "--problems") -> list[Problem]:
    """``sim:PROFILE:SPLIT[:DRAWS]`` (the simulated backend's problems), a benchmark name, or a .jsonl file."""
    if spec.startswith("sim:"):
        from trim_rl.sim.backend import problems

        parts = spec.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and not parts[3].isdigit()):
            raise ConfigError(f"{flag}: {spec!r}: expected sim:PROFILE:SPLIT[:DRAWS], e.g. sim:math500:train:2")
        try:
            return problems(parts[1], parts[2], int(parts[3]) if len(parts) == 4 else 1)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            raise ConfigError(f"{flag}: {spec!r}: {exc}") from None
    from trim_rl.data.problems import load_problems

    if Path(spec).is_dir():
        raise ConfigError(f"{flag}: {spec}: is a folder, not a .jsonl file")
    try:
        out = load_problems(spec)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    if not out:
        raise ConfigError(f"{flag}: {spec}: no problems in it")
    return out


def check_online(agent: AgentConfig, spec: LiveSpec, target: Target) -> None:
    """Refuse what an online run cannot train, naming the flag, before any folder or server."""
    if agent.algo != "maskable_ppo":
        raise ConfigError(f"--live: agent {agent.name} ({agent.algo}) is not trained by PPO; use a TRIM-Agg / TRIM-Seq agent")
    if agent.budget_conditioned:
        raise ConfigError(f"--live: agent {agent.name} is budget-conditioned; online training holds one budget "
                          f"(train budget-conditioned policies on trees)")
    if (target.budget is None) == (target.lam is None):
        raise ConfigError("--live: give a --budget PCT (the price follows the measured spend) or a fixed --lam")
    if target.budget is not None and not (math.isfinite(target.budget) and 0 < target.budget < 100):
        raise ConfigError(f"--budget: {target.budget:g}: online, a budget is a share of always-strong's strong "
                          f"tokens in (0, 100)")
    if target.lam is not None and not (math.isfinite(target.lam) and 0 < target.lam <= 1):
        raise ConfigError(f"--lam: expected a price in (0, 1], got {target.lam}")
    if not spec.weak_url:
        raise ConfigError("--weak-url: needed with --live (the weak model drafts every step)")
    if not spec.strong_url:
        raise ConfigError("--strong-url: needed with --live (the strong model regenerates steps)")
    if spec.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every: expected at least 1 env step, got {spec.checkpoint_every}")
    rollout = int(agent.hyperparams.get("n_steps", 2048)) * agent.n_envs
    if agent.total_timesteps < rollout:
        raise ConfigError(f"total_timesteps: {agent.total_timesteps} is less than one rollout (n_steps x n_envs = "
                          f"{rollout})")
    if rollout // max(1, int(agent.hyperparams.get("batch_size", 64))) < 1 or rollout < 2:
        raise ConfigError(f"hyperparams.batch_size: larger than a rollout ({rollout} steps)")


def is_live_run(run_dir: str | Path) -> bool:
    """Was ``run_dir`` trained online (its ``config.yml`` has a ``live`` block)?"""
    path = Path(run_dir) / "config.yml"
    if not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and isinstance(data.get("live"), dict)


# -- training ------------------------------------------------------------------------------------
class _Budget:
    """Always-strong's tokens estimated online, and the price controller on the share spent of them.

    The controller sees one observation per rollout (its episodes' strong and reference tokens summed):
    the policy changes only at PPO's updates, so a price moved after every episode would integrate the
    same error hundreds of times before the policy could answer it (it ran to its bound in one rollout)."""

    WINDOW, RATE = 4, 0.5  # rollouts in the controller's window; step of log(price) per rollout, relative to the budget

    def __init__(self, budget: float | None, lam0: float, state: dict | None = None,
                 strong_only_tokens: float | None = None):
        from trim_rl.live.serve.control import PriceController

        #: always-strong's tokens per problem, measured before training (None: estimated per episode)
        self.strong_only = strong_only_tokens

        self.ctl = None if budget is None else PriceController(budget / 100.0, lam0, *LAM_BOUNDS, window=self.WINDOW,
                                                               rate=self.RATE)
        self.lam = lam0
        s = state or {}
        self.regen_strong, self.regen_weak = int(s.get("regen_strong", 0)), int(s.get("regen_weak", 0))
        if self.ctl is not None:
            self.ctl.window.extend(tuple(w) for w in s.get("window", []))
        self._strong = self._ref = 0.0

    @property
    def ratio(self) -> float:
        """Strong tokens per weak token of the same step (1 before any regenerate)."""
        return self.regen_strong / self.regen_weak if self.regen_weak else 1.0

    def reference(self, info: dict) -> float:
        """Always-strong's tokens on this episode's problem: measured (their mean over the reference
        problems), else estimated from the episode (its strong tokens plus its kept weak tokens x ratio)."""
        if self.strong_only:
            return self.strong_only
        return info["strong_tokens"] + info["kept_weak_tokens"] * self.ratio

    def observe(self, info: dict) -> None:
        """A finished episode: its regenerated steps refine the ratio, its tokens join the rollout's."""
        self.regen_strong += info["strong_tokens"]
        self.regen_weak += info["discarded_weak_tokens"]
        self._strong += info["strong_tokens"]
        self._ref += self.reference(info)

    def update(self) -> float:
        """The rollout ended: the price takes the controller's step on its spend; returns the price."""
        if self.ctl is not None and self._ref > 0:
            self.ctl.observe(round(self._strong), max(1, round(self._ref)))
            self.lam = self.ctl.price
        self._strong = self._ref = 0.0
        return self.lam

    def state(self) -> dict:
        return {"regen_strong": self.regen_strong, "regen_weak": self.regen_weak,
                "window": [list(w) for w in self.ctl.window] if self.ctl is not None else []}


def _callback(run_dir: Path, agent: AgentConfig, venv, budget: _Budget, spec: LiveSpec, stop, log: EpisodeLog,
              state: dict):
    from stable_baselines3.common.callbacks import BaseCallback

    from trim_rl.training.ppo_stage import save_model

    class OnlineCallback(BaseCallback):
        """Logs every episode (decisions included), updates the price, checkpoints, and stops on a signal."""

        def __init__(self):
            super().__init__()
            self.agent, self.venv, self.budget = agent, venv, budget  # what an extra callback may read
            self.open: list[list[dict]] = [[] for _ in range(venv.num_envs)]
            self.rollout: list[dict] = []
            self.episodes = int(state.get("episodes", 0))
            self.recent: list[dict] = list(state.get("recent", []))
            self.next_ckpt = int(state.get("timesteps", 0)) + spec.checkpoint_every
            self.t0, self.steps0 = time.perf_counter(), 0

        def _on_training_start(self) -> None:
            self.steps0 = self.model.num_timesteps

        def _on_step(self) -> bool:
            loc = self.locals
            obs = loc["obs_tensor"].cpu().numpy()
            actions = np.asarray(loc["actions"]).reshape(-1)
            probs = np.exp(loc["log_probs"].detach().cpu().numpy().reshape(-1))
            masks = loc.get("action_masks")
            masks = np.ones((len(actions), 2), dtype=bool) if masks is None else np.asarray(masks).reshape(-1, 2)
            for i, (info, done) in enumerate(zip(loc["infos"], loc["dones"])):
                self.open[i].append(decision_row(obs[i], masks[i], actions[i], probs[i], info.get("step_strong_tokens")))
                if done:
                    self._episode(info, self.open[i])
                    self.open[i] = []
            return not stop.is_set()

        def _episode(self, info: dict, decisions: list[dict]) -> None:
            self.episodes += 1
            keep = ("problem_id", "tree", "lam", "correct", "strong_tokens", "weak_tokens", "kept_weak_tokens",
                    "discarded_weak_tokens", "interventions", "steps", "wall_s", "finish", "dropped", "error")
            row = {k: info[k] for k in keep if k in info}
            row = {"episode": self.episodes, "timesteps": int(self.model.num_timesteps), **row, "decisions": decisions}
            log.write(row)
            if info.get("dropped"):
                return
            budget.observe(info)
            summary = {k: info[k] for k in ("correct", "strong_tokens", "interventions", "steps", "wall_s")}
            summary["reference"] = budget.reference(info)
            self.rollout.append(summary)
            self.recent = (self.recent + [summary])[-256:]

        def _on_rollout_end(self) -> None:
            eps = self.rollout
            if eps:
                ref = sum(e["reference"] for e in eps)
                self.logger.record("rollout/accuracy", float(np.mean([e["correct"] for e in eps])))
                self.logger.record("rollout/cost_pct", 100.0 * sum(e["strong_tokens"] for e in eps) / max(ref, 1e-9))
                self.logger.record("rollout/interventions", float(np.mean([e["interventions"] for e in eps])))
                self.logger.record("rollout/episode_wall_s", float(np.mean([e["wall_s"] for e in eps])))
            self.logger.record("rollout/episodes", len(eps))
            self.logger.record("rollout/lambda", float(budget.lam))  # the price this rollout was played at
            venv.set_attr("lam", budget.update())
            self.logger.record("rollout/dropped", int(venv.dropped))
            self.logger.record("rollout/strong_per_weak_token", float(budget.ratio))
            steps = self.model.num_timesteps - self.steps0
            self.logger.record("rollout/env_steps_per_s", steps / max(time.perf_counter() - self.t0, 1e-9))
            self.rollout = []
            if self.model.num_timesteps >= self.next_ckpt:
                self.checkpoint()
                self.next_ckpt = self.model.num_timesteps + spec.checkpoint_every

        def checkpoint(self) -> None:
            """``model.zip`` then ``state.json`` (renamed into place) and the policy so far in ``stages/``."""
            save_model(self.model, run_dir / "model.zip")
            write_json(run_dir / "state.json", self.state())
            _write_policy(run_dir / "stages" / STAGE, self.model, agent, budget.lam, run_dir, stage=True)

        def state(self) -> dict:
            return {"timesteps": int(self.model.num_timesteps), "lam": float(budget.lam), "episodes": self.episodes,
                    "strong_only_tokens": budget.strong_only,
                    "recent": self.recent, "dropped": int(venv.dropped), **budget.state()}

    return OnlineCallback()


def _write_policy(folder: Path, model, agent: AgentConfig, lam: float, run_dir: Path, stage: bool = False,
                  extra: dict | None = None) -> None:
    from trim_rl.agents.checkpoint import write_network_checkpoint
    from trim_rl.envs.observations import make_builder
    from trim_rl.training.ppo_stage import actor_net, network_meta
    from trim_rl.training.recipe import FAMILIES, _versions_light

    fam = FAMILIES[agent.obs] + (" (online, fine-tuned)" if agent.init_from else " (online PPO)")
    meta = {"family": fam + (" (online stage)" if stage else ""),
            "recipe": {"name": "online PPO", "stages": [STAGE], **({"init_from": agent.init_from} if agent.init_from else {})},
            "observation": make_builder(agent.obs).config(), "lam": float(lam), "lam_range": None, "budget": None,
            "network": network_meta(agent.obs, False, agent.policy_kwargs), "validation": None,
            "versions": _versions_light(), "source": {"run": str(run_dir), "online": True}, **(extra or {})}
    if stage:
        meta["stage"] = STAGE
    write_network_checkpoint(actor_net(model, agent), meta, folder)


def train_online(agent: AgentConfig, spec: LiveSpec, target: Target, seed: int = 0, runs_root: str | Path = "runs",
                 command: str | None = None, progress: bool = False, verbose: int = 0, backends=None,
                 callbacks: Sequence[Callable] = ()) -> Path:
    """Train ``agent`` online for ``target`` (see the module notes); returns the run folder.  ``backends``
    replaces the URLs' engines (tests); a run stopped before its first checkpoint removes its folder.
    ``callbacks``: factories of more SB3 callbacks, each called with the run's own callback (its
    ``episodes``, ``recent`` episodes, ``agent``, ``venv`` and ``budget``); one returning False stops
    learning as a finished run."""
    from trim_rl.training.checks import check_seed
    from trim_rl.training.run import RunLock, _versions, git_hash, new_run_dir, write_run_record
    from trim_rl.training.warm_start import load_init_from

    check_seed(seed, "--seed")
    check_online(agent, spec, target)
    problems = load_problem_spec(spec.problems)
    init = load_init_from(agent)
    backends = backends or _backends(spec)
    run_dir = new_run_dir(Path(runs_root), agent, SimpleNamespace(name=spec.name), target, seed)
    try:
        cfg = {"agent": config_dict(agent), "env": {"name": spec.name, "live": True}, "target": target.to_dict(),
               "seed": int(seed), "live": asdict(spec), "git": git_hash(), "versions": _versions()}
        write_run_record(run_dir, cfg, command)
        with RunLock(run_dir):
            _run(run_dir, agent, spec, target, seed, problems, backends, init, None, progress, verbose, callbacks)
    except BaseException as exc:
        if not (run_dir / "state.json").exists() and not (run_dir / "policy").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            if isinstance(exc, (Interrupted, KeyboardInterrupt)):
                raise Interrupted(run_dir, resumable=False, removed=True) from None
        raise
    return run_dir


def resume_online(run_dir: str | Path, overrides: list[str] | None = None, command: str | None = None,
                  progress: bool = False, verbose: int = 0, backends=None) -> Path:
    """Continue an online run from ``model.zip`` + ``state.json`` (``overrides``: ``--hyperparams``, e.g.
    ``total_timesteps:N`` to extend a finished one); a finished run raises ``AlreadyFinished``."""
    from trim_rl.training.run import AlreadyFinished, RunLock, _check_zip, append_command

    run_dir = Path(run_dir)
    data = parse_yaml((run_dir / "config.yml").read_text(encoding="utf-8"), str(run_dir / "config.yml")) or {}
    try:
        agent = agent_from_dict(data["agent"], f"{run_dir / 'config.yml'} (agent)")
        spec = LiveSpec(**data["live"])
        t = data.get("target") or {}
        target, seed = Target(t.get("budget"), t.get("lam")), int(data["seed"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{run_dir / 'config.yml'}: not an online run's config (missing or bad {exc})") from None
    if overrides:
        agent = agent_from_dict(apply_overrides(config_dict(agent), overrides), "--hyperparams")
    try:
        state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
        done = int(state["timesteps"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir}: no saved training state (state.json): it stopped before its first "
                                f"checkpoint; start a new run (its command is in {run_dir / 'command.txt'})") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{run_dir / 'state.json'}: damaged (no readable timesteps); the run cannot be resumed") from None
    if (run_dir / "policy" / "policy.json").is_file() and (run_dir / "result.json").is_file() \
            and done >= agent.total_timesteps:
        raise AlreadyFinished(run_dir, done)
    _check_zip(run_dir / "model.zip")
    check_online(agent, spec, target)
    problems = load_problem_spec(spec.problems)
    backends = backends or _backends(spec)
    with RunLock(run_dir):
        if overrides:
            data["agent"] = config_dict(agent)
            write_text(run_dir / "config.yml", yaml.safe_dump(data, sort_keys=False))
        append_command(run_dir, command)
        _run(run_dir, agent, spec, target, seed, problems, backends, None, state, progress, verbose)
    return run_dir


def _backends(spec: LiveSpec):
    from trim_rl.live.env import backends_from_urls

    try:
        return backends_from_urls(spec.weak_url, spec.strong_url, spec.prm_url, spec.options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class ServersFailed(RuntimeError):
    """The servers failed every problem in a row; the run's state was saved when it had any."""

    def __init__(self, run_dir: Path, message: str, resumable: bool):
        super().__init__(message)
        self.run_dir, self.resumable = Path(run_dir), resumable


def _measure_strong_only(backends, problems, spec: LiveSpec, seed: int, run_dir: Path) -> float | None:
    """Always-strong's tokens per problem on a seeded sample of the problem set (also written to the run's
    ``strong_only.json``); None when every reference problem failed."""
    from trim_rl.live.env import strong_only_tokens
    from trim_rl.live.routing import Limits

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(problems))[: spec.strong_ref_problems]
    t0 = time.time()
    mean, n = strong_only_tokens(backends, [problems[i] for i in pick], Limits(max_interventions=spec.max_interventions),
                                 seed)
    write_json(run_dir / "strong_only.json", {"strong_tokens_per_problem": mean if n else None, "problems": n,
                                               "seconds": round(time.time() - t0, 1)})
    return mean if n else None


def _run(run_dir: Path, agent: AgentConfig, spec: LiveSpec, target: Target, seed: int, problems, backends, init,
         state: dict | None, progress: bool, verbose: int, extra: Sequence[Callable] = ()) -> None:
    import torch
    from stable_baselines3.common.utils import set_random_seed

    from trim_rl.live.env import BackendDown
    from trim_rl.live.vec_env import LiveRoutingVecEnv
    from trim_rl.training.ppo_stage import copy_actor_in, make_model, save_model
    from trim_rl.training.recipe import load_model

    torch.set_num_threads(1)
    set_random_seed(seed)
    net, init_lam = init or (None, None)
    lam0 = float(state["lam"]) if state else float(target.lam or init_lam or 1e-3)
    strong_only = (state or {}).get("strong_only_tokens")
    if strong_only is None and target.budget is not None and spec.strong_ref_problems > 0:
        strong_only = _measure_strong_only(backends, problems, spec, seed, run_dir)
    budget = _Budget(target.budget, lam0, state, strong_only)
    venv = LiveRoutingVecEnv(backends, problems, num_envs=agent.n_envs, lam=min(max(lam0, LAM_BOUNDS[0]), 1.0),
                             obs=agent.obs, max_interventions=spec.max_interventions)
    if state is not None:
        model = load_model(run_dir / "model.zip", venv, agent)
    else:
        model = make_model(agent, venv, seed, verbose)
        if net is not None:
            copy_actor_in(model, net)
        elif agent.initial_regen_prob != 0.5:
            p0 = agent.initial_regen_prob
            with torch.no_grad():
                model.policy.action_net.bias.copy_(torch.tensor([0.0, float(np.log(p0 / (1.0 - p0)))]))
    # a resumed run goes on with the problem stream where a fresh seed puts it: the seed plus the
    # episodes done, so it neither replays the same order nor needs the old stream's position (seeded
    # after the model, whose load re-seeds the env with the seed it was saved with)
    venv.seed(seed + (int(state.get("episodes", 0)) if state else 0))
    logger = make_logger(run_dir / "tb", verbose)
    model.set_logger(logger)
    behaviour = {"policy": "online PPO (stochastic)", "run": str(run_dir), "obs": agent.obs}
    log = EpisodeLog(run_dir / LOG_NAME, behaviour)
    t_start = time.time()
    with stop_on_signals() as stop:
        cb = _callback(run_dir, agent, venv, budget, spec, stop, log, state or {})
        callbacks = [cb, *(make(cb) for make in extra)]
        if progress:
            from stable_baselines3.common.callbacks import ProgressBarCallback

            callbacks.append(ProgressBarCallback())
        remaining = max(0, agent.total_timesteps - int(model.num_timesteps))
        try:
            if remaining:
                model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=state is None,
                            progress_bar=False)
            save_model(model, run_dir / "model.zip")
            write_json(run_dir / "state.json", cb.state())
        except BackendDown as exc:  # keep what was learnt: the run resumes once the servers are back
            if model.num_timesteps:
                save_model(model, run_dir / "model.zip")
                write_json(run_dir / "state.json", cb.state())
            raise ServersFailed(run_dir, str(exc), (run_dir / "state.json").exists()) from None
        finally:
            log.close()
            venv.close()
        if stop.is_set():
            raise Interrupted(run_dir, resumable=True)
    recent = cb.recent
    ref = sum(e["reference"] for e in recent)
    result = {"requested_budget": target.budget, "lam": float(budget.lam),
              "online_cost_pct": 100.0 * sum(e["strong_tokens"] for e in recent) / ref if ref else None,
              "online_accuracy": float(np.mean([e["correct"] for e in recent])) if recent else None,
              "window_episodes": len(recent), "episodes": cb.episodes, "dropped": int(venv.dropped),
              "timesteps": int(model.num_timesteps), "problems": spec.problems,
              "strong_only_tokens": budget.strong_only}
    _write_policy(run_dir / "policy", model, agent, budget.lam, run_dir, extra={
        "budget": ({"requested": target.budget, "lam": float(budget.lam), "online_cost_pct": result["online_cost_pct"],
                    "measured_on": f"the last {len(recent)} online episodes ({spec.problems})"}
                   if target.budget is not None else None)})
    for k in ("online_cost_pct", "online_accuracy", "lam"):
        if result.get(k) is not None:
            logger.record(f"budget/{k}", float(result[k]))
    logger.dump(int(model.num_timesteps))
    logger.close()
    write_json(run_dir / "result.json", result)
    stats = {"seconds": round(time.time() - t_start, 1), "timesteps": int(model.num_timesteps),
             "env_steps_per_s": round(remaining / max(time.time() - t_start, 1e-9), 1)}
    write_json(run_dir / "train_stats.json", stats)
    cfg = yaml.safe_load((run_dir / "config.yml").read_text(encoding="utf-8")) or {}
    cfg["result"] = {k: result[k] for k in ("requested_budget", "lam", "online_cost_pct", "online_accuracy")}
    write_text(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))


# -- train.py --live -----------------------------------------------------------------------------
LIVE_FLAGS = ("weak_url", "strong_url", "prm_url", "problems", "weak_model", "strong_model", "prm_model", "prm",
              "max_tokens", "max_interventions", "checkpoint_every", "strong_ref_problems", "live_option")


def add_live_flags(ap) -> None:
    """The ``--live`` flag group of ``train.py``."""
    g = ap.add_argument_group("online training against live servers (--live; see docs/training.md)")
    g.add_argument("--live", action="store_true",
                   help="train MaskablePPO online on problems solved by live weak / strong / scorer servers (no trees); "
                        "every episode is logged to RUN/rollouts.jsonl")
    g.add_argument("--weak-url", help="weak model server (as live decode's; comma-separated replicas)")
    g.add_argument("--strong-url", help="strong model server")
    g.add_argument("--prm-url", help="step scorer server (vllm /pooling PRM, or a completions server with --prm self-verify)")
    g.add_argument("--weak-model", help="model name sent to the weak server")
    g.add_argument("--strong-model", help="model name sent to the strong server")
    g.add_argument("--prm-model", help="model name sent to the scorer's server")
    g.add_argument("--prm", choices=("vllm", "self-verify"), help="step scorer kind (default vllm)")
    g.add_argument("--problems", help="problems: a benchmark name, a .jsonl file, or sim:PROFILE:SPLIT[:DRAWS] for "
                                      "the simulated backend's")
    g.add_argument("--max-tokens", type=int, help="most tokens per step (default 256)")
    g.add_argument("--max-interventions", type=int, help="most regenerated steps per problem (default: no limit)")
    g.add_argument("--checkpoint-every", type=int, help="env steps between checkpoints (default 2048)")
    g.add_argument("--strong-ref-problems", type=int,
                   help="problems the strong model solves alone before training, to measure always-strong's tokens "
                        "(the budget's unit; default 64; 0: estimate them per episode instead, which undercounts)")
    g.add_argument("--live-option", action="append", metavar="KEY=VALUE",
                   help="any other live decode setting by its name (timeout=60, retries=5, weak_temperature=0.7); "
                        "repeatable")


def live_flags_given(args) -> list[str]:
    return [f"--{k.replace('_', '-')}" for k in LIVE_FLAGS if getattr(args, k, None) is not None]


def live_settings(args) -> dict:
    """``train.py``'s ``--live`` flags as :func:`trim_rl.train`'s ``live`` mapping (the flags given, and
    each ``--live-option KEY=VALUE`` with VALUE read as YAML); the values are checked by :func:`train_live`."""
    from trim_rl.live.backends import BackendConfig

    settings: dict = {}
    for item in args.live_option or []:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        names = BackendConfig.option_names()
        if not eq or key not in names:
            raise ConfigError(f"--live-option {item!r}: expected KEY=VALUE with KEY one of {', '.join(names)}")
        try:
            settings[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            settings[key] = text
    settings.update({k: getattr(args, k) for k in LIVE_FLAGS if k != "live_option" and getattr(args, k) is not None})
    return settings


def _at_least(value, lo: int, flag: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < lo):
        raise ConfigError(f"{flag}: expected at least {lo}, got {value}")


def servers_failed_line(exc, prog: str) -> str:
    """The one line of servers that failed (not a usage error), with what was saved of the run."""
    where = ""
    if isinstance(exc, ServersFailed):
        where = (f"; the run's state is saved in {exc.run_dir} (resume with: {prog} --resume {exc.run_dir})"
                 if exc.resumable else f"; nothing was saved ({exc.run_dir} removed)")
    return f"{prog}: the servers failed: {str(exc).splitlines()[0]}{where}"


def train_live(agent: str | Path = "trim_agg", *, weak_url: str | None = None, strong_url: str | None = None,
               prm_url: str | None = None, problems: str | None = None, budget: float | None = None,
               lam: float | None = None, seed: int = 0, runs: str | Path = "runs", hyperparams: list[str] | tuple = (),
               init_from: str | Path | None = None, max_interventions: int | None = None, checkpoint_every: int = 2048,
               strong_ref_problems: int = 64, progress: bool = False, verbose: int = 0, command: str | None = None,
               callbacks: Sequence[Callable] = (), **options) -> Path:
    """``train.py --live`` from Python (:func:`trim_rl.train` with ``live=`` calls it); returns the run
    folder.  ``options`` are ``live decode``'s other settings by name (``weak_model``, ``max_tokens``,
    ``retries``, ...; see :class:`trim_rl.live.backends.BackendConfig`).  Everything is checked before any
    folder is made or server called: a ``ConfigError`` naming the flag of ``train.py`` (``--problems``)."""
    from trim_rl.live.backends import BackendConfig
    from trim_rl.resources import config_file
    from trim_rl.training.config import load_agent
    from trim_rl.training.warm_start import apply_init_from

    unknown = sorted(set(options) - set(BackendConfig.option_names()))
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a live decode setting "
                          f"(expected one of {', '.join(BackendConfig.option_names())})")
    _at_least(options.get("max_tokens"), 1, "--max-tokens")
    _at_least(max_interventions, 0, "--max-interventions")
    if not problems:
        raise ConfigError("--problems: needed with --live (a benchmark name, a .jsonl file, or sim:PROFILE:SPLIT[:DRAWS] "
                          "for the simulated backend)")
    _at_least(strong_ref_problems, 0, "--strong-ref-problems")
    a = load_agent(config_file("agents", agent), list(hyperparams))
    if init_from is not None:
        apply_init_from(a, init_from, "--init-from")
    a.recipe = ["ppo"]  # online, PPO is the whole recipe (policy iteration needs trees)
    spec = LiveSpec(weak_url, strong_url, prm_url, problems, dict(options), max_interventions, checkpoint_every,
                    strong_ref_problems)
    return train_online(a, spec, Target(budget, lam), seed, runs, command, progress=progress, verbose=verbose,
                        callbacks=callbacks)
