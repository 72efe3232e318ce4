"""The policy table (trim_rl.agents.catalog) and load_policy: one name per policy, aliases for the old
spellings, one error for an unknown name, and every consumer's list a view of the table."""

from __future__ import annotations

import numpy as np
import pytest

from trim_rl.agents import catalog
from trim_rl.agents.base import Policy, PolicyBase
from trim_rl.agents.baselines import ConstantPolicy, RandomStepPolicy, ThresholdPolicy
from trim_rl.agents.registry import load_policy


def test_names_and_aliases_resolve_to_one_entry():
    assert catalog.canonical("weak-only") == catalog.canonical("always-weak") == "always-weak"
    assert catalog.canonical("strong-only") == catalog.canonical("always-strong") == "always-strong"
    assert catalog.lookup("weak-only") is catalog.lookup("always-weak")
    every = [*catalog.names(), *(a for e in catalog.POLICIES for a in e.aliases)]
    assert len(every) == len(set(every)), "a name or alias is given twice"
    assert {e.level for e in catalog.POLICIES} == {catalog.STEP, catalog.QUERY}


@pytest.mark.parametrize("spec, cls, field, value", [
    ("thr:0.35", ThresholdPolicy, "k", 0.35), ("random:0.2", RandomStepPolicy, "p", 0.2),
    ("always-weak", ConstantPolicy, "action", 0), ("weak-only", ConstantPolicy, "action", 0),
    ("always-strong", ConstantPolicy, "action", 1), ("strong-only", ConstantPolicy, "action", 1),
])
def test_load_policy_builds_the_tables_step_policies(spec, cls, field, value):
    p = load_policy(spec)
    assert type(p) is cls and getattr(p, field) == value
    assert isinstance(p, Policy) and isinstance(p, PolicyBase)


def test_a_random_policy_is_seeded():
    obs = np.full((200, 6), 0.5)
    a = load_policy("random:0.5", seed=3).predict(obs)[0]
    assert np.array_equal(a, load_policy("random:0.5", seed=3).predict(obs)[0])
    assert not np.array_equal(a, load_policy("random:0.5", seed=4).predict(obs)[0])


@pytest.mark.parametrize("spec", ["nope", "always-weak:1", "weakonly"])
def test_an_unknown_name_is_one_error_listing_the_valid_names(spec):
    with pytest.raises(ValueError) as err:
        load_policy(spec)
    assert str(err.value) == (f"unknown policy {spec!r}; valid: thr:K, always-weak (weak-only), always-strong "
                              "(strong-only), random:P or a checkpoint folder")
    with pytest.raises(ValueError) as err:
        catalog.lookup(spec)
    assert str(err.value).startswith(f"unknown policy {spec!r}; valid: thr, always-weak (weak-only), ")
    assert all(n in str(err.value) for n in catalog.names())


def test_names_that_are_no_step_policy_say_so():
    with pytest.raises(ValueError, match=r"policy 'sw' is evaluated from the trees \(evaluate.py --policies\)"):
        load_policy("sw")
    with pytest.raises(ValueError, match=r"policy 'thr': expected thr:K"):
        load_policy("thr")
    with pytest.raises(ValueError, match="unknown step-level policy 'sw'; valid: thr, always-weak"):
        catalog.lookup("sw", catalog.STEP)


def test_the_fixed_modes_are_the_weak_and_strong_entries():
    assert catalog.decode_mode("always-weak") == catalog.decode_mode("weak-only") == "weak-only"
    assert catalog.decode_mode("always-strong") == catalog.decode_mode("strong-only") == "strong-only"
    assert [e.name for e in catalog.POLICIES if e.decode != catalog.HYBRID] == ["always-weak", "always-strong"]
    assert catalog.decode_mode("checkpoints/trim_agg/trim_agg_b20") == catalog.decode_mode("thr:0.5") == "hybrid"


def test_every_consumers_list_is_a_view_of_the_table():
    from trim_rl.agents.query import LEARNED, QUERY_ROUTERS
    from trim_rl.evaluation import paper, report
    from trim_rl.evaluation.evaluation import DEFAULT_POLICIES
    from trim_rl.evaluation.query_sweep import LABELS as QUERY_LABELS
    from trim_rl.evaluation.sweep import LABELS, RANDOM_P, THRESHOLDS

    step, query = catalog.names(catalog.STEP), catalog.names(catalog.QUERY)
    assert list(LABELS) == list(step) == paper.STEP_POLICIES == DEFAULT_POLICIES.split(",")
    assert list(QUERY_LABELS) == list(QUERY_ROUTERS) == list(query) == paper.QUERY_POLICIES
    assert set(LEARNED) <= set(query)
    # the labels users already see
    assert dict(LABELS) == {"thr": "TRIM-Thr", "always-weak": "always-weak", "always-strong": "always-strong",
                            "random": "random step router", "oracle-step": "step-level oracle",
                            "oracle-query": "query-level oracle"}
    assert "weak-only" in LABELS and LABELS["strong-only"] == "always-strong" and "sw" not in LABELS
    assert set(report.FIXED) <= set(step) and report._BUILTIN_LABELS == set(LABELS.values())
    assert THRESHOLDS == list(catalog.lookup("thr").grid) and RANDOM_P == list(catalog.lookup("random").grid)


def test_policy_base_declares_the_defaults_consumers_read():
    p = ConstantPolicy(0)
    assert (p.obs, p.budget_conditioned, p.stateful, p.lam, p.requested_budget, p.budget_table, dict(p.meta),
            p.family, p.folder) == ("agg", False, False, None, None, None, {}, "policy", None)
    assert type(p.builder()).__name__ == "AggObservation"
    with pytest.raises(ValueError, match="--budget: this policy carries no budget table"):
        p.lam_for_budget(20.0)


def test_an_alias_is_evaluated_under_the_canonical_name():
    from trim_rl.evaluation.evaluation import evaluate_policies
    from trim_rl.sim.bundled import load_trees

    trees = load_trees("sim:math500:val").subset(np.arange(40))
    res = evaluate_policies(trees, ["weak-only", "always-weak", "strong-only"], n_boot=10, progress=False)
    assert list(res["policies"]) == ["always-weak", "always-strong"]
    assert res["policies"]["always-weak"]["label"] == "always-weak"
    with pytest.raises(ValueError, match="unknown policy 'nope'; valid: thr, always-weak"):
        evaluate_policies(trees, ["thr", "nope"], n_boot=10, progress=False)
