"""``evaluate.py``, ``python -m trim_rl.evaluation.robustness``, ``python -m trim_rl.evaluation.headroom`` and
``python -m trim_rl.demo`` as a careless or hostile user meets them: every bad flag is one line naming
it (exit code 2), refused before any evaluation, training or generation starts and before the output
folder is created."""

from __future__ import annotations

import pytest

import trim_rl.cli.evaluate as evaluate_cli
from trim_rl.cli import demo
from trim_rl.evaluation import headroom, robustness
from trim_rl.evaluation.evaluation import evaluate_policies
from trim_rl.sim import bundled
from trim_rl.sim.generate import generate_file

from tests.conftest import refused_in_one_line as _refused
from tests.conftest import run_command as _run


def _forbidden(*a, **k):
    raise AssertionError("work started before the arguments were checked")


@pytest.fixture
def no_work(monkeypatch):
    """Reaching an evaluation, a POMDP solve, a training or a tree generation fails the test."""
    for module, name in ((evaluate_cli, "paper_report"), (evaluate_cli, "robustness_report"),
                         (robustness, "solved_pomdp"), (robustness, "robustness"), (headroom, "headroom"),
                         (bundled, "generate_file")):
        monkeypatch.setattr(module, name, _forbidden)
    # evaluate.py and the demo evaluate through trim_rl.evaluate, which checks everything before this
    monkeypatch.setattr("trim_rl.api.evaluate_policies", _forbidden)
    monkeypatch.setattr("trim_rl.api.train", _forbidden)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    p = tmp_path_factory.mktemp("flagtrees") / "t.jsonl"
    generate_file("math500", "test", 0, p, limit=3, draws=2)
    return str(p)




@pytest.mark.parametrize("args, words", [
    (["--bootstrap", "0"], ["--bootstrap"]),
    (["--bootstrap", "-5"], ["--bootstrap"]),
    (["--bootstrap", "1000000000"], ["--bootstrap", "100000"]),  # ~500 GB of resamples: refused up front
    (["--bootstrap", "ten"], ["--bootstrap"]),
    (["--prm-noise", "inf"], ["--prm-noise"]),
    (["--prm-noise", "nan"], ["--prm-noise"]),
    (["--prm-noise", "-0.5"], ["--prm-noise"]),
    (["--prm-flip", "1.5"], ["--prm-flip"]),
    (["--prm-flip", "nan"], ["--prm-flip"]),
    (["--routing-errors", "nan"], ["--routing-errors"]),
    (["--routing-errors", "-0.1"], ["--routing-errors"]),
    (["--routing-errors", "inf"], ["--routing-errors"]),
    (["--seed", "-1"], ["--seed"]),
    (["--seed", str(2**64)], ["--seed"]),
    (["--seed", "1.5"], ["--seed"]),
    (["--policies", "thr,random,thr"], ["--policies", "thr", "twice"]),
    (["--policies", "thr,nosuch"], ["--policies", "nosuch"]),
    (["--checkpoints", "nowhere"], ["nowhere"]),
])
def test_evaluate_refuses_a_bad_flag_before_any_work(tmp_path, capsys, no_work, trees, args, words):
    out = tmp_path / "rep"
    rc, err = _run(capsys, evaluate_cli.main, "--trees", trees, "--out", out, "--quiet", "--policies", "thr", *args)
    _refused(rc, err, *words)
    assert not out.exists()


@pytest.mark.parametrize("flag, spec, words", [
    ("--trees", "sim:math500:test:0-999999", ["--trees", "1000000 seeds"]),
    ("--trees", "sim:math500:test:2,2", ["--trees", "twice"]),
    ("--trees", "sim:math500:test:-3", ["--trees", "seed part"]),
    ("--trees", "sim:nosuch:test", ["--trees", "nosuch"]),
    ("--trees", "{missing}", ["--trees", "missing.jsonl"]),
    ("--train-trees", "sim:math500:dev", ["--train-trees", "dev"]),
    ("--val-trees", "sim:math500:val:0-500", ["--val-trees", "501 seeds"]),
])
def test_evaluate_checks_every_tree_spec_before_generating(tmp_path, capsys, no_work, monkeypatch, trees, flag, spec,
                                                            words):
    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "cache"))
    spec = spec.format(missing=tmp_path / "missing.jsonl")
    base = {"--trees": trees, "--train-trees": trees, "--val-trees": trees}
    base[flag] = spec
    rc, err = _run(capsys, evaluate_cli.main, *[x for kv in base.items() for x in kv], "--policies", "thr,sw",
                   "--out", tmp_path / "rep", "--quiet")
    _refused(rc, err, *words)
    assert not (tmp_path / "rep").exists() and not (tmp_path / "cache").exists()


