"""What a training call asks for: one budget, a grid of budgets, or (for experts) prices."""

from __future__ import annotations

import math
from collections.abc import Sequence

from trim_rl.configs import ConfigError
from trim_rl.training.checks import check_distinct
from trim_rl.training.config import AgentConfig, EnvConfig
from trim_rl.training.context import Target


def resolve_targets(agent: AgentConfig, env: EnvConfig, budget: float | None = None,
                    budget_grid: Sequence[float] | None = None, lam: float | None = None,
                    lam_grid: Sequence[float] | None = None) -> tuple[list[Target], bool, str]:
    """(targets, whether they form a grid, the flag they came from).  A grid given empty takes the
    env (or POMDP agent) YAML's; with nothing given, the env YAML's ``budget`` (else its ``lam``)."""
    given = [f for f, v in (("--budget", budget), ("--budget-grid", budget_grid), ("--lam", lam),
                            ("--lam-grid", lam_grid)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{given[0]} and {given[1]}: choose one")
    if budget_grid is not None:
        grid = list(budget_grid) or list(env.budget_grid or [])
        if not grid:
            raise ConfigError(f"--budget-grid without values needs budget_grid in the env YAML ({env.name})")
        check_distinct(grid, "--budget-grid")
        return [Target(budget=float(b)) for b in grid], True, "--budget-grid"
    if lam_grid is not None:
        grid = list(lam_grid) or list((agent.lam_grid if agent.algo == "pomdp" else None) or env.lam_grid or [])
        if not grid:
            raise ConfigError("--lam-grid without values needs lam_grid in the env (or POMDP agent) YAML")
        for v in grid:
            _check_price(v, "--lam-grid")
        check_distinct(grid, "--lam-grid")
        return [Target(lam=float(v)) for v in grid], True, "--lam-grid"
    if lam is not None:
        _check_price(lam, "--lam")
        return [Target(lam=float(lam))], False, "--lam"
    if budget is not None:
        return [Target(budget=float(budget))], False, "--budget"
    if env.budget is not None:
        return [Target(budget=float(env.budget))], False, f"budget (env YAML {env.name})"
    if env.lam is not None:
        return [Target(lam=float(env.lam))], False, f"lam (env YAML {env.name})"
    raise ConfigError(f"no budget given: use --budget PCT or set budget in the env YAML ({env.name})")


def _check_price(v: float, flag: str) -> None:
    # correct answers per strong token: at 1 no regeneration pays for itself, so a higher price trains
    # the same never-regenerate policy (and a huge one overflows PPO's returns)
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
        raise ConfigError(f"{flag}: expected a price > 0, got {v}")
    if v > 1:
        raise ConfigError(f"{flag}: expected a price of at most 1 (at 1 a strong token costs a correct answer and "
                          f"nothing is regenerated), got {v:g}")
