"""The stages of a training recipe, run in order into a run folder (see :mod:`trim_rl.training.run`).

* ``policy_iteration`` (:mod:`trim_rl.training.policy_iteration`): exact-value policy iteration on the
  training trees, in the agent's MLP; for a budget the price is re-solved every round.
* ``seq_policy_iteration`` (:mod:`trim_rl.training.seq_iteration`): policy iteration again, from that
  policy, in the agent's own transformer over the ``seq`` observation (so it can use what the step
  sequence holds beyond ``agg``; ``docs/research/seq_observation.md``).
* ``distill`` (:mod:`trim_rl.training.distill`): that policy copied into a network over another
  observation (TRIM-Seq's transformer).
* ``ppo``: MaskablePPO fine-tuning (or training from scratch when it is the only stage) on the
  batched env at the stage's price, scored on held-out trees at every validation pass.

After the last stage a budget run shifts its regenerate logit so that its spend on the calibration
trees is the budget; a budget-conditioned run measures its calibration table instead.  Each stage
writes its policy to ``stages/<stage>/`` and its figures to TensorBoard under ``<stage>/``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from trim_rl import __version__
from trim_rl.agents.checkpoint import write_network_checkpoint
from trim_rl.configs import ConfigError
from trim_rl.envs.observations import make_builder
from trim_rl.fsutil import write_json, write_text
from trim_rl.training.budget import NodeMargins, build_table, calibrate_offset, shift_regenerate_logit, spend
from trim_rl.training.config import EnvConfig, NetworkSpec, PPOAgentConfig
from trim_rl.training.distill import distill
from trim_rl.training.policy_iteration import conditioned_policy_iteration, policy_iteration
from trim_rl.training.seq_iteration import seq_policy_iteration
from trim_rl.training.ppo_stage import actor_net, copy_actor_in, make_model, network_meta, new_actor, save_model
from trim_rl.training.context import Inputs, Interrupted, Target, make_logger, stop_on_signals
from trim_rl.training.validation import BudgetEvaluator, ConditionedEvaluator, PriceEvaluator

FAMILIES = {"agg": "TRIM-Agg", "seq": "TRIM-Seq"}
RECIPE_NAMES = {("policy_iteration", "ppo"): "policy iteration + PPO",
                ("policy_iteration", "distill", "ppo"): "policy iteration + distillation + PPO",
                ("policy_iteration",): "policy iteration", ("policy_iteration", "distill"): "policy iteration + distillation",
                ("policy_iteration", "seq_policy_iteration", "ppo"): "policy iteration (agg, then seq) + PPO",
                ("policy_iteration", "seq_policy_iteration"): "policy iteration (agg, then seq)",
                ("ppo",): "PPO"}


def family_of(agent: PPOAgentConfig) -> str:
    """The checkpoint family: the design's names; PPO from a random start keeps its own."""
    fam = FAMILIES[agent.obs] + (" (budget-conditioned)" if agent.budget_conditioned else "")
    if agent.init_from:
        return fam + " (fine-tuned)"
    if agent.recipe == ["ppo"]:
        return fam + " (PPO from scratch)"
    return fam


def recipe_meta(agent: PPOAgentConfig) -> dict:
    return {"name": RECIPE_NAMES.get(tuple(agent.recipe), " + ".join(agent.recipe)), "stages": list(agent.recipe),
            **({"init_from": agent.init_from} if agent.init_from else {})}


def _stage_meta(agent: PPOAgentConfig, stage: str, lam, extra: dict) -> dict:
    obs = "agg" if stage == "policy_iteration" else agent.obs
    return {"family": f"{FAMILIES[obs]} ({stage.replace('_', ' ')} stage)",
            "observation": make_builder(obs, agent.budget_conditioned).config(), "lam": lam,
            "lam_range": agent.lam_range if agent.budget_conditioned else None,
            "network": network_meta(obs, agent.budget_conditioned, agent.policy_kwargs
                                    if obs == agent.obs else _agg_spec(agent)),
            "stage": stage, **extra}


def _agg_spec(agent: PPOAgentConfig):
    return NetworkSpec(list(agent.policy_kwargs.net_arch) if agent.obs == "agg" else [64, 64],
                       agent.policy_kwargs.activation if agent.obs == "agg" else "tanh", None)


