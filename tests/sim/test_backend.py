"""The simulated live backend (``python -m trim_rl.sim serve``) against the real live engines, scorer,
decoder and CLI over real HTTP: graded decoding, determinism, agreement with the offline simulator,
and answers in the shapes of ``tests/live/_vllm.py``."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("uvicorn")

from trim_rl.data.problems import load_problems  # noqa: E402
from trim_rl.live.engines import OpenAICompatibleEngine, Sampling, StepRequest  # noqa: E402
from trim_rl.live.http import EngineError  # noqa: E402
from trim_rl.live.prm import VLLMPoolingPRM  # noqa: E402
from trim_rl.live.results import ResultsFile  # noqa: E402
from trim_rl.sim.backend import TAG_RE, SimBackend, problems, reference_answer  # noqa: E402
from trim_rl.sim.server import SimServer, make_app  # noqa: E402

from tests.conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "live"))
from _stub_server import Request  # noqa: E402
from _vllm import STEP_TAG, FakeVLLM  # noqa: E402

K_MAX = 6  # the math500 profile's max_interventions, as the offline paths use
BIG = Sampling(max_tokens=4096)  # no step is cut, as in the offline simulator


def _engines(url: str, sampling: Sampling = BIG):
    return (OpenAICompatibleEngine(url, "sim-weak", sampling), OpenAICompatibleEngine(url, "sim-strong", sampling),
            VLLMPoolingPRM(url, "sim-prm"))


def _decode(url: str, probs, mode: str, policy: str | None, out: Path) -> tuple[dict, list[dict]]:
    from trim_rl.live.decoder import DecodeSettings, HybridDecoder
    from trim_rl.live.router import Router, load_policy

    weak, strong, prm = _engines(url)
    router = Router(load_policy(policy)) if policy else None
    dec = HybridDecoder(weak, strong, prm, router, DecodeSettings(mode=mode, max_interventions=K_MAX))
    res = ResultsFile(out)
    summary = dec.run(probs, res, progress=False)
    return summary, [res.done[p.problem_id] for p in probs]


def _latent_correct(row: dict) -> bool:
    """Correct by the simulator's latent states: every accepted step's tag says 0 and the last is final."""
    states = [int(TAG_RE.search(s["text"]).group(2)) for s in row["steps"]]
    return all(s == 0 for s in states) and "\\boxed" in row["steps"][-1]["text"]


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=0) as srv:
        yield srv


# -- (a) live decode with TRIM-Thr through the CLI, graded ----------------------------------------------
def _start_cli(*flags) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "trim_rl.sim", "serve", "--port", "0", *flags], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"(http://\S+) \(Ctrl-C", line)
    if m is None:
        proc.kill()
        pytest.fail(f"no serving line: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


@pytest.mark.slow
def test_live_decode_cli_thr_on_simulated_problems(tmp_path):
    problems_file = tmp_path / "sim_problems.jsonl"
    r = subprocess.run([sys.executable, "-m", "trim_rl.sim", "serve", "--write-problems", str(problems_file),
                        "--limit", "20"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    probs = load_problems(str(problems_file))
    assert len(probs) == 20 and probs[3].problem.startswith("sim problem 3 of math500/test, draw 0.")
    assert probs[3].answer == reference_answer("math500", "test", 3)
    proc, url = _start_cli("--seed", "3", "--token-latency-ms", "0.05", "--prefill-latency-ms", "1")
    try:
        out = tmp_path / "thr.jsonl"
        r = subprocess.run([sys.executable, "-m", "trim_rl.live", "decode", "--weak-url", url, "--strong-url", url,
                            "--prm-url", url, "--weak-model", "sim-weak", "--strong-model", "sim-strong",
                            "--prm-model", "sim-prm", "--policy", "thr:0.5", "--problems", str(problems_file),
                            "--out", str(out), "--max-tokens", "1024", "--quiet"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        stats = httpx.get(f"{url}/sim/stats").json()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    assert "stopped" in proc.stderr.read()
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 20 and {r["finish"] for r in rows} <= {"answer", "max_steps"}
    assert all(r["grade"] in ("correct", "incorrect") for r in rows)
    # the grader's verdict is the simulator's latent correctness, problem by problem
    assert [r["correct"] for r in rows] == [_latent_correct(r) for r in rows]
    assert 0 < sum(r["correct"] for r in rows) < 20
    assert sum(r["interventions"] for r in rows) > 0
    # every regenerated step replaced a draft the policy scored below 0.5, every kept one scored >= 0.5
    for r in rows:
        for s in r["steps"]:
            assert (s["by"] == "strong") == ("draft" in s)
            assert (s["draft"]["prm"] < 0.5) if "draft" in s else s["prm"] >= 0.5
    # the PRM scores the decoder saw are the ones the simulator drew with each step (seed 3)
    sim = SimBackend(seed=3)
    for r in rows[:5]:
        ref = sim.parse_problem(r["problem"], "problem")
        draws, _, _ = sim.replay(ref, sim.tags("\n\n".join(s["text"] for s in r["steps"]), "x"))
        assert [s["prm"] for s in r["steps"]] == pytest.approx([d.prm for d in draws], abs=1e-9)
        assert [s["tokens"] for s in r["steps"]] == [d.tokens for d in draws]
    # token counts: what decode recorded is what the server says it generated
    assert stats["completion_tokens"]["sim-strong"] == sum(r["strong_tokens"] for r in rows)
    assert stats["completion_tokens"]["sim-weak"] == sum(r["weak_tokens"] for r in rows)
    summary = json.loads(out.with_name("thr.summary.json").read_text())
    assert summary["complete"] and summary["finished"] == 20


# -- (b) same seed, same answers ------------------------------------------------------------------------
def test_same_seed_same_decoding(tmp_path):
    probs = problems("math500", "val", draws=2, limit=6)
    runs = []
    for seed in (7, 7, 8):
        with SimServer(seed=seed) as srv:
            _, rows = _decode(srv.url, probs, "hybrid", "thr:0.5", tmp_path / f"{len(runs)}.jsonl")
        runs.append([(r["problem_id"], [(s["text"], s["prm"], s["tokens"], s["by"]) for s in r["steps"]], r["correct"])
                     for r in rows])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_greedy_is_a_function_of_the_prompt_sampled_of_the_seed(server):
    probs = problems("math500", "test", limit=8)
    weak = OpenAICompatibleEngine(server.url, "sim-weak", BIG)
    first = weak.generate([StepRequest(p.problem) for p in probs])
    again = weak.generate([StepRequest(p.problem) for p in reversed(probs)])[::-1]  # other batch, other order
    assert first == again
    hot = OpenAICompatibleEngine(server.url, "sim-weak", Sampling(max_tokens=4096, temperature=0.7))
    a = hot.generate([StepRequest(p.problem, seed=11) for p in probs])
    b = hot.generate([StepRequest(p.problem, seed=11) for p in probs])
    c = hot.generate([StepRequest(p.problem, seed=12) for p in probs])
    assert a == b and a != c and a != first
    # a second step depends on the first: the same prefix gives the same step, another prefix another
    nxt = weak.generate([StepRequest(probs[0].problem, (first[0].text,)), StepRequest(probs[0].problem, (a[0].text,))])
    assert nxt == weak.generate([StepRequest(probs[0].problem, (first[0].text,)),
                                 StepRequest(probs[0].problem, (a[0].text,))])
    assert nxt[0].text != nxt[1].text


# -- (c) agreement with the offline simulator -----------------------------------------------------------
@pytest.mark.slow
def test_agrees_with_offline_simulator(server, tmp_path):
    """Weak-only, strong-only and TRIM-Thr(0.5) decoded live on 400 episodes (the 200 test problems, 2
    draws) agree with the offline path simulator on the same problems (40 draws) within 4 standard
    errors of the difference, each taken from the simulator's own per-episode spread."""
    from trim_rl.sim.params import load_params
    from trim_rl.sim.pathsim import simulate
    from trim_rl.sim.profiles import profile_problems

    params = load_params()
    prof = params.profiles["math500"]
    offline = simulate(params.model, prof, profile_problems(prof, "test"), ["weak", "strong", 0.5], draws=40, seed=5,
                       max_interventions=K_MAX)
    probs = problems("math500", "test", draws=2)
    n = len(probs)
    live = {}
    for mode, policy, key in (("weak-only", None, "weak"), ("strong-only", None, "strong"), ("hybrid", "thr:0.5", 0.5)):
        summary, rows = _decode(server.url, probs, mode, policy, tmp_path / f"{key}.jsonl")
        assert summary["complete"] and summary["error"] is None
        assert [r["correct"] for r in rows] == [_latent_correct(r) for r in rows]
        live[key] = rows

    def close(live_values, offline_values, what):
        lv, ov = np.asarray(live_values, dtype=float), np.asarray(offline_values, dtype=float)
        se = math.sqrt(ov.var() / len(lv) + ov.var() / len(ov))
        assert abs(lv.mean() - ov.mean()) <= 4 * se, f"{what}: live {lv.mean():.4g}, offline {ov.mean():.4g} (se {se:.3g})"

    for key, rows in live.items():
        off = offline[key]
        close([r["correct"] for r in rows], off.correct, f"{key} accuracy")
        close([r["strong_tokens"] for r in rows], off.strong_tokens, f"{key} strong tokens")
        close([r["weak_tokens"] for r in rows], off.kept_weak_tokens + off.discarded_weak_tokens, f"{key} weak tokens")
        close([r["n_steps"] for r in rows], off.steps, f"{key} steps")
        close([r["interventions"] for r in rows], off.calls, f"{key} regenerations")
    # TRIM-Thr's strong-token share of always-strong's, the quantity budgets are stated in
    share_live = np.mean([r["strong_tokens"] for r in live[0.5]]) / np.mean([r["strong_tokens"] for r in live["strong"]])
    share_off = offline[0.5].strong_tokens.mean() / offline["strong"].strong_tokens.mean()
    # delta method on the ratio of two means (the two are drawn independently)
    s_thr, s_str = offline[0.5].strong_tokens, offline["strong"].strong_tokens
    rel = math.sqrt((s_thr.var() / s_thr.mean() ** 2 + s_str.var() / s_str.mean() ** 2) * (1 / n + 1 / len(s_thr)))
    assert abs(share_live - share_off) <= 4 * rel * share_off, (share_live, share_off)
    # the routing still separates the end points: a real difference, not sampling noise
    assert np.mean([r["correct"] for r in live["weak"]]) + 0.15 < np.mean([r["correct"] for r in live[0.5]])


