"""``python -m trim_rl.live decode|collect`` against local servers that answer as vLLM does (see
:mod:`_vllm`): user errors are one line and exit 2, server errors exit 3 naming the server, results
files are never mixed, and long solutions run to the end."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from _stub_server import Trickle, models, serve_fixture
from _vllm import STEP_TAG, FakeVLLM

from tests.live.conftest import REPO
from trim_rl.data.trees import read_trees
from trim_rl.live.backends import parse_vllm_args
from trim_rl.live.cli import main


@pytest.fixture
def serve():
    yield from serve_fixture()


def steps_then_answer(n: int, length: int = 80):
    """A generating model whose k-th step is "Step k: xxx" and whose n-th states the answer 4."""
    def gen(prompt: str, payload: dict):
        answer = prompt.rsplit("assistant\n", 1)[1]
        k = answer.count("\n\n") + 1
        if k >= n:
            return "So the answer is \\boxed{4}.", "stop", 151645  # <|im_end|> as the stop token id
        return f"Step {k}: " + "x" * length, "stop", "\n\n"
    return gen


def prm_by_step(prompt: str) -> list[float]:
    """0.9 for each step, 0.2 for the third step of a solution (so thr:0.5 regenerates it)."""
    parts = prompt.split("<|im_start|>assistant\n", 1)[1].split(STEP_TAG)[:-1]
    return [0.2 if part.startswith("Step 3:") else 0.9 for part in parts]


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": i, "problem": f"What is 2 + 2? (#{i})", "answer": "4"}) + "\n"
                            for i in range(4)))
    return path


@pytest.fixture
def servers(serve):
    gen = serve(FakeVLLM(model="weak-and-strong", gen=steps_then_answer(5)))
    prm = serve(FakeVLLM(model="prm", prm=prm_by_step))
    return gen, prm


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def decode_args(servers, problems, out, *extra):
    gen, prm = servers
    return ["decode", "--weak-url", gen.url, "--strong-url", gen.url, "--prm-url", prm.url, "--policy", "thr:0.5",
            "--problems", problems, "--out", out, "--quiet", *extra]


def collect_args(servers, problems, out, *extra):
    gen, prm = servers
    return ["collect", "--weak-url", gen.url, "--strong-url", gen.url, "--prm-url", prm.url, "-K", 1,
            "--max-depth", 6, "--problems", problems, "--out", out, "--quiet", *extra]


def one_error_line(err: str, *needles: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# user errors: one line, exit 2, nothing written
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--limit", "--offset"])
@pytest.mark.parametrize("command", ["decode", "collect"])
def test_negative_limit_or_offset_is_refused(capsys, servers, problems, tmp_path, command, flag):
    out = tmp_path / "out.jsonl"
    build = decode_args if command == "decode" else collect_args
    rc, _, err = run(capsys, *build(servers, problems, out, flag, "-3"))
    assert rc == 2
    one_error_line(err, flag, "expected an integer >= 0", "'-3'")
    assert not out.exists()
    assert all(not s.requests for s in servers)


def test_sim_generate_refuses_a_negative_limit(tmp_path):
    r = subprocess.run([sys.executable, "-m", "trim_rl.sim", "generate", "--limit", "-3", "--out", tmp_path / "t.jsonl"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--limit" in r.stderr and "expected an integer >= 1" in r.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_missing_problems_file_is_named(capsys, servers, tmp_path):
    rc, _, err = run(capsys, *decode_args(servers, tmp_path / "nope.jsonl", tmp_path / "o.jsonl"))
    assert rc == 2
    one_error_line(err, "--problems", "nope.jsonl", "no such file")


@pytest.mark.parametrize("extra, needles", [
    (["--chat-template", "nope"], ["--chat-template", "nope"]),
    (["--vllm-arg", "gpu_memory_utilization"], ["--vllm-arg", "KEY=VALUE"]),
    (["--timeout", "-1"], ["--timeout"]),
    (["--batch", "0"], ["--batch", ">= 1"]),
    (["--prm", "self-verify", "--verify-prompt", "joined"], ["--verify-prompt", "joined"]),
])
def test_bad_flags_are_one_line(capsys, servers, problems, tmp_path, extra, needles):
    rc, _, err = run(capsys, *decode_args(servers, problems, tmp_path / "o.jsonl", *extra))
    assert rc == 2
    one_error_line(err, *needles)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("options, want", [({"prm": "self-verify"}, "separate"),
                                           ({"prm": "self-verify", "verify_prompt": "continued"}, "continued")])
def test_the_verify_prompt_option_reaches_the_self_verify_scorer(servers, options, want):
    from trim_rl.live.env import backends_from_urls

    gen, _ = servers
    assert backends_from_urls(gen.url, gen.url, None, options).scorer.verify_prompt == want


def test_vllm_args_are_parsed_per_role():
    got = parse_vllm_args(["gpu_memory_utilization=0.3", "prm:gpu_memory_utilization=0.25", "max-model-len=8192",
                           "weak:dtype=bfloat16", "enforce_eager=true"])
    assert got["weak"] == {"gpu_memory_utilization": 0.3, "max_model_len": 8192, "dtype": "bfloat16", "enforce_eager": True}
    assert got["strong"] == {"gpu_memory_utilization": 0.3, "max_model_len": 8192, "enforce_eager": True}
    assert got["prm"] == {"gpu_memory_utilization": 0.25, "max_model_len": 8192, "enforce_eager": True}
    with pytest.raises(ValueError, match="--vllm-arg 'judge:x=1'"):
        parse_vllm_args(["judge:x=1"])


# ---------------------------------------------------------------------------------------------
# server errors: exit 3 naming the server
# ---------------------------------------------------------------------------------------------
def test_server_down_at_start_up_exits_3_naming_it(capsys, problems, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    rc, _, err = run(capsys, "decode", "--weak-url", url, "--policy", "weak-only", "--problems", problems,
                     "--out", tmp_path / "o.jsonl", "--wait-ready", "0", "--retries", "0", "--quiet")
    assert rc == 3
    one_error_line(err, url + "/v1/models")


def test_negative_token_count_from_a_server_exits_3_naming_server_and_field(capsys, serve, problems, tmp_path):
    def handler(req):
        if req.path == "/v1/models":
            return models("m")
        return {"choices": [{"index": 0, "text": "x = 1", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": -5, "total_tokens": 0}}

    srv = serve(handler)
    out = tmp_path / "o.jsonl"
    rc, _, err = run(capsys, "decode", "--weak-url", srv.url, "--policy", "weak-only", "--problems", problems,
                     "--out", out, "--quiet")
    assert rc == 3
    assert f"{srv.url}/v1/completions: bad value in the answer: usage.completion_tokens = -5" in err
    assert not out.exists() or out.read_text() == ""


def test_trickling_server_is_bounded_by_timeout_times_attempts(capsys, serve, problems, tmp_path):
    srv = serve(lambda req: models("m") if req.path == "/v1/models" else (200, "") if req.path == "/health" else
                Trickle({"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}],
                         "usage": {"completion_tokens": 1}}, 0.25))
    t0 = time.perf_counter()
    rc, _, err = run(capsys, "decode", "--weak-url", srv.url, "--policy", "weak-only", "--problems", problems,
                     "--limit", 1, "--out", tmp_path / "o.jsonl", "--timeout", "0.6", "--retries", "1", "--quiet")
    wall = time.perf_counter() - t0
    assert rc == 3
    assert "no answer after 2 attempts" in err and srv.url in err
    assert wall < 20.0  # 2 attempts of 0.6 s and a 0.5 s backoff (about 2 s), not ~90 bytes x 0.25 s x 2 (45 s)


# ---------------------------------------------------------------------------------------------
# results files: what wrote them, and only their own kind
# ---------------------------------------------------------------------------------------------
def test_decode_records_its_settings_and_refuses_a_mismatching_rerun(capsys, servers, problems, tmp_path):
    out = tmp_path / "run.jsonl"
    rc, _, err = run(capsys, *decode_args(servers, problems, out, "--limit", 2))
    assert rc == 0, err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["trim_rl.live.decode/v1"] * 2
    assert rows[0]["settings"]["policy"] == "thr:0.5" and rows[0]["settings"]["weak_model"] == "weak-and-strong"
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["settings"] == rows[0]["settings"]
    before = out.read_bytes()

    rc, _, err = run(capsys, *decode_args(servers, problems, out, "--limit", 4).__iter__())  # same: resumes
    assert rc == 0, err
    assert out.read_bytes().startswith(before) and len(out.read_text().splitlines()) == 4

    before = out.read_bytes()
    for extra, name in ((["--policy", "thr:0.7"], "policy"), (["--max-steps", "3"], "max_steps"),
                        (["--weak-temperature", "0.5"], "weak_temperature")):
        args = decode_args(servers, problems, out, "--limit", 4)
        i = args.index(extra[0]) if extra[0] in args else None
        if i is not None:
            args[i + 1] = extra[1]
        else:
            args += extra
        rc, _, err = run(capsys, *args)
        assert rc == 2
        one_error_line(err, str(out), f"written with {name} = ", f"this run has {name} = ")
        assert out.read_bytes() == before


def test_decode_and_collect_refuse_a_file_of_another_kind(capsys, servers, problems, tmp_path):
    decoded, trees = tmp_path / "decoded.jsonl", tmp_path / "trees.jsonl"
    assert run(capsys, *decode_args(servers, problems, decoded, "--limit", 1))[0] == 0
    assert run(capsys, *collect_args(servers, problems, trees, "--limit", 1))[0] == 0
    d_bytes, t_bytes = decoded.read_bytes(), trees.read_bytes()

    rc, _, err = run(capsys, *decode_args(servers, problems, trees))
    assert rc == 2
    one_error_line(err, f"{trees}:1", "not a decode results line", "trim_rl.tree/v1")
    rc, _, err = run(capsys, *collect_args(servers, problems, decoded))
    assert rc == 2
    one_error_line(err, f"{decoded}:1", "not a tree line", "trim_rl.live.decode/v1")
    other = tmp_path / "other.jsonl"
    other.write_text('{"problem_id": "x", "whatever": 1}\n{"problem_id": "y", "torn": ')
    other_bytes = other.read_bytes()
    rc, _, err = run(capsys, *collect_args(servers, problems, other))
    assert rc == 2 and "not a tree line" in err
    assert (decoded.read_bytes(), trees.read_bytes(), other.read_bytes()) == (d_bytes, t_bytes, other_bytes)


def test_collect_refuses_to_resume_with_other_settings(capsys, servers, problems, tmp_path):
    out = tmp_path / "trees.jsonl"
    assert run(capsys, *collect_args(servers, problems, out, "--limit", 1))[0] == 0
    before = out.read_bytes()
    rc, _, err = run(capsys, *collect_args(servers, problems, out, "--max-tokens", 99))
    assert rc == 2
    one_error_line(err, "written with max_tokens = 256", "this run has max_tokens = 99")
    assert out.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# long solutions: past the PRM's context, past the generating model's context
# ---------------------------------------------------------------------------------------------
def test_decode_and_collect_survive_a_solution_longer_than_the_prm_context(capsys, serve, problems, tmp_path):
    """12 steps of ~30 stub tokens against a PRM whose context holds the problem and about 5 of them."""
    gen = serve(FakeVLLM(model="gen", gen=steps_then_answer(12, 110)))
    prm = serve(FakeVLLM(model="prm", max_model_len=220, prm=prm_by_step))
    out = tmp_path / "run.jsonl"
    rc, _, err = run(capsys, *decode_args((gen, prm), problems, out, "--limit", 2))
    assert rc == 0, err
    for row in (json.loads(x) for x in out.read_text().splitlines()):
        assert row["finish"] == "answer" and row["n_steps"] == 12 and row["correct"]
        dropped = [s.get("prm_dropped", 0) for s in row["steps"]]
        assert dropped[0] == 0 and dropped[-1] > 0 and dropped == sorted(dropped)
        assert [s["prm"] for s in row["steps"]] == pytest.approx([0.9, 0.9, 0.2] + [0.9] * 9)
        # "Step 3" scored 0.2: regenerated (the strong model here writes the same step)
        assert row["interventions"] == 1 and row["steps"][2]["by"] == "strong" and row["steps"][2]["draft"]["prm"] == 0.2
    trees_out = tmp_path / "trees.jsonl"
    rc, _, err = run(capsys, *collect_args((gen, prm), problems, trees_out, "--limit", 1, "--max-depth", 14))
    assert rc == 0, err
    (tree,) = read_trees(trees_out)  # validated
    steps = [n["weak"] for n in tree["nodes"]]
    assert any(s.get("prm_dropped", 0) > 0 for s in steps)
    assert all(not s.get("prm_unscored") for s in steps)


def test_decode_and_collect_end_a_solution_at_the_generating_models_context(capsys, serve, problems, tmp_path):
    gen = serve(FakeVLLM(model="gen", max_model_len=200, gen=steps_then_answer(50, 110)))
    prm = serve(FakeVLLM(model="prm", prm=prm_by_step))
    out = tmp_path / "run.jsonl"
    rc, _, err = run(capsys, *decode_args((gen, prm), problems, out, "--limit", 1))
    assert rc == 0, err
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["finish"] == "context" and not row["correct"] and 3 <= row["n_steps"] < 10
    trees_out = tmp_path / "trees.jsonl"
    rc, _, err = run(capsys, *collect_args((gen, prm), problems, trees_out, "--limit", 1, "-K", 0, "--max-depth", 30))
    assert rc == 0, err
    (tree,) = read_trees(trees_out)
    last = tree["nodes"][-1]["weak"]
    assert last["context"] and last["truncated"] and last["final"] and last["text"] == "" and not last["correct"]


# ---------------------------------------------------------------------------------------------
# shards and the estimate
# ---------------------------------------------------------------------------------------------
def test_shards_split_the_selection_into_disjoint_parts(capsys, servers, problems, tmp_path):
    ids = []
    for i in (1, 2, 3):
        out = tmp_path / f"shard{i}.jsonl"
        rc, _, err = run(capsys, *collect_args(servers, problems, out, "--shard", f"{i}/3", "--max-depth", 2))
        assert rc == 0, err
        ids.append([t["problem_id"] for t in read_trees(out)])
    assert ids == [["problems/0", "problems/3"], ["problems/1"], ["problems/2"]]
    rc, _, err = run(capsys, *collect_args(servers, problems, tmp_path / "x.jsonl", "--shard", "4/3"))
    assert rc == 2
    one_error_line(err, "--shard", "1 <= I <= N")


def test_estimate_matches_what_the_collection_then_costs(capsys, servers, problems, tmp_path):
    rc, out, err = run(capsys, *collect_args(servers, problems, tmp_path / "unused.jsonl", "--estimate", "2"))
    assert rc == 0, err
    assert not (tmp_path / "unused.jsonl").exists()
    per = {k: float(v.replace(",", "")) for k, v in
           re.findall(r"(nodes|generations|tokens|prm_inputs) ([\d,]*\.\d)", out.splitlines()[1])}
    # the pilot: problems 0 and 2 (spread over the 4); collect them for real and count
    real = tmp_path / "real.jsonl"
    sel = tmp_path / "sel.jsonl"
    lines = problems.read_text().splitlines()
    sel.write_text(lines[0] + "\n" + lines[2] + "\n")
    rc, summary, err = run(capsys, *collect_args(servers, sel, real))
    assert rc == 0, err
    trees = read_trees(real)
    s = json.loads(summary)
    assert per["nodes"] == pytest.approx(sum(len(t["nodes"]) for t in trees) / 2)
    assert per["generations"] == pytest.approx(s["generations"] / 2)
    assert per["tokens"] == pytest.approx(s["tokens"] / 2)
    assert per["prm_inputs"] == pytest.approx(s["prm_inputs"] / 2)
    assert f"expected for the 4 selected problems: nodes {sum(len(t['nodes']) for t in trees) * 2:,}" in out
    assert "K=1: " in out


# ---------------------------------------------------------------------------------------------
# SIGTERM / Ctrl-C: one line, nothing left behind
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_ends_with_one_line_and_no_leftovers(serve, problems, tmp_path, sig, code, word):
    srv = serve(lambda req: models("m") if req.path == "/v1/models" else (200, "") if req.path == "/health" else
                (srv.release.wait(30), {})[1])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # a shell's background job starts with SIGINT ignored, and Python then keeps it ignored: give the
    # child the default disposition, as a terminal's foreground process has
    proc = subprocess.Popen([sys.executable, "-m", "trim_rl.live", "decode", "--weak-url", srv.url, "--policy",
                             "weak-only", "--problems", str(problems), "--out", str(out_dir / "o.jsonl"), "--quiet"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not srv.on("/v1/completions") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.on("/v1/completions"), "the run never asked for a step"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    one_error_line(err, word)
    assert list(out_dir.iterdir()) == []


def test_missing_prm_url_is_refused_before_any_server_is_asked(capsys, servers, problems, tmp_path):
    gen, prm = servers
    rc, _, err = run(capsys, "decode", "--weak-url", gen.url, "--strong-url", gen.url, "--policy", "thr:0.5",
                     "--problems", problems, "--out", tmp_path / "o.jsonl", "--quiet")
    assert rc == 2
    one_error_line(err, "--prm vllm needs --prm-url")
    assert gen.requests == []
