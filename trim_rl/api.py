"""The Python API of trim_rl; the command-line tools are thin layers over these functions.

Example::

    import trim_rl

    run = trim_rl.train("trim_agg", "math500", budget=15)       # one policy for a 15% budget
    ck = run.export("checkpoints/mine_b15")                    # safetensors + policy.json
    result = trim_rl.evaluate(["thr", "oracle-step", ck], "sim:math500:test")
    print(result.cpt("TRIM-Agg"))                              # {"50": ..., "80": ..., "95": ...}

Tree specs everywhere: a tree file (``.jsonl`` / ``.jsonl.gz``), ``sim:PROFILE:SPLIT[:SEEDS]`` for
simulated trees (generated once into ``$TRIM_RL_CACHE``), or a list of those.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trim_rl.agents.query import QUERY_ROUTERS
from trim_rl.argtypes import DEFAULT_ENV, refuse_repeats
from trim_rl.agents.registry import load_checkpoint, load_policy
from trim_rl.envs.routing_env import DEFAULT_TREES, RoutingEnv, resolve_trees
from trim_rl.configs import ConfigError
from trim_rl.evaluation.evaluation import DEFAULT_TREES as POOL_TREES
from trim_rl.evaluation.evaluation import check_settings, evaluate_policies, load_pool, make_query_context
from trim_rl.evaluation.perturb import describe, perturb_prm
from trim_rl.evaluation.report import check_output_folder, terminal_table, write_all
from trim_rl.evaluation.sweep import LABELS, find_checkpoints
from trim_rl.resources import config_file, project_folder
from trim_rl.sim.bundled import check_tree_spec, load_trees, resolve_tree_spec
from trim_rl.training.budget import check_budget
from trim_rl.training.checks import check_path_given, check_runs_root, check_seed, check_workers
from trim_rl.training.config import load_agent, load_env
from trim_rl.training.exporting import export_run
from trim_rl.training.pomdp import train_pomdp
from trim_rl.training.run import AlreadyFinished, GridResult, Target, check_inputs, train_grid, train_one
from trim_rl.training.run import resume as resume_run
from trim_rl.training.targets import resolve_targets
from trim_rl.training.warm_start import apply_init_from

__all__ = ["load_trees", "make_env", "load_policy", "load_checkpoint", "train", "resume", "evaluate", "export", "Run",
           "Evaluation", "GridFailed", "AlreadyFinished", "UnusedArgumentWarning", "project_folder"]

#: the learned query routers, which train on their own train / validation trees
LEARNED_ROUTERS = ("sw", "mf", "clf")


def make_env(trees=DEFAULT_TREES, lam: float = 1e-3, obs: str = "agg", budget_conditioned: bool = False,
             lam_range: tuple[float, float] = (1e-4, 1e-2), num_envs: int | None = None, seed: int | None = None):
    """A :class:`~trim_rl.envs.routing_env.RoutingEnv` on ``trees`` (any tree spec or loaded trees), or
    with ``num_envs`` the batched :class:`~trim_rl.envs.vec_env.RoutingVecEnv` (an SB3 ``VecEnv``)."""
    flat = resolve_trees(trees)
    if num_envs is None:
        env = RoutingEnv(flat, lam=lam, obs=obs, budget_conditioned=budget_conditioned, lam_range=lam_range)
        if seed is not None:
            env.reset(seed=seed)
        return env
    # trim_rl.envs.vec_env imports stable_baselines3
    from trim_rl.envs.vec_env import RoutingVecEnv

    venv = RoutingVecEnv(flat, num_envs=num_envs, lam=lam, obs=obs, budget_conditioned=budget_conditioned,
                         lam_range=lam_range)
    venv.seed(seed)
    return venv


@dataclass
class Run:
    """A run folder written by :func:`train` (or ``train.py``)."""

    path: Path

    @property
    def config(self) -> dict:
        import yaml

        return yaml.safe_load((self.path / "config.yml").read_text(encoding="utf-8"))

    @property
    def result(self) -> dict:
        """Requested budget, the price found and the spend measured (``result.json``)."""
        return json.loads((self.path / "result.json").read_text(encoding="utf-8"))

    def policy(self):
        """The finished policy (``policy/``), loaded."""
        return load_checkpoint(self.path / "policy")

    def export(self, out: str | Path, which: str = "best") -> Path:
        """Install the run's policy as a checkpoint folder (see ``python -m trim_rl.export``)."""
        return export_run(self.path, out, which)