# -- (d) the formats of vllm serve ------------------------------------------------------------------------
def _shape(x):
    """The JSON structure: keys and value kinds (lists by their first item)."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_shape(x[0])] if x else []
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    return type(x).__name__


def _fake():
    return FakeVLLM(model="sim-weak", max_model_len=32768, gen=lambda q, p: ("x" * 40, "stop", "\n\n"),
                    prm=lambda q: [0.7] * q.count(STEP_TAG))


def _as_fake(payload: dict, path: str):
    return _fake()(Request("POST", path, payload, {}, 0))


def test_completions_match_vllm_format(server):
    probs = problems("math500", "test", limit=3)
    prompts = [p.problem for p in probs]
    for payload in ({"model": "sim-weak", "prompt": prompts[0], "max_tokens": 512, "temperature": 0},
                    {"model": "sim-weak", "prompt": prompts, "max_tokens": 512, "temperature": 0, "return_token_ids": True}):
        got = httpx.post(f"{server.url}/v1/completions", json=payload).json()
        want = _as_fake(payload, "/v1/completions")
        assert _shape(got) == _shape(want)
        assert [c["index"] for c in got["choices"]] == list(range(len(got["choices"])))
        made = [len(c["token_ids"]) for c in got["choices"]] if payload.get("return_token_ids") else None
        if made:
            assert got["usage"]["completion_tokens"] == sum(made)
        assert all(c["finish_reason"] == "stop" and c["stop_reason"] in ("\n\n", None) for c in got["choices"])
    # cut at max_tokens: "length", no stop reason, the tag kept
    got = httpx.post(f"{server.url}/v1/completions", json={"model": "sim-strong", "prompt": prompts[0], "max_tokens": 5,
                                                           "temperature": 0}).json()
    c = got["choices"][0]
    assert (c["finish_reason"], c["stop_reason"], got["usage"]["completion_tokens"]) == ("length", None, 5)
    assert TAG_RE.match(c["text"]) and c["text"].startswith("[sim s")


def test_pooling_and_models_match_vllm_format(server):
    p = problems("math500", "test", limit=1)[0]
    weak, _, prm = _engines(server.url)
    steps = []
    for _ in range(3):
        steps.append(weak.generate([StepRequest(p.problem, tuple(steps))])[0].text)
    inputs = [prm.builder.prompt(p.problem, steps[: k + 1]) for k in range(3)]
    payload = {"model": "sim-prm", "input": inputs, "encoding_format": "float", "add_special_tokens": False}
    got = httpx.post(f"{server.url}/pooling", json=payload).json()
    want = _as_fake(payload, "/pooling")
    assert _shape(got) == _shape(want)
    rows = [d["data"] for d in got["data"]]
    assert [len(r) for r in rows] == [1, 2, 3] and all(len(x) == 2 and abs(sum(x) - 1) < 1e-3 for r in rows for x in r)
    assert rows[2][:2] == rows[1] and rows[1][:1] == rows[0]  # a step's score does not change with later steps
    assert prm.score([(p.problem, steps)]) == [[x[1] for x in rows[2]]]
    models = httpx.get(f"{server.url}/v1/models").json()
    fake = _fake()(Request("GET", "/v1/models", None, {}, 0))
    assert _shape(models) == _shape(fake)
    assert [m["id"] for m in models["data"]] == ["sim-weak", "sim-strong", "sim-prm"]
    assert {m["owned_by"] for m in models["data"]} == {"vllm"}
    h = httpx.get(f"{server.url}/health")
    assert (h.status_code, h.content) == (200, b"")


def test_errors_in_vllm_form(server):
    url = server.url
    p = problems("math500", "test", limit=1)[0]
    r = httpx.post(f"{url}/v1/completions", json={"model": "nope", "prompt": p.problem})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = httpx.post(f"{url}/v1/completions", json={"model": "sim-weak", "prompt": "What is 2 + 2?"})
    assert r.status_code == 400 and "no simulated problem" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"model": "sim-weak", "prompt": p.problem.replace("math500", "aime")})
    assert r.status_code == 400 and "profile 'aime'" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"model": "sim-weak", "prompt": "sim problem 999 of math500/test, draw 0."})
    assert r.status_code == 400 and "200 problems" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/pooling", json={"model": "sim-weak", "input": p.problem})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    # a step whose tag another simulator wrote (its state edited here) is refused, not scored
    weak = OpenAICompatibleEngine(url, "sim-weak", BIG)
    step = weak.generate([StepRequest(p.problem)])[0].text
    tag = TAG_RE.match(step)
    forged = step.replace(tag.group(0), f"[sim w{1 if tag.group(2) == '0' else 0} {tag.group(3)}]")
    r = httpx.post(f"{url}/pooling", json={"model": "sim-prm", "input": f"{p.problem}\n{forged}{STEP_TAG}"})
    assert r.status_code == 400 and "not this simulator's" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/pooling", json={"model": "sim-prm", "input": f"{p.problem}\n{step}"})
    assert r.status_code == 400 and "step tags" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", content=b"{not json")
    assert r.status_code == 400
    assert httpx.get(f"{url}/v1/completions").status_code == 405
    with pytest.raises(EngineError):  # the engine names the server and the error, it does not hang or retry forever
        weak.generate([StepRequest("What is 2 + 2?")])


def test_context_length_as_vllm():
    """A prompt past max_model_len is vLLM's 400, which the engine turns into a solution that ends there."""
    p = problems("math500", "test", limit=1)[0]
    with SimServer(seed=0, max_model_len=200) as srv:
        weak = OpenAICompatibleEngine(srv.url, "sim-weak", BIG)
        steps, res = [], None
        for _ in range(40):
            res = weak.generate([StepRequest(p.problem, tuple(steps))])[0]
            if res.finish_reason == "context":
                break
            steps.append(res.text)
        assert res.finish_reason == "context" and res.tokens == 0
        r = httpx.post(f"{srv.url}/v1/completions", json={"model": "sim-weak", "prompt": p.problem + "x" * 1000})
        assert r.status_code == 400 and "maximum context length is 200 tokens" in r.json()["error"]["message"]