def run_recipe(run_dir: Path, agent: PPOAgentConfig, env: EnvConfig, target: Target, seed: int, inputs: Inputs,
               progress: bool = False, verbose: int = 0, resuming: bool = False, on_resume=None,
               stop: threading.Event | None = None) -> None:
    """Run the agent's stages into ``run_dir``; ``resuming`` continues PPO from the saved state and
    calls ``on_resume`` once that state has loaded; ``stop``: the event that SIGINT / SIGTERM set
    since before the run folder was made (else one from here on)."""
    with stop_on_signals(stop) as stop:
        if stop.is_set():  # a signal while the run folder was being set up
            raise Interrupted(run_dir, resumable=False)
        import torch

        # one thread per training process: a grid runs one process per core, and torch's intra-op
        # threads on a busy machine make the small matrices of these networks many times slower
        torch.set_num_threads(1)
        logger = make_logger(run_dir / "tb", verbose)
        stats: dict = {}
        t_start = time.time()
        net, lam, teacher = inputs.init_net, target.lam if target.lam is not None else inputs.init_lam, None
        state = json.loads((run_dir / "state.json").read_text()) if resuming else None
        if state is None and "policy_iteration" in agent.recipe:
            t0 = time.time()
            net, lam, teacher, rounds = _policy_iteration(agent, target, seed, inputs, logger, progress, stop)
            stats["policy_iteration_seconds"] = round(time.time() - t0, 1)
            write_network_checkpoint(net, _stage_meta(agent, "policy_iteration", lam, {"rounds": rounds}),
                                     run_dir / "stages" / "policy_iteration")
        if state is None and "seq_policy_iteration" in agent.recipe:
            t0 = time.time()
            net, lam, teacher, rounds = _seq_policy_iteration(agent, target, seed, inputs, teacher, logger, progress, stop)
            stats["seq_policy_iteration_seconds"] = round(time.time() - t0, 1)
            write_network_checkpoint(net, _stage_meta(agent, "seq_policy_iteration", lam, {"rounds": rounds}),
                                     run_dir / "stages" / "seq_policy_iteration")
        if state is None and "distill" in agent.recipe:
            t0 = time.time()
            net, agreement = _distill(agent, teacher, seed, inputs, logger, progress)
            stats["distill_seconds"] = round(time.time() - t0, 1)
            write_network_checkpoint(net, _stage_meta(agent, "distill", lam, {"agreement": agreement}),
                                     run_dir / "stages" / "distill")
        if stop.is_set():
            raise Interrupted(run_dir, resumable=False)
        if "ppo" in agent.recipe:
            t0 = time.time()
            net, lam, ppo_stats = _ppo(run_dir, agent, target, seed, inputs, net, lam, state, logger, progress,
                                       verbose, stop, on_resume)
            stats.update(ppo_stats, ppo_seconds=round(time.time() - t0, 1))
            if stop.is_set():
                raise Interrupted(run_dir, resumable=True)
    result = _finish(run_dir, agent, env, target, inputs, net, lam, logger)
    stats["seconds"] = round(time.time() - t_start, 1)
    write_json(run_dir / "train_stats.json", stats)
    logger.close()
    return result


def _rounds_bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="round", disable=not progress, dynamic_ncols=True, mininterval=0.5)


def _round_recorder(stage: str, bar, logger, stop):
    """Each policy-iteration round's figures to TensorBoard under ``stage/`` and to the bar; a stop
    request ends the stage."""

    def on_round(rec: dict) -> None:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and k != "round":
                logger.record(f"{stage}/{k}", float(v))
        logger.dump(int(rec["round"]))
        bar.update(1)
        bar.set_postfix(cost=f"{rec['cost_pct']:.1f}%", acc=f"{rec['accuracy']:.3f}", refresh=False)
        if stop.is_set():
            raise Interrupted(Path(logger.dir).parent, resumable=False)

    return on_round


def _policy_iteration(agent, target, seed, inputs, logger, progress, stop):
    cfg = agent.policy_iteration
    bar = _rounds_bar(cfg.rounds, "policy iteration", progress)
    on_round = _round_recorder("policy_iteration", bar, logger, stop)
    spec = _agg_spec(agent)
    if agent.budget_conditioned:
        res = conditioned_policy_iteration(inputs.train, tuple(agent.lam_range), net_arch=spec.net_arch,
                                           activation=spec.activation, cfg=cfg, seed=seed, on_round=on_round)
        lam = None
    else:
        res = policy_iteration(inputs.train, budget=None if target.lam is not None else target.budget,
                               lam=target.lam, net_arch=spec.net_arch, activation=spec.activation, cfg=cfg,
                               seed=seed, on_round=on_round)
        lam = res.lam
    bar.close()
    return res.net, lam, res.regen, res.rounds


def _seq_policy_iteration(agent, target, seed, inputs, start, logger, progress, stop):
    """Policy iteration in the agent's transformer from the agg stage's policy ``start``."""
    import torch

    cfg = agent.seq_policy_iteration
    bar = _rounds_bar(cfg.rounds, "policy iteration (seq)", progress)
    torch.manual_seed(int(seed))
    res = seq_policy_iteration(inputs.train, budget=None if target.lam is not None else target.budget, lam=target.lam,
                               net=new_actor(agent), cfg=cfg, seed=seed, start_regen=start,
                               on_round=_round_recorder("seq_policy_iteration", bar, logger, stop))
    bar.close()
    return res.net, res.lam, res.regen, res.rounds


