"""The budget table of a budget-conditioned checkpoint: budget (% of always-strong's strong tokens) ->
price, as the trainer measured it; read by the checkpoint (``policy.json``) and written by the trainer
(:mod:`trim_rl.training.budget`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


class BudgetError(ValueError):
    """A requested budget the trees cannot meet (the message names the flag and the feasible range)."""


@dataclass
class BudgetTable:
    """Budget (% of always-strong) -> lambda of a budget-conditioned policy, measured on ``trees``.

    ``rows`` are (lambda, cost %, accuracy) in rising lambda; the spend falls with lambda.  A budget
    between two rows gets the log-linear interpolation of their lambdas."""

    rows: list[tuple[float, float, float]]
    trees: str = ""
    extra: dict = field(default_factory=dict)

    def range(self) -> tuple[float, float]:
        costs = [c for _, c, _ in self.rows]
        return min(costs), max(costs)

    def lam_for(self, budget: float, what: str = "--budget") -> float:
        lo, hi = self.range()
        b = float(budget)
        if not math.isfinite(b) or not lo <= b <= hi:
            raise BudgetError(f"{what}: {budget} is outside this checkpoint's calibrated range {lo:.1f}-{hi:.1f} "
                              f"(% of always-strong's strong tokens, measured on {self.trees or 'its calibration trees'})")
        lam = np.array([r[0] for r in self.rows])
        cost = np.array([r[1] for r in self.rows])
        # the spend falls with lambda; among equal spends take the highest lambda (the cheapest setting)
        order = np.argsort(-cost, kind="stable")
        c, l_ = cost[order], np.log(lam[order])
        i = int(np.searchsorted(-c, -b, side="left"))
        if i == 0:
            return float(np.exp(l_[0]))
        if i >= c.size:
            return float(np.exp(l_[-1]))
        if c[i - 1] == c[i]:
            return float(np.exp(l_[i]))
        t = (c[i - 1] - b) / (c[i - 1] - c[i])
        return float(np.exp(l_[i - 1] + t * (l_[i] - l_[i - 1])))

    def to_json(self) -> dict:
        return {"trees": self.trees, "rows": [{"lam": l_, "cost_pct": c, "accuracy": a} for l_, c, a in self.rows],
                **self.extra}

    @classmethod
    def from_json(cls, data: dict, where: str = "policy.json") -> BudgetTable:
        try:
            rows = [(float(r["lam"]), float(r["cost_pct"]), float(r["accuracy"])) for r in data["rows"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: field 'budget_table.rows' must be a list of {{lam, cost_pct, accuracy}}") from None
        if not rows or any(not (math.isfinite(l_) and l_ > 0 and math.isfinite(c)) for l_, c, _ in rows):
            raise ValueError(f"{where}: field 'budget_table.rows' is empty or holds a non-positive lambda")
        return cls(sorted(rows), str(data.get("trees", "")))
