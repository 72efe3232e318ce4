"""How a run scores a network on held-out trees (best-model selection and what TensorBoard shows).

* For a budget: the network's regenerate logit is shifted until its spend on the calibration trees
  is the budget (:func:`trim_rl.training.budget.calibrate_offset`), and the score is its accuracy on
  the calibration trees at that spend, so passes are compared at the same cost (the calibration
  trees hold several draws of the val problems: less noise than one draw).
* For a price lambda: accuracy - lambda x strong tokens of the deterministic policy on val.
* Budget-conditioned: that score averaged over the evaluation prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_rl.data.flat import FlatTrees
from trim_rl.training.budget import NodeMargins, calibrate_offset, spend


def _j(accuracy: float, cost: float, lam: float, trees: FlatTrees) -> float:
    return accuracy - lam * cost / 100.0 * float(trees.strong_only_tokens.mean())


@dataclass
class BudgetEvaluator:
    """Accuracy on ``val`` at the spend ``budget`` (calibrated on ``calib``)."""

    val: FlatTrees
    calib: FlatTrees
    budget: float
    builder: object
    same: bool = False  # calib is val

    def __call__(self, net, lam: float) -> dict:
        cal = calibrate_offset(self.calib, NodeMargins(self.calib, net, self.builder), self.budget)
        if self.same:
            acc, cost = cal.accuracy, cal.cost_pct
        else:
            acc, cost = spend(self.val, NodeMargins(self.val, net, self.builder), cal.setting)
        raw_acc, raw_cost = spend(self.calib, NodeMargins(self.calib, net, self.builder), 0.0)
        return {"accuracy": acc, "cost_pct": cost, "score": cal.accuracy, "offset": cal.setting,
                "calib_cost_pct": cal.cost_pct, "calib_accuracy": cal.accuracy,
                "raw_cost_pct": raw_cost, "raw_accuracy": raw_acc, "lambda": lam, "budget": self.budget}


@dataclass
class PriceEvaluator:
    """accuracy - lambda x strong tokens on ``val`` (deterministic policy, no shift)."""

    val: FlatTrees
    builder: object

    def __call__(self, net, lam: float) -> dict:
        acc, cost = spend(self.val, NodeMargins(self.val, net, self.builder), 0.0)
        return {"accuracy": acc, "cost_pct": cost, "score": _j(acc, cost, lam, self.val), "offset": 0.0,
                "raw_cost_pct": cost, "raw_accuracy": acc, "lambda": lam}


@dataclass
class ConditionedEvaluator:
    """Mean over ``lams`` of accuracy - lambda x strong tokens on ``val``, lambda shown to the network."""

    val: FlatTrees
    builder: object
    lams: list[float]

    def __call__(self, net, lam: float | None = None) -> dict:
        accs, costs, scores = [], [], []
        for x in self.lams:
            acc, cost = spend(self.val, NodeMargins(self.val, net, self.builder, lam=float(x)), 0.0)
            accs.append(acc)
            costs.append(cost)
            scores.append(_j(acc, cost, float(x), self.val))
        return {"accuracy": float(np.mean(accs)), "cost_pct": float(np.mean(costs)), "score": float(np.mean(scores)),
                "offset": 0.0, "raw_cost_pct": float(np.mean(costs)), "raw_accuracy": float(np.mean(accs)),
                "lambda": float(np.exp(np.mean(np.log(self.lams))))}
