"""A solution longer than the scorer's and the generator's context, against a real llama.cpp server
with a 256-token context: the decoding runs to the end.  (The collector's handling of the same is
tested against a server answering as vLLM does, in test_live_cli.py: on this CPU server a collection of
the same solution takes minutes.)"""

from __future__ import annotations

import json

from tests.live.conftest import live_cli
import pytest

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

# about 110 tokens: with 16-token steps the self-verify question outgrows 256 tokens after ~5 steps
# and the generation prompt after ~7
PROBLEM = (("A farmer keeps a ledger. On each market day he writes down how many apples, pears and plums he sold, "
            "the price of each, the weather, the name of each buyer and the road he took to the town. ") * 2
           + "He sold 3 apples on Monday and 4 apples on Tuesday. How many apples did he sell?")


def test_decode_runs_past_the_context(new_server, tmp_path):
    server = new_server(n_ctx=256)
    problems = tmp_path / "long.jsonl"
    problems.write_text(json.dumps({"id": 0, "problem": PROBLEM, "answer": "7"}) + "\n")
    common = ["--weak-url", server.url, "--strong-url", server.url, "--prm", "self-verify", "--problems", problems,
              "--max-tokens", 16, "--timeout", 60, "--quiet"]
    out = tmp_path / "decode.jsonl"
    r = live_cli("decode", *common, "--policy", "thr:0.0", "--max-steps", 12, "--out", out)
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["finish"] == "context" and row["n_steps"] < 12
    dropped = [s.get("prm_dropped", 0) for s in row["steps"]]
    assert dropped[0] == 0 and dropped[-1] > 0 and dropped == sorted(dropped)  # the earliest steps left out
    assert all(0.0 <= s["prm"] <= 1.0 for s in row["steps"])