def _distill(agent, teacher, seed, inputs, logger, progress):
    net = new_actor(agent)
    bar = _rounds_bar(agent.distill.epochs, "distill", progress)

    def on_epoch(rec: dict) -> None:
        logger.record("distill/loss", rec["loss"])
        logger.record("distill/agreement", rec["agreement"])
        logger.dump(int(rec["epoch"]))
        bar.update(1)
        bar.set_postfix(agreement=f"{rec['agreement']:.3f}", refresh=False)

    agreement = distill(inputs.train, teacher, net, make_builder(agent.obs), agent.distill, seed, on_epoch)
    bar.close()
    return net, agreement


def _evaluator(agent: PPOAgentConfig, target: Target, inputs: Inputs, lams_bc: list[float]):
    builder = make_builder(agent.obs, agent.budget_conditioned)
    if agent.budget_conditioned:
        return ConditionedEvaluator(inputs.val, builder, lams_bc)
    if target.lam is None:
        return BudgetEvaluator(inputs.val, inputs.calib, float(target.budget), builder, inputs.calib_is_val)
    return PriceEvaluator(inputs.val, builder)


def _ppo(run_dir, agent, target, seed, inputs, net, lam, state, logger, progress, verbose, stop, on_resume=None):
    import torch
    from stable_baselines3.common.utils import set_random_seed

    # trim_rl.envs.vec_env and trim_rl.training.callbacks import stable_baselines3
    from trim_rl.envs.vec_env import RoutingVecEnv
    from trim_rl.training.callbacks import LambdaWarmupCallback, ProgressCallback, RolloutMetricsCallback, ValidationCallback

    torch.set_num_threads(1)
    set_random_seed(seed)
    bc = agent.budget_conditioned
    lam_range = tuple(agent.lam_range) if bc else (1e-4, 1e-2)
    if state is not None:
        lam = float(state["lam"]) if state.get("lam") is not None else lam
    if lam is None and not bc:
        raise ValueError("the PPO stage needs a price: give --lam or run policy_iteration first")
    venv = RoutingVecEnv(inputs.train, num_envs=agent.n_envs, lam=float(lam or lam_range[0]), obs=agent.obs,
                         budget_conditioned=bc, lam_range=lam_range)
    venv.seed(seed)
    if state is not None:
        model = load_model(run_dir / "model.zip", venv, agent)
        done = int(model.num_timesteps)
        if on_resume is not None:  # the resumed run's own records change only once its state loaded
            on_resume()
    else:
        model = make_model(agent, venv, seed, verbose)
        done = 0
        if net is not None:
            copy_actor_in(model, net)
        elif agent.initial_regen_prob != 0.5:  # a start that regenerates rarely (PPO from scratch)
            p0 = agent.initial_regen_prob
            with torch.no_grad():
                model.policy.action_net.bias.copy_(torch.tensor([0.0, float(np.log(p0 / (1.0 - p0)))]))
    model.set_logger(logger)
    lams_bc = list(np.geomspace(lam_range[0], lam_range[1], 5)) if bc else []
    validation = ValidationCallback(_evaluator(agent, target, inputs, lams_bc), agent, run_dir, agent.eval_freq,
                                    float(lam or 0.0), None if (bc or target.lam is not None) else target.budget,
                                    agent.budget_control if target.lam is None else 0.0, stop)
    callbacks = [RolloutMetricsCallback(float(inputs.train.strong_only_tokens.mean()), validation.control), validation]
    total = agent.total_timesteps
    if progress:
        label = agent.name if bc else f"{agent.name} {target.label}"
        callbacks.append(ProgressCallback(total, f"PPO {label}", validation))
    if agent.lam_warmup is not None and target.lam is not None:
        w = agent.lam_warmup
        callbacks.append(LambdaWarmupCallback(float(lam or 0.0), total, w.start, w.fraction, lam_range if bc else None))
    remaining = max(0, total - done)
    t0 = time.time()
    if remaining:
        model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=done == 0, progress_bar=False)
        validation.save_state()
    # else: a resumed run that had finished PPO (it stopped before its export): its saved state is final
    if stop.is_set():
        return None, validation.lam, {}
    seconds = time.time() - t0
    best = run_dir / "best_model.zip"
    if best.exists():
        from sb3_contrib import MaskablePPO

        best_model = MaskablePPO.load(best, device="cpu")  # our own run's file
        net = actor_net(best_model, agent)
        lam = json.loads((run_dir / "best.json").read_text()).get("lambda", lam)
    else:
        save_model(model, best)
        net = actor_net(model, agent)
    venv.close()
    return net, (None if bc else float(lam)), {"timesteps": int(model.num_timesteps),
                                                  "env_steps_per_s": round(remaining / max(seconds, 1e-9), 1)}