# -- latency ------------------------------------------------------------------------------------------------
def _asgi_call(app, method: str, path: str, payload=None):
    body = json.dumps(payload).encode() if payload is not None else b""
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await app({"type": "http", "method": method, "path": path}, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"] or b"null")

    return run()


def test_latency_is_per_call_longest_prompt_and_calls_overlap():
    """A batched call waits prefill + token latency x its longest completion; two calls wait side by side
    (the second enters its wait while the first is still in its own)."""
    waits: list[float] = []
    both_waiting = {}

    async def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            both_waiting["event"].set()
        await asyncio.wait_for(both_waiting["event"].wait(), 5)  # a server serialising calls never gets here twice

    app = make_app(SimBackend(seed=0), token_latency_ms=2.0, prefill_latency_ms=30.0, sleep=sleep)
    prompts = [p.problem for p in problems("math500", "test", limit=4)]

    async def both():
        both_waiting["event"] = asyncio.Event()
        return await asyncio.gather(
            _asgi_call(app, "POST", "/v1/completions", {"model": "sim-weak", "prompt": prompts, "max_tokens": 4096,
                                                        "temperature": 0, "return_token_ids": True}),
            _asgi_call(app, "POST", "/pooling", {"model": "sim-prm", "input": prompts[0]}))

    (status, answer), (pstatus, _) = asyncio.run(both())
    assert status == 200 and pstatus == 200
    longest = max(len(c["token_ids"]) for c in answer["choices"])
    assert longest < answer["usage"]["completion_tokens"]  # the longest prompt, not the sum
    assert sorted(waits) == pytest.approx(sorted([0.030 + 0.002 * longest, 0.030]))


# -- command line -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, names", [
    (["--profile", "nope"], "--profile"),
    (["--port", "70000"], "--port"),
    (["--token-latency-ms", "-1"], "--token-latency-ms"),
    (["--prefill-latency-ms", "nan"], "--prefill-latency-ms"),
    (["--seed", "-1"], "--seed"),
    (["--max-model-len", "3"], "--max-model-len"),
    (["--draws", "0", "--write-problems", "x.jsonl"], "--draws"),
    (["--write-problems", "tests"], "--write-problems"),
    (["--host", "no such host.invalid"], "--host"),
])
def test_bad_flags_are_one_line(flags, names):
    r = subprocess.run([sys.executable, "-m", "trim_rl.sim", "serve", *flags], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and names in r.stderr, r.stderr


def test_port_in_use_is_one_line():
    with SimServer() as srv:
        port = srv.url.rsplit(":", 1)[1]
        r = subprocess.run([sys.executable, "-m", "trim_rl.sim", "serve", "--port", port], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and f"--port {port}" in r.stderr, r.stderr