class UnusedArgumentWarning(UserWarning):
    """An argument that :func:`train` takes but that does not change what it trains (``train.py``
    prints it as one line on stderr)."""


class GridFailed(RuntimeError):
    """Some runs of a grid failed (after the others finished): ``results`` holds every target's
    :class:`~trim_rl.training.run.GridResult` in order, ``runs`` the runs that finished."""

    def __init__(self, results: list[GridResult]):
        self.results = results
        self.runs = [Run(r.run_dir) for r in results if not r.error and r.run_dir]
        self.failed = [r for r in results if r.error]
        super().__init__("; ".join(f"{r.target.label}: {r.error}" for r in self.failed))


def train(agent: str | Path = "trim_agg", env: str | Path | None = None, *, budget: float | None = None,
          budget_grid: Sequence[float] | None = None, lam: float | None = None, lam_grid: Sequence[float] | None = None,
          seed: int = 0, runs: str | Path = "runs", hyperparams: Sequence[str] = (), init_from: str | Path | None = None,
          workers: int | None = None, progress: bool = False, verbose: int = 0, command: str | None = None,
          live: dict | None = None) -> Run | list[Run]:
    """Train like ``train.py`` (which is this function's command line): an agent YAML and an env YAML
    (paths or packaged names; ``env`` defaults to ``math500``), one target (``budget`` % of always-strong's strong tokens, or a price
    ``lam``) or a grid of them.  With no target, the env YAML's ``budget``.  Returns the :class:`Run`,
    or a list for a grid; a grid whose runs partly fail raises :class:`GridFailed` (a ``RuntimeError``
    naming each failed target) after the others finished.

    Everything is checked before any run folder is made: a ``ValueError`` (or ``FileNotFoundError``)
    naming the argument as ``train.py`` spells it (``--budget-grid``, ``--init-from``), the file or the
    key, the same refusals and messages as ``train.py``'s.  A ``budget`` given to a budget-conditioned
    agent (one policy for every budget) is not used: an :class:`UnusedArgumentWarning` says so.
    ``command`` is recorded in the run's ``command.txt`` (default: this process's command line);
    ``verbose=1`` prints SB3's training log.

    ``live`` trains online against live backends instead of trees (``train.py --live``): a mapping of
    :func:`trim_rl.live.online.train_live`'s settings, at least ``weak_url``, ``strong_url`` and
    ``problems`` (``env``, the grids and ``workers`` do not apply)."""
    for name, value in (("--agent", agent), ("--env", env), ("--init-from", init_from), ("--runs", runs)):
        check_path_given(value, name)
    if isinstance(hyperparams, str):  # one "key:value" string would be read character by character
        hyperparams = [hyperparams]
    if live is not None:
        if not isinstance(live, dict):
            raise ConfigError(f"live: expected a mapping of online-training settings, got {type(live).__name__}")
        for name, value in (("--env", env), ("--budget-grid", budget_grid), ("--lam-grid", lam_grid),
                            ("--workers", workers)):
            if value is not None:
                raise ConfigError(f"{name}: --live trains one policy on live problems (--problems); give one "
                                  f"--budget or --lam")
        from trim_rl.live.online import train_live

        return Run(train_live(agent, budget=budget, lam=lam, seed=seed, runs=runs, hyperparams=tuple(hyperparams),
                              init_from=init_from, progress=progress, verbose=verbose, command=command, **live))
    env = DEFAULT_ENV if env is None else env
    check_seed(seed, "--seed")
    check_workers(workers, "--workers")
    check_runs_root(runs, "--runs")
    a = load_agent(config_file("agents", agent), list(hyperparams))
    e = load_env(config_file("envs", env))
    if init_from is not None:
        apply_init_from(a, init_from, "--init-from")
    targets, grid, flag = resolve_targets(a, e, budget, budget_grid, lam, lam_grid)
    if a.algo == "pomdp":
        out = [Run(d) for d in train_pomdp(a, e, targets, seed, runs, command, progress=progress)]
        return out if grid else out[0]
    if a.budget_conditioned:  # one budget-conditioned policy serves every budget
        if flag.startswith("--"):
            warnings.warn(f"{flag} is not used: agent {a.name} is budget-conditioned and serves every budget "
                          f"through its budget table", UnusedArgumentWarning, stacklevel=2)
        targets, grid = [Target()], False
    # every input (trees, budgets against them, the start) checked before any run folder is made
    inputs = check_inputs(a, e, targets[0], progress, flag)
    if not grid:
        return Run(train_one(a, e, targets[0], seed, runs, command=command, progress=progress, verbose=verbose,
                             inputs=inputs))
    for t in targets:
        if t.budget is not None:
            check_budget(t.budget, inputs.calib, flag, f"the calibration trees ({e.calib_spec})")
    results = train_grid(a, e, targets, seed, runs, workers, command, progress=progress)
    if any(r.error for r in results):
        raise GridFailed(results)
    return [Run(r.run_dir) for r in results]


