"""A server that dies mid-run loses no finished problem, and the run says which remain."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.live.conftest import FAST, REPO, live_cli
import pytest

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow


def start_until_first_line(args, out) -> subprocess.Popen:
    """Start ``python -m trim_rl.live ARGS`` and return once it has written its first results line."""
    proc = subprocess.Popen([sys.executable, "-m", "trim_rl.live", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.read_text()):
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
    return proc


def test_killed_server_keeps_finished_problems_and_resume_completes(new_server, tmp_path):
    server = new_server()
    out = tmp_path / "run.jsonl"
    args = ["decode", "--weak-url", server.url, "--strong-url", server.url, "--prm", "self-verify",
            "--policy", REPO / "checkpoints" / "trim_agg" / "trim_agg_b20", "--problems", "gsm8k", "--limit", 4,
            "--max-steps", 3, "--batch", 1, "--retries", 1, "--out", out, *FAST]
    proc = start_until_first_line(args, out)
    server.kill()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    finished = [json.loads(x) for x in out.read_text().splitlines()]  # every line is whole JSON
    assert 1 <= len(finished) < 4
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert not summary["complete"] and summary["finished"] == len(finished)
    remaining = summary["remaining"]
    assert len(remaining) == 4 - len(finished)
    assert "problems remain" in stderr and all(pid in stderr for pid in remaining)
    assert server.url.split("//")[1] in stderr  # names the server that failed
    before = out.read_bytes()

    # a new server on the same port: the same command finishes the rest, keeping what was written
    new_server(port=server.port)
    r = live_cli(*args)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(before)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and {x["problem_id"] for x in rows[len(finished):]} == set(remaining)


def test_a_killed_replica_is_left_out_and_the_run_completes(new_server, tmp_path):
    a, b = new_server(), new_server()
    out = tmp_path / "run.jsonl"
    args = ["decode", "--weak-url", f"{a.url},{b.url}", "--strong-url", a.url, b.url, "--prm", "self-verify",
            "--policy", "thr:0.5", "--problems", "gsm8k", "--limit", 3, "--max-steps", 2, "--batch", 1,
            "--retries", 2, "--out", out, *FAST]
    proc = start_until_first_line(args, out)
    b.kill()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(out.read_text().splitlines()) == 3 and json.loads(stdout)["complete"]
