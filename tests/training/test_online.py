"""Online training (``train.py --live``) against the simulated backend over real HTTP: the run folder,
TensorBoard events, the decision log, checkpoints that ``serve`` loads, ``--resume``, ``--init-from``
a tree-trained checkpoint, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

from trim_rl.sim.server import SimServer  # noqa: E402
from trim_rl.cli.train import main  # noqa: E402
from tests.conftest import REPO

SMALL = ["n_envs:4", "n_steps:16", "batch_size:32", "n_epochs:2", "total_timesteps:128"]


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=0) as srv:
        yield srv


def _live(url: str, runs: Path, *extra: str, hyper=SMALL) -> list[str]:
    return ["--live", "--weak-url", url, "--strong-url", url, "--prm-url", url, "--weak-model", "sim-weak",
            "--strong-model", "sim-strong", "--prm-model", "sim-prm", "--problems", "sim:math500:train",
            "--max-interventions", "6", "--max-tokens", "4096", "--checkpoint-every", "64", "--strong-ref-problems", "8",
            "--runs", str(runs),
            "--no-progress", "--hyperparams", *hyper, *extra]


def _run_dir(runs: Path) -> Path:
    (d,) = [p for p in (runs / "trim_agg").iterdir() if p.is_dir()]
    return d


@pytest.mark.slow
def test_online_ppo_run_folder_log_checkpoint_and_resume(server, tmp_path, capsys):
    from trim_rl.live.serve.policies import load_served

    runs = tmp_path / "runs"
    assert main(_live(server.url, runs, "--budget", "15")) == 0
    run = _run_dir(runs)
    assert run.name.startswith("live-sim-math500-train__b15__0__")
    for f in ("config.yml", "command.txt", "git_hash.txt", "model.zip", "state.json", "result.json",
              "train_stats.json", "rollouts.jsonl", "policy/policy.json", "stages/online_ppo/policy.json"):
        assert (run / f).is_file(), f
    assert list((run / "tb").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"rollout/accuracy", "rollout/cost_pct", "rollout/lambda", "train/loss"} <= tags
    rows = [json.loads(line) for line in (run / "rollouts.jsonl").read_text().splitlines()]
    assert rows and all(r["kind"] == "trim_rl.decisions/1" for r in rows)
    state = json.loads((run / "state.json").read_text())
    assert state["timesteps"] == 128 and state["episodes"] == len(rows)
    for r in rows:
        assert len(r["decisions"]) == r["steps"]
        assert sum(d["strong_tokens"] for d in r["decisions"]) == r["strong_tokens"]
        for d in r["decisions"]:
            assert len(d["obs"]) == 6 and 0.0 < d["prob"] <= 1.0 and d["mask"][0] == 1
            assert d["action"] == 0 or d["mask"][1] == 1
    result = json.loads((run / "result.json").read_text())
    assert result["requested_budget"] == 15 and result["episodes"] == len(rows) and 0 < result["lam"] <= 1
    ref = json.loads((run / "strong_only.json").read_text())
    assert ref["problems"] == 8 and result["strong_only_tokens"] == ref["strong_tokens_per_problem"] > 100
    # the exported policy is what serve loads
    served, default = load_served([str(run / "policy")])
    assert served[default].mode == "hybrid"
    # resume extends it; the log keeps its rows and grows
    assert main(["--resume", str(run), "--hyperparams", "total_timesteps:192", "--no-progress"]) == 0
    assert json.loads((run / "state.json").read_text())["timesteps"] == 192
    after = [json.loads(line) for line in (run / "rollouts.jsonl").read_text().splitlines()][len(rows):]
    assert after
    # the resumed run goes on with new problems rather than replaying the stream from its start
    assert [r["problem_id"] for r in after[:4]] != [r["problem_id"] for r in rows[:4]]
    assert len((run / "command.txt").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert "already finished" in capsys.readouterr().out


@pytest.mark.slow
def test_online_from_a_tree_trained_checkpoint_at_a_fixed_price(server, tmp_path):
    ck = REPO / "checkpoints" / "trim_agg" / "trim_agg_b16"
    runs = tmp_path / "runs"
    hyper = ["n_envs:2", "n_steps:16", "batch_size:16", "n_epochs:1", "total_timesteps:32"]
    assert main(_live(server.url, runs, "--lam", "1e-3", "--init-from", str(ck), hyper=hyper)) == 0
    meta = json.loads((_run_dir(runs) / "policy" / "policy.json").read_text())
    assert meta["recipe"]["init_from"] == str(ck.resolve()) and meta["lam"] == pytest.approx(1e-3)


@pytest.mark.parametrize("argv, flag", [
    (["--weak-url", "http://x"], "--weak-url: applies to online training"),
    (["--live", "--budget", "15", "--strong-url", "http://127.0.0.1:9", "--problems", "math500"],
     "--weak-url: needed with --live"),
    (["--live", "--budget", "150", "--weak-url", "http://a", "--strong-url", "http://a", "--problems", "math500"],
     "--budget: 150"),
    (["--live", "--budget", "15", "--lam", "1e-3", "--weak-url", "http://a", "--strong-url", "http://a", "--problems",
      "math500"], "--live: give"),
    (["--live", "--budget", "15", "--weak-url", "http://a", "--strong-url", "http://a"], "--problems: needed with --live"),
    (["--live", "--budget", "15", "--weak-url", "http://a", "--strong-url", "http://a", "--problems", "sim:math500"],
     "--problems: 'sim:math500'"),
    (["--live", "--budget", "15", "--weak-url", "http://a", "--strong-url", "http://a", "--problems", "math500",
      "--budget-grid", "5", "10"],
     "--budget-grid: --live trains one policy"),
])
def test_refusals_name_the_flag(argv, flag, tmp_path, capsys):
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "trim_agg").exists() or not any((tmp_path / "runs" / "trim_agg").iterdir())


def test_the_price_follows_the_spend_once_per_rollout():
    from trim_rl.live.online import _Budget

    ep = {"strong_tokens": 60, "kept_weak_tokens": 200, "discarded_weak_tokens": 50}  # r = 1.2: 60 / 300 = 20%
    b = _Budget(15.0, 1e-3)
    for _ in range(100):
        b.observe(ep)
    assert b.lam == 1e-3  # nothing moves inside a rollout
    up = b.update()
    assert up > 1e-3 and b.ratio == pytest.approx(1.2)
    cheap = {"strong_tokens": 0, "kept_weak_tokens": 300, "discarded_weak_tokens": 0}
    for _ in range(20):
        for _ in range(10):
            b.observe(cheap)
        b.update()
    assert b.lam < up  # under budget: the price falls
    fixed = _Budget(None, 2e-3)
    fixed.observe(ep)
    assert fixed.update() == 2e-3  # --lam: a fixed price


def test_train_live_from_python(server, tmp_path):
    from trim_rl.live.online import train_live

    run = train_live(weak_url=server.url, strong_url=server.url, prm_url=server.url, problems="sim:math500:train",
                     lam=2e-3, runs=tmp_path, max_interventions=6, weak_model="sim-weak", strong_model="sim-strong",
                     prm_model="sim-prm", max_tokens=4096,
                     hyperparams=["n_envs:2", "n_steps:8", "batch_size:8", "n_epochs:1", "total_timesteps:16"])
    assert (run / "policy" / "policy.json").is_file() and (run / "rollouts.jsonl").is_file()
    with pytest.raises(Exception, match="colour: not a live decode setting"):
        train_live(weak_url=server.url, strong_url=server.url, problems="sim:math500:train", lam=1e-3, colour=1)


def test_the_python_api_trains_online_with_live(server, tmp_path):
    import trim_rl

    live = {"weak_url": server.url, "strong_url": server.url, "prm_url": server.url, "problems": "sim:math500:train",
            "max_interventions": 6, "weak_model": "sim-weak", "strong_model": "sim-strong", "prm_model": "sim-prm",
            "max_tokens": 4096}
    run = trim_rl.train(lam=2e-3, runs=tmp_path, live=live,
                        hyperparams=["n_envs:2", "n_steps:8", "batch_size:8", "n_epochs:1", "total_timesteps:16"])
    assert (run.path / "policy" / "policy.json").is_file() and (run.path / "rollouts.jsonl").is_file()
    with pytest.raises(ValueError, match="--budget-grid: --live trains one policy"):
        trim_rl.train(budget_grid=[5, 10], runs=tmp_path, live=live)


class _DiesAfter:
    """A weak engine whose server goes away after ``n`` calls (every later call fails after its retries)."""

    def __init__(self, inner, n: int):
        self.inner, self.n, self.name = inner, n, inner.name

    def generate(self, requests):
        from trim_rl.live.http import EngineError

        self.n -= 1
        if self.n < 0:
            raise EngineError("http://weak", "connection refused")
        return self.inner.generate(requests)


def test_servers_that_go_away_end_the_run_resumable(server, tmp_path):
    from trim_rl.live.engines import OpenAICompatibleEngine, Sampling
    from trim_rl.live.online import LiveSpec, ServersFailed, train_online
    from trim_rl.live.prm import VLLMPoolingPRM
    from trim_rl.live.routing import Backends
    from trim_rl.resources import config_file
    from trim_rl.training.config import load_agent
    from trim_rl.training.context import Target

    s = Sampling(max_tokens=4096)
    b = Backends(_DiesAfter(OpenAICompatibleEngine(server.url, "sim-weak", s), 40),
                 OpenAICompatibleEngine(server.url, "sim-strong", s), VLLMPoolingPRM(server.url, "sim-prm"))
    agent = load_agent(config_file("agents", "trim_agg"), ["n_envs:2", "n_steps:8", "batch_size:8", "n_epochs:1",
                                                           "total_timesteps:400"])
    agent.recipe = ["ppo"]
    spec = LiveSpec(server.url, server.url, server.url, "sim:math500:train", checkpoint_every=8, max_interventions=6)
    with pytest.raises(ServersFailed, match="in a row failed") as exc:
        train_online(agent, spec, Target(lam=1e-3), runs_root=tmp_path, backends=b)
    run = exc.value.run_dir
    assert exc.value.resumable and json.loads((run / "state.json").read_text())["timesteps"] > 0
    assert (run / "model.zip").is_file() and (run / "rollouts.jsonl").read_text()
