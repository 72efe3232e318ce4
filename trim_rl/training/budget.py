"""Budgets: a strong-token spend stated as a % of always-strong's, turned into what a policy needs.

* A per-budget network is calibrated by shifting its regenerate logit (:func:`calibrate_offset`):
  the smallest shift whose deterministic spend on the calibration trees is the budget.  The shift
  keeps the network's ranking of decisions and fixes only how many it regenerates.
* A budget-conditioned network takes the price lambda as input; its calibration table
  (:class:`BudgetTable`) maps budgets to the lambda that spends them on the calibration trees.

Spends are exact: :func:`trim_rl.data.tree_dp.play` walks every tree along the deterministic
policy and asks the network only about the nodes it reaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trim_rl.agents.budget_table import BudgetError, BudgetTable
from trim_rl.data.flat import FlatTrees
from trim_rl.data.tree_dp import cost_pct, max_spend, play


def feasible_range(trees: FlatTrees) -> tuple[float, float]:
    """(least, most) spend any policy can have on ``trees``, in % of always-strong's strong tokens."""
    return 0.0, cost_pct(trees, max_spend(trees))


def check_budget(budget: float, trees: FlatTrees, what: str = "--budget", trees_label: str = "") -> float:
    """``budget`` as a float if some policy can spend it on ``trees``; else :class:`BudgetError`."""
    lo, hi = feasible_range(trees)
    try:
        b = float(budget)
    except (TypeError, ValueError):
        raise BudgetError(f"{what}: {budget!r} is not a number (a % of always-strong's strong tokens)") from None
    where = f" on {trees_label}" if trees_label else ""
    if not math.isfinite(b) or not lo < b <= hi:
        raise BudgetError(f"{what}: {budget} is outside the feasible range{where}: more than {lo:g} and at most "
                          f"{hi:.1f} (% of always-strong's strong tokens; {hi:.1f} is regenerating every step the "
                          f"trees allow)")
    return b


class NodeMargins:
    """``logit(regenerate) - logit(keep)`` of a network at tree nodes, computed on first use and cached.

    ``builder`` is the observation builder the network was trained on (``agg``, budget-conditioned
    ``agg`` with ``lam``, or ``seq``)."""

    def __init__(self, trees: FlatTrees, net, builder, lam: float | None = None, batch: int = 8192):
        self.trees, self.net, self.builder, self.lam, self.batch = trees, net, builder, lam, int(batch)
        self.cache = np.full(trees.n_nodes, np.nan)

    def __call__(self, nodes: np.ndarray) -> np.ndarray:
        import torch

        nodes = np.asarray(nodes, dtype=np.int64)
        todo = np.unique(nodes[np.isnan(self.cache[nodes])])
        for i in range(0, todo.size, self.batch):
            part = todo[i:i + self.batch]
            if self.builder.name == "seq":
                obs = self.builder.at_nodes(self.trees, part)
            else:
                obs = self.builder.at_nodes(self.trees, part, lam=self.lam)
            with torch.no_grad():
                lg = self.net(torch.as_tensor(obs)).double().numpy()
            self.cache[part] = lg[:, 1] - lg[:, 0]
        return self.cache[nodes]


def spend(trees: FlatTrees, margins: NodeMargins, offset: float = 0.0) -> tuple[float, float]:
    """(accuracy, cost %) of regenerating where the margin exceeds ``offset``."""
    correct, tokens = play(trees, lambda n: margins(n) > offset)
    return float(correct.mean()), cost_pct(trees, tokens)


@dataclass
class Calibration:
    """Where a budget landed: the logit shift (or lambda) chosen and the spend it gives."""

    budget: float
    setting: float
    cost_pct: float
    accuracy: float


def calibrate_offset(trees: FlatTrees, margins: NodeMargins, budget: float, steps: int = 50) -> Calibration:
    """The regenerate-logit shift whose spend on ``trees`` is nearest ``budget`` (bisection: the
    spend falls as the shift rises, up to the rare node where dropping one regeneration opens a
    costlier path)."""
    lo, hi = -50.0, 50.0
    best = None
    for _ in range(int(steps)):
        mid = 0.5 * (lo + hi)
        acc, c = spend(trees, margins, mid)
        if best is None or abs(c - budget) < abs(best.cost_pct - budget):
            best = Calibration(float(budget), mid, c, acc)
        if c > budget:
            lo = mid
        else:
            hi = mid
    return best


def shift_regenerate_logit(net, offset: float) -> None:
    """Subtract ``offset`` from the network's regenerate logit (in place): it then regenerates exactly
    where its margin exceeded ``offset``."""
    import torch

    with torch.no_grad():
        net.action.bias[1] -= float(offset)


def build_table(trees: FlatTrees, net, builder, lam_range: tuple[float, float], n: int = 41,
                label: str = "") -> BudgetTable:
    """Spend of a budget-conditioned network at ``n`` log-spaced lambdas of ``lam_range`` on ``trees``."""
    rows = []
    for lam in np.geomspace(lam_range[0], lam_range[1], int(n)):
        acc, c = spend(trees, NodeMargins(trees, net, builder, lam=float(lam)))
        rows.append((float(lam), c, acc))
    return BudgetTable(rows, label)
