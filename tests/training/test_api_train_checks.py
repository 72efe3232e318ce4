"""The checks train.py used to make itself now live in trim_rl.train / trim_rl.resume / trim_rl.export:
the API refuses what the command refuses, with the message the command prints after ``train.py: ``."""

from __future__ import annotations

import pytest
import yaml

import trim_rl
from trim_rl import api
from trim_rl.cli import train as train_cli
from tests.conftest import REPO
from tests.conftest import run_command

POMDP_CK = next(p.parent for p in sorted((REPO / "checkpoints" / "trim_pomdp").rglob("policy.json")))


def _api_message(**kwargs) -> str:
    with pytest.raises(ValueError) as exc:
        trim_rl.train(**kwargs)
    return str(exc.value)


@pytest.mark.parametrize("kwargs, flags", [
    ({"agent": "trim_pomdp", "lam": 1e-3, "init_from": POMDP_CK},
     ["--agent", "trim_pomdp", "--lam", "1e-3", "--init-from", POMDP_CK]),
    ({"agent": "trim_agg_scratch", "budget": 10.0}, ["--agent", "trim_agg_scratch", "--budget", "10"]),
    ({"budget": 10.0, "init_from": ""}, ["--budget", "10", "--init-from="]),
    ({"budget": 10.0, "agent": ""}, ["--budget", "10", "--agent="]),
    ({"budget_grid": [5.0, 20.0, 5.0]}, ["--budget-grid", "5", "20", "5"]),
    ({"lam_grid": [1e-3, 0.001]}, ["--lam-grid", "1e-3", "0.001"]),
    ({"budget": 5.0, "lam": 1e-3}, ["--budget", "5", "--lam", "1e-3"]),
    ({"budget": 10.0, "hyperparams": ["init_from:/x"]}, ["--budget", "10", "--hyperparams", "init_from:/x"]),
    ({"lam": 1e-3, "init_from": POMDP_CK}, ["--lam", "1e-3", "--init-from", POMDP_CK]),
])
def test_the_api_refuses_what_train_py_refuses_with_its_message(tiny_env, tmp_path, capsys, kwargs, flags):
    runs = tmp_path / "runs"
    message = _api_message(env=str(tiny_env), runs=runs, **kwargs)
    rc, err = run_command(capsys, train_cli.main, "--env", tiny_env, "--runs", runs, "--no-progress", *flags)
    assert rc == 2 and err.strip() == f"train.py: {message}", (message, err)
    assert not runs.exists()