def test_evaluate_names_a_folder_a_file_or_an_empty_name_given_for_the_other(tmp_path, capsys, no_work, trees):
    (tmp_path / "f").write_text("mine")
    out = tmp_path / "rep"
    for args, words in ((["--trees", ""], ["--trees", "''"]), (["--trees", tmp_path], ["--trees", "is a folder"]),
                        (["--trees", trees, "--checkpoints", tmp_path / "f"], ["f is a file"]),
                        (["--trees", trees, "--policies", "thr,sw"], ["--policies sw", "--train-trees"])):
        _refused(*_run(capsys, evaluate_cli.main, *args, "--out", out, "--quiet"), *words)
    assert not out.exists()


def test_evaluate_refuses_an_output_under_a_file(tmp_path, capsys, no_work, trees):
    (tmp_path / "f").write_text("mine")
    for out in (tmp_path / "f", tmp_path / "f" / "rep"):
        _refused(*_run(capsys, evaluate_cli.main, "--trees", trees, "--out", out, "--quiet"), "--out")
    assert (tmp_path / "f").read_text() == "mine"


def test_the_api_checks_its_numbers_too(trees):
    from trim_rl.sim.bundled import load_trees

    flat = load_trees(trees)
    for kw, word in (({"n_boot": 0}, "n_boot"), ({"n_boot": 10**9}, "n_boot"), ({"seed": -1}, "seed"),
                     ({"routing_errors": float("nan")}, "routing_errors")):
        with pytest.raises(ValueError, match=word):
            evaluate_policies(flat, ["thr"], progress=False, **kw)


def test_a_valid_evaluation_still_runs(tmp_path, capsys, trees):
    """The refusals leave ordinary values alone (the upper ends included)."""
    out = tmp_path / "rep"
    rc, err = _run(capsys, evaluate_cli.main, "--trees", trees, "--out", out, "--quiet", "--policies", "thr",
                   "--bootstrap", "3", "--seed", str(2**32 - 1), "--prm-noise", "0.5", "--prm-flip", "1",
                   "--routing-errors", "1")
    assert rc == 0, err
    assert (out / "metrics.json").exists()


# --- python -m trim_rl.evaluation.robustness ----------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--bootstrap", "0"], ["--bootstrap"]),
    (["--bootstrap", "10000000"], ["--bootstrap"]),
    (["--seed", "-2"], ["--seed"]),
    (["--noise", "nan"], ["--noise"]),
    (["--noise", "-1"], ["--noise"]),
    (["--flip", "2"], ["--flip"]),
    (["--lams", "nan"], ["--lams"]),
    (["--lams", "-0.001"], ["--lams"]),
    (["--lams"], ["--lams", "no price"]),
    (["--noise", "--flip"], ["--noise / --flip", "no condition"]),
    (["--noise", "--flip", "0"], ["--noise / --flip", "no condition"]),
    (["--trees", "sim:math500:test:0-99999"], ["--trees", "seeds"]),
    (["--train", "sim:math500:dev"], ["--train", "dev"]),
    (["--checkpoints", "nowhere"], ["nowhere"]),
])
def test_robustness_refuses_a_bad_flag_before_any_work(tmp_path, capsys, no_work, monkeypatch, args, words):
    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rob"
    rc, err = _run(capsys, robustness.main, "--out", out, "--quiet", *args)
    _refused(rc, err, *words)
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_robustness_refuses_an_output_that_is_a_file(tmp_path, capsys, no_work):
    (tmp_path / "f").write_text("mine")
    _refused(*_run(capsys, robustness.main, "--out", tmp_path / "f", "--quiet"), "--out")
    _refused(*_run(capsys, robustness.main, "--out", tmp_path / "f" / "rob", "--quiet"), "--out")
    assert (tmp_path / "f").read_text() == "mine"


