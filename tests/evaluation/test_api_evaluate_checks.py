"""The checks evaluate.py used to make itself now live in trim_rl.evaluate: the API refuses what the
command refuses, before any tree is generated or policy run, with the message evaluate.py prints."""

from __future__ import annotations

import pytest

import trim_rl
from trim_rl.cli import evaluate as evaluate_cli
from trim_rl.sim import bundled
from trim_rl.sim.generate import generate_file
from tests.conftest import run_command


def _forbidden(*a, **k):
    raise AssertionError("work started before the arguments were checked")


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bundled, "generate_file", _forbidden)
    monkeypatch.setattr("trim_rl.api.evaluate_policies", _forbidden)
    monkeypatch.setattr("trim_rl.api.load_pool", _forbidden)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    p = tmp_path_factory.mktemp("apitrees") / "t.jsonl"
    generate_file("math500", "test", 0, p, limit=3, draws=2)
    return str(p)


@pytest.mark.parametrize("kwargs, flags, message", [
    ({"policies": "thr,nosuch"}, ["--policies", "thr,nosuch"], r"^--policies: unknown nosuch; available: thr"),
    ({"policies": ["thr", "random", "thr"]}, ["--policies", "thr,random,thr"], r"^--policies: thr is named twice$"),
    ({"policies": ","}, ["--policies", ","], r"^--policies ',': names no policy \(and no --checkpoints given\)$"),
    ({"policies": ["thr", "sw"]}, ["--policies", "thr,sw"],
     r"^--policies sw: a learned query router needs --train-trees and --val-trees when --trees is a file$"),
    ({"trees_": "sim:math500:test:2,2"}, ["--trees", "sim:math500:test:2,2"], r"^--trees.*twice"),
    ({"policies": ["thr", "sw"], "train_trees": "sim:math500:dev", "val_trees": "sim:math500:val"},
     ["--policies", "thr,sw", "--train-trees", "sim:math500:dev", "--val-trees", "sim:math500:val"],
     r"^--train-trees.*dev"),
    ({"checkpoints": ["nowhere"]}, ["--checkpoints", "nowhere"], r"checkpoint folder nowhere does not exist"),
])
def test_the_api_refuses_what_evaluate_py_refuses_with_its_message(tmp_path, capsys, no_work, trees, kwargs, flags,
                                                                   message):
    out = tmp_path / "rep"
    spec = kwargs.pop("trees_", trees)
    with pytest.raises(ValueError if "checkpoints" not in kwargs else FileNotFoundError, match=message) as exc:
        trim_rl.evaluate(kwargs.pop("policies", "thr"), spec, out=out, **kwargs)
    rc, err = run_command(capsys, evaluate_cli.main, "--trees", spec, "--out", out, "--quiet",
                          *(flags if "--policies" in flags else ["--policies", "thr", *flags]))
    assert rc == 2 and err.strip() == f"evaluate.py: {exc.value}", err
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"routing_errors": 1.5}, r"^routing_errors: expected a fraction in \[0, 1\], got 1\.5$"),
    ({"routing_errors": float("nan")}, r"^routing_errors: expected a fraction"),
    ({"n_boot": 0}, r"^n_boot: expected a number of bootstrap resamples"),
    ({"seed": -1}, r"^seed: expected an integer"),
    ({"prm_noise": -0.5}, r"^prm_noise: expected a finite SD >= 0, got -0\.5$"),
    ({"prm_noise": float("inf")}, r"^prm_noise: expected a finite SD"),
    ({"prm_flip": 2.0}, r"^prm_flip: expected a fraction in \[0, 1\], got 2\.0$"),
])
def test_the_api_checks_its_numbers_before_generating_any_tree(no_work, tmp_path, kwargs, message):
    # a pool of seeds that are not cached: the check must come before their generation
    with pytest.raises(ValueError, match=message):
        trim_rl.evaluate(["thr"], "sim:math500:test:500-501", **kwargs)
    assert not (tmp_path / "cache").exists()


def test_the_api_refuses_an_output_under_a_file_before_any_work(no_work, tmp_path, trees):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(NotADirectoryError, match=r"^--out "):
        trim_rl.evaluate(["thr"], trees, out=tmp_path / "f" / "rep")
    assert (tmp_path / "f").read_text() == "mine"


def test_a_comma_separated_string_and_a_perturbation_are_evaluated_as_evaluate_py_does(tmp_path, trees):
    import json

    result = trim_rl.evaluate("thr,always-weak", trees, n_boot=2, prm_noise=0.5, out=tmp_path / "a")
    assert sorted(result.policies) == ["always-weak", "thr"]
    assert (result.data["prm_noise"], result.data["prm_flip"]) == (0.5, 0.0)
    assert "PRM logit noise sigma=0.5" in (tmp_path / "a" / "report.md").read_text()
    assert result.default_out.name == "t" and result.table()
    rc = evaluate_cli.main(["--trees", trees, "--policies", "thr,always-weak", "--bootstrap", "2", "--prm-noise", "0.5",
                            "--out", str(tmp_path / "b"), "--quiet"])
    assert rc == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    for m in (a, b):  # how long each policy took is no figure of the evaluation
        for p in m["policies"].values():
            p.pop("seconds", None)
    assert a == b