def resume(run: Run | str | Path, hyperparams: Sequence[str] = (), *, progress: bool = False, verbose: int = 0,
           command: str | None = None) -> Run:
    """Continue a run (``train.py --resume``, which is this function's command line): an interrupted
    run from its saved PPO state (``model.zip`` + ``state.json``), a run that stopped before its
    export by calibrating and exporting it, or a finished run extended by ``hyperparams``
    ``["total_timesteps:N"]``.  The run keeps its own config (agent, env, target, seed, folder);
    ``hyperparams`` may change only what its saved model is not built on.  Runs trained online
    (``live``) resume against their own servers.  Returns the :class:`Run`; a finished run with
    nothing left to do raises :class:`AlreadyFinished` (its ``timesteps``: PPO's steps so far)."""
    path = run.path if isinstance(run, Run) else run
    check_path_given(path, "--resume")
    if isinstance(hyperparams, str):
        hyperparams = [hyperparams]
    from trim_rl.live.online import is_live_run

    if is_live_run(path):
        from trim_rl.live.online import resume_online

        return Run(resume_online(path, list(hyperparams), command, progress=progress, verbose=verbose))
    return Run(resume_run(path, list(hyperparams), command, progress=progress, verbose=verbose))


@dataclass
class Evaluation:
    """What ``evaluate.py`` writes to ``metrics.json``: per policy its operating points, frontier,
    CPT, dIBC, APGR and bootstrap intervals, keyed by name (built-ins) or family (checkpoints)."""

    data: dict
    #: where ``evaluate.py`` writes it without ``--out``: ``reports/<first tree file's name>`` (``_pool``
    #: added for several seeds or files); None for trees given loaded
    default_out: Path | None = field(default=None, compare=False)

    @property
    def policies(self) -> dict[str, dict]:
        return self.data["policies"]

    def cpt(self, name: str) -> dict[str, float]:
        return self.policies[name]["cpt"]

    def spread(self, name: str) -> dict[str, dict]:
        """On a pool: per metric (``cpt50``, ``cpt80``, ``cpt95``, ``dibc``, ``apgr``) its mean, sd, min
        and max over the seeds, each evaluated alone."""
        if "spread" not in self.policies[name]:
            raise ValueError("spread: the evaluation holds one seed; give several (sim:PROFILE:test:A-B)")
        return self.policies[name]["spread"]

    def ratio(self, name: str, level: str = "80") -> dict:
        """On a pool: ``name``'s CPT(level%) / TRIM-Thr's, pooled, its bootstrap interval and per seed."""
        ratios = self.data.get("ratios")
        if not ratios or name not in ratios["cpt"]:
            raise ValueError(f"ratio: no ratio for {name!r}; it needs a pool of seeds with 'thr' evaluated")
        return ratios["cpt"][name][level]

    def table(self) -> str:
        """The report's main table for a terminal (what ``evaluate.py`` prints at the end)."""
        return terminal_table(self.data)

    def write(self, out: str | Path) -> Path:
        """``metrics.json``, ``points.csv``, ``report.md`` and ``frontier.png`` into ``out`` (as one set)."""
        write_all(Path(out), self.data)
        return Path(out) / "report.md"


