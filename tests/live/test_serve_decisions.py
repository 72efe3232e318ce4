"""``serve --log-decisions FILE [--explore-rate P]`` against the simulated backend over real HTTP: the
log holds every routed decision with its probability in the format ``evaluate.py --logged`` reads,
answers are unchanged without exploration, and exploration is seeded per request."""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _serve import ThreadServer  # noqa: E402

from trim_rl.sim.backend import problems  # noqa: E402
from trim_rl.sim.server import SimServer  # noqa: E402

PROBS = [p.problem for p in problems("math500", "test", limit=12)]


@pytest.fixture(scope="module")
def sim():
    with SimServer(seed=0) as srv:
        yield srv


def _argv(url: str, *extra) -> list[str]:
    return ["serve", "--weak-url", url, "--strong-url", url, "--prm-url", url, "--weak-model", "sim-weak",
            "--strong-model", "sim-strong", "--prm-model", "sim-prm", "--max-tokens", "4096", "--max-interventions", "6",
            "--policy", "thr=thr:0.5", "--port", "0", "--wait-ready", "0", "--log-level", "warning", "--no-access-log",
            *map(str, extra)]


def _answers(srv) -> list[dict]:
    out = []
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        for i, text in enumerate(PROBS):
            r = c.post("/v1/chat/completions", json={"model": "thr", "seed": i,
                                                     "messages": [{"role": "user", "content": text}]})
            assert r.status_code == 200, r.text
            out.append(r.json())
    return out


def _log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_without_exploration_keeps_answers_and_records_every_decision(sim, tmp_path):
    with ThreadServer(_argv(sim.url)) as plain:
        base = _answers(plain)
    path = tmp_path / "decisions.jsonl"
    with ThreadServer(_argv(sim.url, "--log-decisions", path)) as logged:
        got = _answers(logged)
    assert [a["choices"][0]["message"]["content"] for a in got] == [b["choices"][0]["message"]["content"] for b in base]
    rows = _log(path)
    assert len(rows) == len(PROBS)
    for r in rows:
        assert r["kind"] == "trim_rl.decisions/1" and r["correct"] is None and r["behaviour"]["policy"] == "thr"
        assert r["steps"] == len(r["decisions"]) > 0
        assert all(d["prob"] == 1.0 and len(d["obs"]) == 6 for d in r["decisions"])
        # TRIM-Thr(0.5) regenerated exactly the drafts scored under 0.5 (where it could)
        assert all(d["action"] == int(d["obs"][0] < 0.5 and d["mask"][1] == 1) for d in r["decisions"])
        assert r["strong_tokens"] == sum(d["strong_tokens"] for d in r["decisions"])


def test_exploration_is_logged_with_its_probabilities_and_seeded(sim, tmp_path):
    from trim_rl.agents.registry import load_policy
    from trim_rl.evaluation.offpolicy import evaluate_logged

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        with ThreadServer(_argv(sim.url, "--log-decisions", path, "--explore-rate", "0.5")) as srv:
            _answers(srv)
    rows = _log(a)
    ds = [d for r in rows for d in r["decisions"] if d["mask"][1]]
    assert {d["prob"] for d in ds} == {0.75, 0.25}  # explored away from the policy, and not
    assert [r["decisions"] for r in rows] == [r["decisions"] for r in _log(b)]  # same seeds, same draws
    res = evaluate_logged(a, {"thr:0.3": load_policy("thr:0.3")})
    est = res["policies"]["thr:0.3"]
    assert res["behaviour_accuracy"] is None and est["accuracy"] is None  # served requests are not graded
    assert est["strong_tokens"]["dr"]["value"] >= 0 and est["ess"] > 0


def test_explore_rate_needs_a_log(sim, capsys):
    from trim_rl.live.cli import main

    assert main(_argv(sim.url, "--explore-rate", "0.2")) == 2
    assert "--explore-rate: needs --log-decisions" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(_argv(sim.url, "--log-decisions", "x.jsonl", "--explore-rate", "1.5"))
    assert exc.value.code == 2 and "--explore-rate: expected a probability" in capsys.readouterr().err