def load_model(path: Path, venv, agent: PPOAgentConfig):
    """The run's own SB3 zip (written by this package), to resume with the run's settings; a damaged
    zip or one saved with another observation space is refused by name."""
    import zipfile

    from sb3_contrib import MaskablePPO

    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: damaged (not a zip file); the run cannot be resumed from it")
    try:
        return MaskablePPO.load(path, env=venv, device=agent.device, custom_objects=dict(agent.hyperparams))
    except ValueError as exc:
        if "spaces do not match" in str(exc):
            raise ConfigError(f"{path}: saved with another observation space ({str(exc).splitlines()[0]}); this "
                              f"version cannot resume it: start a new run (its exported policy still loads)") from None
        raise
    except (zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise ConfigError(f"{path}: damaged ({type(exc).__name__}: {exc}); the run cannot be resumed from it") from None


def _finish(run_dir: Path, agent: PPOAgentConfig, env: EnvConfig, target: Target, inputs: Inputs, net, lam, logger):
    """Calibrate the spend (budget) or measure the table (budget-conditioned), then write ``policy/``
    and ``result.json``."""
    builder = make_builder(agent.obs, agent.budget_conditioned)
    result: dict = {"requested_budget": target.budget, "lam": lam, "calib_trees": str(env.calib_spec),
                    "val_trees": str(env.val)}
    extra: dict = {}
    if agent.budget_conditioned:
        table = build_table(inputs.calib, net, builder, tuple(agent.lam_range), label=str(env.calib_spec))
        extra["budget_table"] = table.to_json()
        result["budget_table_range"] = list(table.range())
    else:
        if target.budget is not None and target.lam is None:
            cal = calibrate_offset(inputs.calib, NodeMargins(inputs.calib, net, builder), float(target.budget))
            shift_regenerate_logit(net, cal.setting)
            result.update(offset=cal.setting, calib_cost_pct=cal.cost_pct)
        acc, cost = spend(inputs.val, NodeMargins(inputs.val, net, builder))
        result.update(val_accuracy=acc, val_cost_pct=cost)
        for k in ("val_accuracy", "val_cost_pct", "calib_cost_pct"):
            if k in result:
                logger.record(f"budget/{k}", float(result[k]))
        if target.budget is not None:
            logger.record("budget/requested", float(target.budget))
        logger.record("budget/lambda", float(lam))
        logger.dump(0)
    meta = {"family": family_of(agent), "recipe": recipe_meta(agent), "observation": builder.config(),
            "lam": lam, "lam_range": list(agent.lam_range) if agent.budget_conditioned else None,
            "budget": ({"requested": target.budget, "lam": lam, "calib_cost_pct": result.get("calib_cost_pct"),
                        "val_cost_pct": result.get("val_cost_pct"), "calib_trees": str(env.calib_spec)}
                       if target.budget is not None and not agent.budget_conditioned else None),
            "network": network_meta(agent.obs, agent.budget_conditioned, agent.policy_kwargs),
            "validation": {k: result[k] for k in ("val_accuracy", "val_cost_pct") if k in result} or None,
            "versions": _versions_light(), "source": _source(run_dir, env), **extra}
    write_network_checkpoint(net, meta, run_dir / "policy")
    write_json(run_dir / "result.json", result)
    _record_result(run_dir, result)
    return result


def _record_result(run_dir: Path, result: dict) -> None:
    """Add the outcome (requested budget, lambda, spend measured) to the run's ``config.yml``."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yml").read_text(encoding="utf-8")) or {}
    cfg["result"] = {k: result.get(k) for k in ("requested_budget", "lam", "offset", "calib_cost_pct", "val_accuracy",
                                                "val_cost_pct", "budget_table_range") if k in result}
    write_text(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))


def _versions_light() -> dict:
    import torch

    return {"trim_rl": __version__, "torch": str(torch.__version__)}


def _source(run_dir: Path, env: EnvConfig) -> dict:
    """Where a checkpoint came from: its run folder, git hash, seed, env and training trees."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yml").read_text(encoding="utf-8")) or {}
    state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").exists() else {}
    return {"run": str(run_dir), "git": cfg.get("git"), "seed": cfg.get("seed"), "env": env.name,
            "train": env.train, "timesteps": state.get("timesteps"),
            "init_from": (cfg.get("agent") or {}).get("init_from")}