def test_init_from_for_a_pomdp_agent_is_refused_by_the_api(tiny_env, tmp_path):
    with pytest.raises(ValueError, match=r"^--init-from: applies to PPO agents, not TRIM-POMDP \(agent trim_pomdp\)$"):
        trim_rl.train("trim_pomdp", str(tiny_env), lam=1e-3, init_from=POMDP_CK, runs=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_runs_root_that_is_a_file_is_refused_by_the_api(tiny_env, tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(ValueError, match=r"^--runs: .*f is a file, not a folder$"):
        trim_rl.train(env=str(tiny_env), budget=10.0, runs=tmp_path / "f")


def test_an_unused_budget_is_said_by_the_api_and_printed_by_train_py(tiny_env, tmp_path, monkeypatch, capsys):
    class Stop(Exception):
        pass

    def stop(*a, **k):  # the warning comes before the trees are loaded; nothing needs training here
        raise Stop

    monkeypatch.setattr("trim_rl.api.check_inputs", stop)
    with pytest.warns(api.UnusedArgumentWarning,
                      match=r"^--budget is not used: agent trim_agg_budget is budget-conditioned"):
        with pytest.raises(Stop):
            trim_rl.train("trim_agg_budget", str(tiny_env), budget=10.0, runs=tmp_path / "runs")
    with pytest.raises(Stop):
        train_cli.main(["--agent", "trim_agg_budget", "--env", str(tiny_env), "--budget", "10", "--runs",
                        str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert err.startswith("train.py: --budget is not used: agent trim_agg_budget is budget-conditioned"), err
    # the env YAML's own budget is no argument of the call: nothing to say
    with pytest.raises(Stop):
        train_cli.main(["--agent", "trim_agg_budget", "--env", str(tiny_env), "--runs", str(tmp_path / "runs")])
    assert "not used" not in capsys.readouterr().err


def test_a_grid_with_failed_runs_raises_with_every_result_and_train_py_prints_them(tiny_env, tmp_path, monkeypatch,
                                                                                   capsys):
    from trim_rl.training.run import GridResult, Target

    done = tmp_path / "runs" / "trim_agg" / "tiny__lam0.002__0__x"
    results = [GridResult(Target(lam=5e-4), None, "RuntimeError: disk full"), GridResult(Target(lam=2e-3), done, None)]
    monkeypatch.setattr("trim_rl.api.check_inputs", lambda *a, **k: None)
    monkeypatch.setattr("trim_rl.api.train_grid", lambda *a, **k: results)
    with pytest.raises(api.GridFailed) as exc:
        trim_rl.train(env=str(tiny_env), lam_grid=[5e-4, 2e-3], runs=tmp_path / "runs")
    assert exc.value.results == results and [r.path for r in exc.value.runs] == [done]
    assert str(exc.value) == f"{results[0].target.label}: RuntimeError: disk full"
    rc = train_cli.main(["--env", str(tiny_env), "--lam-grid", "5e-4", "2e-3", "--runs", str(tmp_path / "runs"),
                         "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out.splitlines() == [f"failed: {results[0].target.label}: RuntimeError: disk full", f"run: {done}"]
    assert err.strip().endswith(f"train.py: 1 of 2 runs failed: {results[0].target.label}: RuntimeError: disk full")


def test_resume_is_refused_by_the_api_as_by_train_py(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^--resume: expected a path or name, got ''$"):
        trim_rl.resume("")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        trim_rl.resume(tmp_path / "nowhere")
    d = tmp_path / "trim_agg" / "x"
    d.mkdir(parents=True)
    (d / "config.yml").write_text(yaml.safe_dump({"agent": {"name": "trim_agg"}, "env": {"name": "tiny"},
                                                  "target": {"budget": 10.0, "lam": None}, "seed": 0}))
    (d / "model.zip").write_bytes(b"")
    (d / "state.json").write_text("{not json")
    with pytest.raises(ValueError) as exc:
        trim_rl.resume(d)
    assert "x/state.json: damaged (no readable timesteps)" in str(exc.value)
    rc, err = run_command(capsys, train_cli.main, "--resume", d)
    assert rc == 2 and err.strip() == f"train.py: {exc.value}"


def test_export_refuses_an_unknown_which(tmp_path):
    with pytest.raises(ValueError, match=r"^--which: expected best or last, got 'first'$"):
        trim_rl.export(tmp_path, tmp_path / "out", which="first")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_resume_from_python_completes_a_run_then_says_it_is_finished(tiny_env, tiny_args, tmp_path, monkeypatch):
    import trim_rl.training.recipe as recipe

    real = recipe._finish

    def killed(*a, **k):  # the process dies once PPO has finished, before the policy is written
        raise RuntimeError("killed")

    monkeypatch.setattr(recipe, "_finish", killed)
    with pytest.raises(RuntimeError, match="killed"):
        trim_rl.train(env=str(tiny_env), budget=10.0, runs=tmp_path, hyperparams=tiny_args)
    (d,) = [p for p in tmp_path.glob("*/*") if p.is_dir()]
    monkeypatch.setattr(recipe, "_finish", real)
    run = trim_rl.resume(d, command="resumed from python")
    assert isinstance(run, trim_rl.Run) and run.path == d and run.result["requested_budget"] == 10.0
    assert (d / "command.txt").read_text().splitlines()[-1] == "resumed from python"
    with pytest.raises(api.AlreadyFinished) as exc:
        trim_rl.resume(run)
    assert exc.value.run_dir == d and exc.value.timesteps is not None
