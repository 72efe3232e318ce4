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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_rl.agents.query import QUERY_ROUTERS
from trim_rl.agents.registry import load_checkpoint, load_policy
from trim_rl.envs.routing_env import DEFAULT_TREES, RoutingEnv, resolve_trees
from trim_rl.evaluation.evaluation import evaluate_policies, load_pool, make_query_context
from trim_rl.evaluation.report import write_all
from trim_rl.evaluation.sweep import LABELS, find_checkpoints
from trim_rl.resources import config_file, project_folder
from trim_rl.sim.bundled import load_trees
from trim_rl.training.budget import check_budget
from trim_rl.training.checks import check_path_given, check_runs_root, check_seed, check_workers
from trim_rl.training.config import load_agent, load_env
from trim_rl.training.exporting import export_run
from trim_rl.training.pomdp import train_pomdp
from trim_rl.training.run import Target, check_inputs, train_grid, train_one
from trim_rl.training.targets import resolve_targets
from trim_rl.training.warm_start import apply_init_from

__all__ = ["load_trees", "make_env", "load_policy", "load_checkpoint", "train", "evaluate", "export", "Run",
           "Evaluation", "project_folder"]


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


def train(agent: str | Path = "trim_agg", env: str | Path = "math500", *, budget: float | None = None,
          budget_grid: Sequence[float] | None = None, lam: float | None = None, lam_grid: Sequence[float] | None = None,
          seed: int = 0, runs: str | Path = "runs", hyperparams: Sequence[str] = (), init_from: str | Path | None = None,
          workers: int | None = None, progress: bool = False, live: dict | None = None) -> Run | list[Run]:
    """Train like ``train.py``: an agent YAML and an env YAML (paths or packaged names), one target
    (``budget`` % of always-strong's strong tokens, or a price ``lam``) or a grid of them.  With no
    target, the env YAML's ``budget``.  Returns the :class:`Run`, or a list for a grid (a failed
    budget raises ``RuntimeError`` naming it after the others finished).  Everything is checked (a
    ``ValueError`` naming the argument, file or key) before any run folder is made.

    ``live`` trains online against live backends instead of trees (``train.py --live``): a mapping of
    :func:`trim_rl.live.online.train_live`'s settings, at least ``weak_url``, ``strong_url`` and
    ``problems`` (``env`` and the grids do not apply)."""
    if live is not None:
        if budget_grid is not None or lam_grid is not None:
            raise ValueError("live: online training takes one budget or price, not a grid")
        if not isinstance(live, dict):
            raise ValueError(f"live: expected a mapping of online-training settings, got {type(live).__name__}")
        from trim_rl.live.online import train_live

        return Run(train_live(agent, budget=budget, lam=lam, seed=seed, runs=runs, hyperparams=tuple(hyperparams),
                              init_from=init_from, progress=progress, **live))
    check_seed(seed, "seed")
    check_workers(workers, "workers")
    check_runs_root(runs, "runs")
    for name, value in (("agent", agent), ("env", env), ("init_from", init_from)):
        check_path_given(value, name)
    a = load_agent(config_file("agents", agent), list(hyperparams))
    e = load_env(config_file("envs", env))
    if init_from is not None:
        apply_init_from(a, init_from, "init_from")
    targets, grid, flag = resolve_targets(a, e, budget, budget_grid, lam, lam_grid)
    if a.algo == "pomdp":
        out = [Run(d) for d in train_pomdp(a, e, targets, seed, runs, progress=progress)]
        return out if grid else out[0]
    if a.budget_conditioned:  # one budget-conditioned policy serves every budget
        targets, grid = [Target()], False
    inputs = check_inputs(a, e, targets[0], progress, flag)
    if not grid:
        return Run(train_one(a, e, targets[0], seed, runs, progress=progress, inputs=inputs))
    for t in targets:
        if t.budget is not None:
            check_budget(t.budget, inputs.calib, flag, f"the calibration trees ({e.calib_spec})")
    results = train_grid(a, e, targets, seed, runs, workers, progress=progress)
    failed = [r for r in results if r.error]
    if failed:
        raise RuntimeError("; ".join(f"{r.target.label}: {r.error}" for r in failed))
    return [Run(r.run_dir) for r in results]


@dataclass
class Evaluation:
    """What ``evaluate.py`` writes to ``metrics.json``: per policy its operating points, frontier,
    CPT, dIBC, APGR and bootstrap intervals, keyed by name (built-ins) or family (checkpoints)."""

    data: dict

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

    def write(self, out: str | Path) -> Path:
        """``metrics.json``, ``points.csv``, ``report.md`` and ``frontier.png`` into ``out`` (as one set)."""
        write_all(Path(out), self.data)
        return Path(out) / "report.md"


def evaluate(policies: Sequence[Any] = ("thr", "always-weak", "always-strong", "oracle-step"),
             trees=None, *, n_boot: int = 1000, seed: int = 0, routing_errors: float = 0.0,
             out: str | Path | None = None, progress: bool = False) -> Evaluation:
    """Sweep policies over held-out trees (default the bundled math500 test trees).  ``policies``
    holds built-in names (``thr``, ``random``, ``oracle-step``, query routers, ...), checkpoint
    folders (each family one frontier) and loaded checkpoints; ``out`` also writes the report.
    Several test seeds (``"sim:math500:test:100-109"``) or tree files (a list) are a pool: pooled
    figures with intervals over test problems, and per policy ``per_seed`` figures and their
    ``spread`` (mean, sd, min, max); :meth:`Evaluation.spread` and :meth:`Evaluation.ratio`."""
    spec = trees if trees is not None else "sim:math500:test"
    groups = None
    if isinstance(spec, (str, Path, list, tuple)):
        flat, groups = load_pool([str(s) for s in spec] if isinstance(spec, (list, tuple)) else str(spec), progress)
    else:
        flat = spec
    names, checkpoints = [], []
    for p in policies:
        if isinstance(p, str) and (p in LABELS or p in QUERY_ROUTERS):
            names.append(p)
        elif isinstance(p, (str, Path)):
            checkpoints.extend(find_checkpoints([str(p)]))
        elif hasattr(p, "family") and hasattr(p, "folder"):
            checkpoints.append(p)
        else:
            raise ValueError(f"policy {p!r}: give a built-in name, a checkpoint folder or a loaded checkpoint")
    query_ctx = None
    if any(n in ("sw", "mf", "clf") for n in names):
        if not isinstance(spec, str):
            raise ValueError("the learned query routers need trees given as a sim:PROFILE:test spec")
        query_ctx = make_query_context(spec, None, None, seed, progress)
    label = str(spec) if isinstance(spec, (str, Path)) else (" ".join(map(str, spec)) if groups else "trees")
    data = evaluate_policies(flat, names, n_boot=n_boot, seed=seed, routing_errors=routing_errors, progress=progress,
                             trees_label=label, checkpoints=checkpoints, query_ctx=query_ctx, groups=groups)
    result = Evaluation(data)
    if out is not None:
        result.write(out)
    return result


def export(run: Run | str | Path, out: str | Path, which: str = "best") -> Path:
    """Install a run's policy as a deployment checkpoint at ``out``."""
    return export_run(run.path if isinstance(run, Run) else run, out, which)
