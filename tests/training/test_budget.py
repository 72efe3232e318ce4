"""Budgets on constructed trees whose answers are known by hand: feasible range, calibration of a
network's spend, policy iteration for a budget, and the budget table of a conditioned policy."""

import numpy as np
import pytest
import torch

from trim_rl.data.flat import load_flat
from trim_rl.data.trees import write_trees
from trim_rl.envs.observations import AggObservation
from trim_rl.training.budget import (BudgetError, BudgetTable, NodeMargins, calibrate_offset, check_budget,
                                  feasible_range, shift_regenerate_logit, spend)
from trim_rl.training.policy_iteration import PolicyIterationConfig, policy_iteration

PRMS = [0.1, 0.2, 0.3, 0.4]
STRONG = [10, 20, 30, 40]  # regenerating the k lowest-scored roots costs 2.5, 7.5, 15, 25 % of 4 x 100 tokens


def one_decision_tree(i: int, prm: float, strong_tokens: int) -> dict:
    """A problem decided at the first step: the weak step is final and wrong, the strong one final and right."""
    return {"schema": "trim_rl.tree/v1", "problem_id": f"toy/test/{i}", "dataset": "toy", "split": "test",
            "problem": f"p{i}", "answer": "1", "level": 1,
            "models": {"weak": "w", "strong": "s", "prm": "p"}, "max_interventions": 1,
            "strong_only": {"tokens": 100, "steps": 1, "correct": True},
            "nodes": [{"weak": {"tokens": 10, "prm": prm, "final": True, "correct": False},
                       "strong": {"tokens": strong_tokens, "prm": 0.9, "final": True, "correct": True},
                       "keep": None, "regenerate": None}]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: intra-op threads only slow them down
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    p = tmp_path_factory.mktemp("budget") / "toy.jsonl"
    write_trees(p, [one_decision_tree(i, s, t) for i, (s, t) in enumerate(zip(PRMS, STRONG))])
    return load_flat(p)


class LowScoreFirst(torch.nn.Module):
    """A network whose regenerate margin is minus the current PRM score."""

    def __init__(self):
        super().__init__()
        self.action = torch.nn.Linear(1, 2)  # only its bias is shifted by calibration
        with torch.no_grad():
            self.action.weight.zero_()
            self.action.bias.zero_()

    def forward(self, obs):
        base = self.action(torch.zeros(obs.shape[0], 1))
        return base + torch.stack([torch.zeros(obs.shape[0]), -obs[:, 0]], 1)


def test_feasible_range_and_refused_budgets(trees):
    lo, hi = feasible_range(trees)
    assert (lo, hi) == (0.0, 25.0)
    assert check_budget(7.5, trees) == 7.5
    for bad in (0, -3, 25.5, float("nan"), "x"):
        with pytest.raises(BudgetError, match=r"--budget: .* (feasible range|not a number)"):
            check_budget(bad, trees)
    with pytest.raises(BudgetError, match=r"at most 25\.0"):
        check_budget(40, trees, "--budget-grid")


@pytest.mark.parametrize("budget, cost, acc", [(2.5, 2.5, 0.25), (7.5, 7.5, 0.5), (10.0, 7.5, 0.5), (14.0, 15.0, 0.75),
                                               (25.0, 25.0, 1.0)])
def test_calibrated_spend_is_the_nearest_feasible_one(trees, budget, cost, acc):
    net = LowScoreFirst()
    cal = calibrate_offset(trees, NodeMargins(trees, net, AggObservation()), budget)
    assert cal.cost_pct == pytest.approx(cost) and cal.accuracy == pytest.approx(acc)
    shift_regenerate_logit(net, cal.setting)  # the shifted network spends it with no offset
    assert spend(trees, NodeMargins(trees, net, AggObservation())) == pytest.approx((acc, cost))


def test_policy_iteration_meets_the_budget_cheapest_first(trees):
    cfg = PolicyIterationConfig(rounds=3, samples=4000, epochs=30, batch_size=256, learning_rate=1e-2)
    for budget, acc in ((7.5, 0.5), (15.0, 0.75)):
        res = policy_iteration(trees, budget=budget, cfg=cfg, seed=1)
        assert res.cost_pct == pytest.approx(budget) and res.accuracy == pytest.approx(acc)
        # the folded network takes the same decisions: the cheapest regenerations
        assert spend(trees, NodeMargins(trees, res.net, AggObservation())) == pytest.approx((acc, budget))
        n = int(round(acc * 4))
        np.testing.assert_array_equal(res.regen, np.arange(4) < n)


def test_budget_table_interpolates_in_log_lambda():
    t = BudgetTable([(1e-3, 30.0, 0.7), (2e-3, 20.0, 0.6), (4e-3, 0.0, 0.37)], "toy")
    assert t.range() == (0.0, 30.0)
    assert t.lam_for(20.0) == pytest.approx(2e-3)
    assert t.lam_for(25.0) == pytest.approx(np.sqrt(1e-3 * 2e-3))
    assert t.lam_for(10.0) == pytest.approx(np.sqrt(2e-3 * 4e-3))
    with pytest.raises(BudgetError, match=r"--budget: 31 is outside this checkpoint's calibrated range 0\.0-30\.0"):
        t.lam_for(31)
    again = BudgetTable.from_json(t.to_json())
    assert again.rows == t.rows
    with pytest.raises(ValueError, match="budget_table.rows"):
        BudgetTable.from_json({"rows": [{"lam": -1, "cost_pct": 1, "accuracy": 0}]}, "x/policy.json")
