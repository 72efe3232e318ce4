"""Operating points of checkpoints: a budget-conditioned checkpoint is evaluated at the budgets its
table covers, up to the most it spends."""


import numpy as np
import pytest

from trim_rl.agents.registry import load_checkpoint
from trim_rl.evaluation.sweep import EVAL_BUDGETS, checkpoint_families, sweep_checkpoints, table_budgets
from trim_rl.sim.bundled import load_trees
from tests.conftest import REPO



@pytest.mark.parametrize("lo, hi, want", [
    (0.0, 36.9, [3, 5, 8, 12, 16, 20, 25, 30, 35]),      # 36 is within 2 points of 35
    (0.0, 38.4, [3, 5, 8, 12, 16, 20, 25, 30, 35, 38]),  # the top, so the frontier reaches it
    (4.0, 9.0, [5, 8]),
    (0.0, 2.5, [2]),                                       # no listed budget inside: the top alone
    (0.0, 1.5, []),
    (0.0, 60.0, [*EVAL_BUDGETS, 60]),
])
def test_table_budgets(lo, hi, want):
    assert table_budgets(lo, hi) == [float(b) for b in want]


def test_the_shipped_budget_checkpoint_is_swept_at_its_table_budgets():
    policy = load_checkpoint(REPO / "checkpoints" / "trim_agg_budget")
    lo, hi = policy.budget_table.range()
    trees = load_trees("sim:math500:val").subset(np.arange(100))
    points = sweep_checkpoints([policy], trees)
    assert sorted(p.requested_budget for p in points) == table_budgets(lo, hi)
    # a larger budget buys more strong tokens: the spend grows with the request
    costs = [float(np.mean(p.records.strong_tokens)) for p in sorted(points, key=lambda p: p.requested_budget)]
    assert costs == sorted(costs) and costs[-1] > costs[0]


def test_policies_built_in_memory_join_their_family_and_are_told_apart_from_a_folder():
    from pathlib import Path
    from types import SimpleNamespace

    mem = [SimpleNamespace(family="F", folder=None) for _ in range(2)]
    assert checkpoint_families(mem) == {"F": mem}  # no folder: one frontier, named by the family alone
    disk = SimpleNamespace(family="F", folder=Path("/runs/a/ck"))
    fam = checkpoint_families([*mem, disk])
    assert fam == {"F [<in memory>]": mem, "F [runs/a]": [disk]}