def _policy_names(policies) -> tuple[list[str], list, str]:
    """(built-in names, checkpoint folders or loaded checkpoints, the policies as evaluate.py's
    --policies spells them) of :func:`evaluate`'s ``policies``."""
    items = [n.strip() for n in policies.split(",") if n.strip()] if isinstance(policies, str) else list(policies)
    names, checkpoints = [], []
    for p in items:
        if isinstance(p, str) and (p in LABELS or p in QUERY_ROUTERS):
            names.append(p)
        elif isinstance(p, Path) or (isinstance(p, str) and ("/" in p or Path(p).exists())):
            checkpoints.append(p)
        elif hasattr(p, "family") and hasattr(p, "folder"):
            checkpoints.append(p)
        elif isinstance(p, str):
            unknown = [n for n in items if isinstance(n, str) and n not in LABELS and n not in QUERY_ROUTERS
                       and "/" not in n and not Path(n).exists()]
            raise ConfigError(f"--policies: unknown {', '.join(unknown)}; available: "
                              f"{', '.join([*LABELS, *QUERY_ROUTERS])}")
        else:
            raise ValueError(f"policy {p!r}: give a built-in name, a checkpoint folder or a loaded checkpoint")
    raw = policies if isinstance(policies, str) else ",".join(map(str, items))
    return names, checkpoints, raw


def _check_prm(prm_noise: float, prm_flip: float) -> None:
    import math

    if isinstance(prm_noise, bool) or not isinstance(prm_noise, (int, float)) or not math.isfinite(prm_noise) \
            or prm_noise < 0:
        raise ValueError(f"prm_noise: expected a finite SD >= 0, got {prm_noise!r}")
    if isinstance(prm_flip, bool) or not isinstance(prm_flip, (int, float)) or not 0.0 <= prm_flip <= 1.0:
        raise ValueError(f"prm_flip: expected a fraction in [0, 1], got {prm_flip!r}")


