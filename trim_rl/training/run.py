"""Train one routing policy into a run folder: the recipe's stages, then the budget calibration.

A run folder ``runs/<agent>/<env>__<target>__<seed>__<time>/`` holds ``config.yml`` (agent, env,
target, seed, git hash, versions), ``command.txt``, ``git_hash.txt``, ``tb/`` (TensorBoard events
and ``progress.csv`` of every stage), ``stages/<stage>/`` (each stage's policy as a checkpoint),
``model.zip`` + ``state.json`` (PPO's state, saved at every validation pass and on SIGINT/SIGTERM,
for ``--resume``), ``best_model.zip`` + ``best.json``, ``policy/`` (the finished, calibrated
checkpoint that ``python -m trim_rl.export`` installs) and ``result.json`` (requested budget, price,
spend measured).  Everything the run needs is checked before the folder is made, and a run that
stops before it has saved anything to resume or keep removes its folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import yaml

from trim_rl import __version__
from trim_rl.agents.checkpoint import is_checkpoint
from trim_rl.configs import ConfigError, parse_yaml
from trim_rl.fsutil import write_text
from trim_rl.sim.bundled import generate_trees, load_trees
from trim_rl.cli_errors import Terminated
from trim_rl.training.budget import check_budget
from trim_rl.training.checks import check_seed, check_workers
from trim_rl.training.config import AgentConfig, EnvConfig, agent_from_dict, apply_overrides, config_dict, env_from_dict
from trim_rl.training.context import Inputs, Interrupted, Target, make_logger, stop_on_signals  # noqa: F401 (re-exported)
from trim_rl.training.recipe import run_recipe
from trim_rl.training.warm_start import load_init_from


def git_hash() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def new_run_dir(root: Path, agent: AgentConfig, env: EnvConfig, target: Target, seed: int) -> Path:
    """A fresh run folder (created exclusively: two runs started in the same second never share one)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / agent.name / f"{env.name}__{target.label}__{seed}__{stamp}"
    (Path(root) / agent.name).mkdir(parents=True, exist_ok=True)
    for i in range(10_000):
        d = base if i == 0 else Path(f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: too many runs with this name")


def write_run_record(run_dir: Path, cfg: dict, command: str | None) -> None:
    """A new run folder's record: ``config.yml`` (``cfg``, which holds the ``git`` hash), ``git_hash.txt``
    and ``command.txt`` (``command``; default this process's command line)."""
    write_text(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
    write_text(run_dir / "git_hash.txt", cfg["git"] + "\n")
    write_text(run_dir / "command.txt", _command_line(command) + "\n")


def append_command(run_dir: Path, command: str | None) -> None:
    """Add ``command`` (default: this process's command line) to the run's ``command.txt``, as a resume does."""
    with open(run_dir / "command.txt", "a", encoding="utf-8") as fh:
        fh.write(_command_line(command) + "\n")


def _command_line(command: str | None) -> str:
    return command or " ".join([sys.executable, *sys.argv])


def check_inputs(agent: AgentConfig, env: EnvConfig, target: Target, progress: bool = False,
                 flag: str = "--budget") -> Inputs:
    """Load the trees and check the target and the start against them (nothing is written)."""
    if agent.algo != "maskable_ppo":
        raise ConfigError(f"agent {agent.name}: algo {agent.algo!r} is not trained by this function")
    if agent.budget_conditioned:
        if target.budget is not None or target.lam is not None:
            pass  # one budget-conditioned policy serves every budget; the target only names the run
    elif target.budget is None and target.lam is None:
        raise ConfigError("a run needs a budget (--budget) or a price (--lam)")
    if target.budget is not None and not agent.budget_conditioned and "policy_iteration" not in agent.recipe \
            and not agent.init_from:
        raise ConfigError(f"{flag}: agent {agent.name} trains PPO from scratch (recipe {agent.recipe}), which "
                          f"needs a price: use --lam, or an agent whose recipe starts with policy_iteration")
    if target.lam is not None and not (np.isfinite(target.lam) and target.lam > 0):
        raise ConfigError(f"--lam: expected a price > 0, got {target.lam}")
    if "ppo" in agent.recipe and agent.total_timesteps < agent.hyperparams.get("n_steps", 2048) * agent.n_envs:
        raise ConfigError(f"total_timesteps: {agent.total_timesteps} is less than one rollout (n_steps x n_envs = "
                          f"{agent.hyperparams.get('n_steps', 2048) * agent.n_envs})")
    if "ppo" in agent.recipe and agent.device == "cuda":
        import torch

        if not torch.cuda.is_available():  # SB3 would train on the CPU without a word
            raise ConfigError("device: cuda, but torch sees no CUDA GPU on this machine; use device:cpu or auto")
    generate_trees(env.train, env.val, env.calib_spec, progress=progress)
    train = load_trees(env.train, progress)
    val = load_trees(env.val, progress)
    calib_is_val = env.calib is None or env.calib == env.val
    calib = val if calib_is_val else load_trees(env.calib_spec, progress)
    if target.budget is not None and not agent.budget_conditioned:
        check_budget(target.budget, calib, flag, f"the calibration trees ({env.calib_spec})")
    init_net, init_lam = load_init_from(agent)
    if agent.init_from and not init_lam and target.budget is not None and target.lam is None and not agent.budget_conditioned:
        raise ConfigError(f"{flag}: --init-from {agent.init_from}: its policy.json has no lam to start the "
                          f"price from; give --lam")
    return Inputs(train, val, calib, calib_is_val, init_net, init_lam)


class RunLock:
    """``run_dir/.lock`` holding this process id: a second process on the same run is refused."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self):
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return self
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                    os.kill(pid, 0)
                except (ValueError, ProcessLookupError, PermissionError, OSError):
                    self.path.unlink(missing_ok=True)  # left by a process that is gone
                    continue
                raise FileExistsError(f"{self.path.parent}: another process (pid {pid}) is training this run") from None
        raise FileExistsError(f"{self.path}: cannot take the run's lock")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _versions() -> dict:
    import sb3_contrib
    import stable_baselines3
    import torch

    return {"trim_rl": __version__, "python": sys.version.split()[0], "torch": str(torch.__version__),
            "stable_baselines3": stable_baselines3.__version__, "sb3_contrib": sb3_contrib.__version__}


def train_one(agent: AgentConfig, env: EnvConfig, target: Target, seed: int = 0, runs_root: str | Path = "runs",
              command: str | None = None, progress: bool = False, verbose: int = 0,
              inputs: Inputs | None = None) -> Path:
    """Train one policy for ``target``; returns its run folder (see the module docstring).  A run
    that stops (interrupted, or an error) before it has saved anything ``--resume`` or a user can
    use leaves no folder behind."""
    check_seed(seed, "seed")
    inputs = inputs or check_inputs(agent, env, target, progress)
    made = [p for p in (Path(runs_root) / agent.name, Path(runs_root)) if not p.exists()]
    # while the folder is set up (its record written, torch and SB3 imported) a signal only sets
    # ``stop``, which the recipe reads on entry; the recipe keeps it so until its stages end
    with stop_on_signals() as stop:
        run_dir = new_run_dir(Path(runs_root), agent, env, target, seed)
        try:
            cfg = {"agent": config_dict(agent), "env": config_dict(env), "target": target.to_dict(),
                   "seed": int(seed), "git": git_hash(), "versions": _versions()}
            write_run_record(run_dir, cfg, command)
        except BaseException as exc:
            _discard_unsaved(run_dir, made, exc)
    try:
        with RunLock(run_dir):
            run_recipe(run_dir, agent, env, target, seed, inputs, progress=progress, verbose=verbose, stop=stop)
    except BaseException as exc:
        _discard_unsaved(run_dir, made, exc)
    return run_dir


def _discard_unsaved(run_dir: Path, made: list[Path], exc: BaseException) -> NoReturn:
    """A run stopped by ``exc``: unless it saved something worth keeping, remove its folder (and the
    folders above it that it made); then raise, as :class:`Interrupted` where it was interrupted."""
    if not _holds_results(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        for p in made:  # the folders above it that this run made, unless another run is in them now
            try:
                p.rmdir()
            except OSError:
                break
        if isinstance(exc, (Interrupted, KeyboardInterrupt, Terminated)):
            raise Interrupted(run_dir, resumable=False, removed=True) from None
    raise exc


def _holds_results(run_dir: Path) -> bool:
    """Has the run saved anything worth keeping: PPO's state (to resume), a stage's policy, the policy?"""
    return (run_dir / "state.json").exists() or (run_dir / "policy").exists() or any(
        (d / "policy.json").exists() for d in (run_dir / "stages").glob("*"))


def read_run_config(run_dir: Path) -> tuple[AgentConfig, EnvConfig, Target, int]:
    """The typed configs of an existing run folder (``config.yml``)."""
    path = Path(run_dir) / "config.yml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (config.yml missing)")
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a config written by train.py (expected a mapping, got {type(data).__name__})")
    try:
        agent = agent_from_dict(data["agent"], f"{path} (agent)")
        env = env_from_dict(data["env"], f"{path} (env)")
        t = data.get("target") or {}
        target = Target(t.get("budget"), t.get("lam"))
        seed = int(data["seed"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a config written by train.py (missing {exc})") from None
    return agent, env, target, seed


# what the saved model and the run's records are built on: --hyperparams may not change it on --resume
FIXED_ON_RESUME = ("algo", "name", "obs", "budget_conditioned", "recipe", "policy_kwargs", "lam_range", "init_from")


class AlreadyFinished(Exception):
    """``resume`` of a run that has nothing left to do: its policy is written and PPO has run its
    ``total_timesteps`` (raise them with ``--hyperparams total_timesteps:N`` to train on)."""

    def __init__(self, run_dir: Path, timesteps: int | None):
        super().__init__(f"{run_dir}: already finished")
        self.run_dir, self.timesteps = Path(run_dir), timesteps


def _saved_timesteps(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / "state.json").read_text(encoding="utf-8"))["timesteps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resume(run_dir: str | Path, overrides: list[str] | None = None, command: str | None = None,
           progress: bool = False, verbose: int = 0) -> Path:
    """Continue an interrupted run from its saved PPO state (or only write its policy, when it
    stopped between PPO's end and the export), or extend a finished one whose ``total_timesteps``
    ``overrides`` raise.  A finished run with nothing left to do raises :class:`AlreadyFinished`."""
    run_dir = Path(run_dir)
    agent, env, target, seed = read_run_config(run_dir)
    finished = is_checkpoint(run_dir / "policy") and (run_dir / "result.json").is_file()
    if agent.algo == "pomdp":
        if (run_dir / "result.json").is_file():
            raise AlreadyFinished(run_dir, None)
        raise ConfigError("a TRIM-POMDP run has nothing to resume (solving is deterministic; train again)")
    if overrides:
        new = agent_from_dict(apply_overrides(config_dict(agent), overrides), "--hyperparams")
        changed = [k for k in FIXED_ON_RESUME if getattr(new, k) != getattr(agent, k)]
        if changed:
            raise ConfigError(f"--hyperparams {changed[0]}: a resumed run keeps its {changed[0]} (its saved model "
                              f"and records are built on it); train a new run to change it")
        agent = new
    done = _saved_timesteps(run_dir)
    if finished and ("ppo" not in agent.recipe or done is None or done >= agent.total_timesteps):
        raise AlreadyFinished(run_dir, done if "ppo" in agent.recipe else None)
    if not (run_dir / "model.zip").is_file() or not (run_dir / "state.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no saved training state (model.zip + state.json): it stopped before "
                                f"PPO's first checkpoint, so nothing in it can be resumed; start a new run (its "
                                f"command is in {run_dir / 'command.txt'})")
    if done is None:
        raise ConfigError(f"{run_dir / 'state.json'}: damaged (no readable timesteps); the run cannot be resumed "
                          f"from it")
    _check_zip(run_dir / "model.zip")
    inputs = check_inputs(agent, env, target, progress)

    def record() -> None:  # once the lock is held, every input checked and the saved state loaded
        if overrides:
            data = parse_yaml((run_dir / "config.yml").read_text(encoding="utf-8"))
            data["agent"] = config_dict(agent)
            write_text(run_dir / "config.yml", yaml.safe_dump(data, sort_keys=False))
        append_command(run_dir, command)

    with RunLock(run_dir):
        run_recipe(run_dir, agent, env, target, seed, inputs, progress=progress, verbose=verbose, resuming=True,
                   on_resume=record)
    return run_dir


def _check_zip(path: Path) -> None:
    """A saved PPO state that is not a readable SB3 zip is refused before anything is touched."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        raise ConfigError(f"{path}: damaged (not a zip file); the run cannot be resumed from it") from None
    if not {"data", "policy.pth"} <= names:
        raise ConfigError(f"{path}: damaged (no SB3 model inside); the run cannot be resumed from it")


def _worker(args):
    agent, env, target, seed, runs_root, command = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return str(train_one(agent, env, target, seed, runs_root, command=command)), None
    except Interrupted as exc:
        return (None if exc.removed else str(exc.run_dir)), "interrupted"
    except Exception as exc:  # one failing budget must not stop the others
        return None, f"{type(exc).__name__}: {exc}"


@dataclass
class GridResult:
    target: Target
    run_dir: Path | None
    error: str | None


def train_grid(agent: AgentConfig, env: EnvConfig, targets: list[Target], seed: int, runs_root: str | Path = "runs",
               workers: int | None = None, command: str | None = None, progress: bool = True) -> list[GridResult]:
    """One policy per target, one process per target (at most ``workers`` at a time).  A target
    that fails is reported in its :class:`GridResult`; the others finish."""
    import multiprocessing as mp

    from tqdm import tqdm

    workers = min(check_workers(workers, "workers") or os.cpu_count() or 1, len(targets))
    jobs = [(agent, env, t, seed, str(runs_root), command) for t in targets]
    if workers <= 1:
        results = [_worker(j) for j in tqdm(jobs, desc="budgets", unit="policy", disable=not progress)]
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            results = list(tqdm(pool.imap(_worker, jobs), total=len(jobs), desc="budgets", unit="policy",
                                disable=not progress))
    return [GridResult(t, Path(d) if d else None, err) for t, (d, err) in zip(targets, results)]