# --- python -m trim_rl.evaluation.headroom ------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], ["--seed"]),
    (["--seed", str(2**32)], ["--seed"]),  # scikit-learn's random_state stops at 2**32 - 1
    (["--iters", "0"], ["--iters"]),
    (["--lams", "nan"], ["--lams"]),
    (["--lams", "0"], ["--lams"]),
    (["--out", "{tmp}"], ["--out"]),
    (["--train", "sim:math500:train:0-100000"], ["--train", "seeds"]),
    (["--trees", "sim:nosuch:test"], ["--trees", "nosuch"]),
])
def test_headroom_refuses_a_bad_flag_before_any_work(tmp_path, capsys, no_work, monkeypatch, args, words):
    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "cache"))
    args = [a.format(tmp=tmp_path) for a in args]
    _refused(*_run(capsys, headroom.main, *args), *words)
    assert not (tmp_path / "cache").exists()


# --- python -m trim_rl.demo ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--budgets", "5", "12", "5"], ["--budgets", "5", "twice"]),
    (["--budgets", "nan"], ["--budgets"]),
    (["--budgets", "-3"], ["--budgets"]),
    (["--budgets", "0"], ["--budgets"]),
    (["--seed", "-1"], ["--seed"]),
    (["--seed", str(10**30)], ["--seed"]),
    (["--bootstrap", "0"], ["--bootstrap"]),
    (["--bootstrap", str(10**12)], ["--bootstrap"]),
])
def test_demo_refuses_a_bad_flag_before_training(tmp_path, capsys, no_work, args, words):
    out = tmp_path / "demo"
    _refused(*_run(capsys, demo.main, "--out", out, *args), *words)
    assert not out.exists()


def test_demo_refuses_an_output_that_is_a_file_before_training(tmp_path, capsys, no_work):
    (tmp_path / "f").write_text("mine")
    _refused(*_run(capsys, demo.main, "--out", tmp_path / "f"), "--out")
    assert (tmp_path / "f").read_text() == "mine"


def test_demo_names_its_own_flag_for_a_budget_the_training_refuses(tmp_path, capsys, monkeypatch):
    from trim_rl.training.budget import BudgetError

    def refuse(*a, **k):
        raise BudgetError("--budget-grid: 500.0 is outside the feasible range")

    monkeypatch.setattr("trim_rl.api.train", refuse)
    monkeypatch.setattr(demo, "pregenerate", lambda args: None)  # the trees are not what this is about
    _refused(*_run(capsys, demo.main, "--out", tmp_path / "demo", "--budgets", "500"),
             "--budgets: 500.0 is outside the feasible range")
    assert not (tmp_path / "demo").exists()


def test_a_huge_prm_noise_runs_without_warnings(tmp_path, capsys, trees):
    """A finite sigma is accepted however large; the logit saturates to scores of 0 and 1, quietly."""
    import warnings

    import numpy as np

    from trim_rl.evaluation.perturb import perturb_scores

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = perturb_scores(np.array([0.2, 0.5, 0.9] * 50), 1e300, 0.0, np.random.default_rng(0))
    assert set(np.unique(s)) <= {0.0, 1.0} and 0.0 in s and 1.0 in s


def test_an_output_folder_that_is_not_writable_is_refused_before_any_work(tmp_path, capsys, monkeypatch, no_work,
                                                                         trees):
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # tests run as root: no read-only folder
    for main, args in ((evaluate_cli.main, ["--trees", trees]), (robustness.main, []), (demo.main, [])):
        _refused(*_run(capsys, main, *args, "--out", tmp_path / "rep"), "--out", "not writable")
    assert not (tmp_path / "rep").exists()


def test_an_output_file_that_is_not_writable_is_refused_before_any_work(tmp_path, capsys, monkeypatch, no_work):
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    _refused(*_run(capsys, headroom.main, "--out", tmp_path / "h.json"), "--out", "not writable")