def evaluate(policies: str | Sequence[Any] = ("thr", "always-weak", "always-strong", "oracle-step"),
             trees=None, *, checkpoints: Sequence[str | Path] = (), n_boot: int = 1000, seed: int = 0,
             routing_errors: float = 0.0, prm_noise: float = 0.0, prm_flip: float = 0.0,
             train_trees: str | None = None, val_trees: str | None = None, out: str | Path | None = None,
             progress: bool = False) -> Evaluation:
    """Sweep policies over held-out trees (default the README's pool ``sim:math500:test:100-109``; the
    bundled seed alone is ``"sim:math500:test"``), like ``evaluate.py``
    (which is this function's command line).  ``policies`` holds built-in names (``thr``, ``random``,
    ``oracle-step``, query routers, ...; or one comma-separated string of them), checkpoint folders
    (each family one frontier) and loaded checkpoints; ``checkpoints`` more folders (or folders
    holding them).  ``out`` also writes the report.

    Several test seeds (``"sim:math500:test:100-109"``) or tree files (a list) are a pool: pooled
    figures with intervals over test problems, and per policy ``per_seed`` figures and their
    ``spread`` (mean, sd, min, max); :meth:`Evaluation.spread` and :meth:`Evaluation.ratio`.
    ``prm_noise`` / ``prm_flip`` perturb the trees' PRM scores (Gaussian noise of that SD on the
    logit, then a fraction replaced by 1 - score; seeded by ``seed``); ``routing_errors`` flips that
    fraction of each step policy's decisions.  The learned query routers (``sw``, ``mf``, ``clf``)
    train on ``train_trees`` and ``val_trees`` (default: the train / val splits of a ``sim:`` test spec).

    Everything is checked before any tree is generated or policy run: a ``ValueError`` (or a
    ``FileNotFoundError``) naming the argument as ``evaluate.py`` spells it (``--policies``, ``--trees``,
    ``--out``) or, for the numbers, as this function does."""
    spec = trees if trees is not None else POOL_TREES
    names, found, raw = _policy_names(policies)
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    found = [*found, *map(str, checkpoints)]
    if not names and not found:
        raise ConfigError(f"--policies {raw!r}: names no policy (and no --checkpoints given)")
    refuse_repeats(names, lambda n: f"--policies: {n} is named twice", ConfigError)
    check_settings(n_boot, seed, routing_errors)
    _check_prm(prm_noise, prm_flip)
    if out is not None:
        check_output_folder(out, "--out")
    is_spec = isinstance(spec, (str, Path, list, tuple))
    specs = [str(s) for s in spec] if isinstance(spec, (list, tuple)) else [str(spec)] if is_spec else None
    for flag, given in (("--trees", specs), ("--train-trees", train_trees), ("--val-trees", val_trees)):
        if given is not None:
            check_tree_spec(given, flag)
    learned = [n for n in names if n in LEARNED_ROUTERS]
    if learned:
        if specs is None:
            raise ValueError("the learned query routers need trees given as a sim:PROFILE:test spec")
        if not specs[0].startswith("sim:") and (train_trees is None or val_trees is None):
            raise ConfigError(f"--policies {learned[0]}: a learned query router needs --train-trees and --val-trees "
                              "when --trees is a file")
    if all(isinstance(p, (str, Path)) for p in found):  # one search: a folder found twice is loaded once
        checkpoints = find_checkpoints([str(p) for p in found]) if found else []
    else:  # in the order given
        checkpoints = [ck for p in found for ck in ([p] if hasattr(p, "family") else find_checkpoints([str(p)]))]
    default_out = None
    if specs is not None:
        flat, groups = load_pool(specs if isinstance(spec, (list, tuple)) else specs[0], progress)
        first = resolve_tree_spec(specs[0])[0]
        default_out = Path("reports") / (first.name.split(".")[0] + ("_pool" if len(groups) > 1 else ""))
    else:
        flat, groups = spec, None
    flat = perturb_prm(flat, prm_noise, prm_flip, seed)
    perturbed = describe(prm_noise, prm_flip)
    query_ctx = make_query_context(specs[0], train_trees, val_trees, seed, progress) if learned else None
    label = " ".join(specs) if specs is not None else "trees"
    data = evaluate_policies(flat, names, n_boot=n_boot, seed=seed, routing_errors=routing_errors, progress=progress,
                             trees_label=label + (f" ({perturbed})" if perturbed else ""), checkpoints=checkpoints,
                             query_ctx=query_ctx, groups=groups)
    data.update(prm_noise=prm_noise, prm_flip=prm_flip)
    result = Evaluation(data, default_out)
    if out is not None:
        result.write(out)
    return result


def export(run: Run | str | Path, out: str | Path, which: str = "best") -> Path:
    """Install a run's policy as a deployment checkpoint at ``out`` (``python -m trim_rl.export``,
    which is this function's command line): ``which`` ``best``, the finished calibrated policy, or
    ``last``, PPO's last actor, uncalibrated.  See :func:`trim_rl.training.exporting.export_run` for
    what it writes and refuses."""
    return export_run(run.path if isinstance(run, Run) else run, out, which)
