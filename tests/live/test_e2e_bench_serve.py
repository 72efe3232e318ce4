"""``python -m trim_rl.bench serve`` against the real llama-server: the three modes side by side and
llama-server's own profile of each (its /metrics counters), once per self-verify question layout."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from tests.live.conftest import REPO, _need_live


def test_bench_serve_prints_modes_and_the_backends_profile(llama_url):
    r = subprocess.run([sys.executable, "-m", "trim_rl.bench", "serve", "--url", llama_url, "--requests", "2",
                        "--max-steps", "1", "--max-tokens", "4", "--overhead-requests", "8", "--overhead-concurrency",
                        "4", "--policy", "thr:0.5", "--verify-prompt", "separate", "continued"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    # the backend alone, all at once vs one at a time: the ceiling of the batching ratio below
    (ceiling,) = re.findall(r"2 completions of 4 tokens .* ratio all at once / one at a time: ([\d.]+)", r.stdout)
    assert float(ceiling) > 0
    blocks = r.stdout.split("self-verify question: ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["separate", "continued"]
    for block in blocks:
        lines = block.splitlines()
        assert any(x.startswith("ratio batching / one at a time:") for x in lines)
        rows = {}
        for mode in ("batching", "one at a time", "strong only"):
            (row,) = [x for x in lines[lines.index(next(x for x in lines if x.startswith("llama-server's own time"))):]
                      if x.startswith(mode + " ")]
            rows[mode] = [float(v) for v in re.findall(r"[\d.]+", row[len(mode):])]
        for mode, (prompt_tok, _prompt_s, gen_tok, _gen_s, decodes, slots) in rows.items():
            # every mode made the server work: tokens generated in decode calls with at least one slot busy
            assert gen_tok >= 2 and decodes >= gen_tok / 4 and slots >= 1.0, (mode, rows)
            assert prompt_tok > 0


@pytest.mark.slow
def test_bench_serve_compare_runs_weak_smollm2_and_strong_gemma3_through_serve():
    """The CPU analogue of the paper's wall-clock table: every hybrid next to strong-only and weak-only,
    two real models of different sizes, each behind its own llama-server."""
    _need_live()  # skipped where make live-cpu has not run (a failure under make test)
    r = subprocess.run([sys.executable, "-m", "trim_rl.bench", "serve", "--compare", "--slots", "2", "--ctx", "1024",
                        "--requests", "1", "--max-steps", "1", "--max-tokens", "4", "--verify-prompt", "continued"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "SmolLM2" in r.stdout and "gemma" in r.stdout.lower()
    assert "self-verify question: continued" in r.stdout
    modes = {"thr-0.3", "thr-0.5", "thr-0.7", "agg-b8", "agg-b16", "agg-b30", "weak-only", "strong-only"}
    table, profiles = r.stdout.split("each model's llama-server per mode")
    rows = {x.split()[0]: x.split() for x in table.splitlines() if x.split() and x.split()[0] in modes}
    assert len(rows) == 8, r.stdout
    assert rows["strong-only"][-1] == "1.00x" and float(rows["strong-only"][4]) == 1.0  # its own tokens are all strong
    assert float(rows["weak-only"][4]) == 0.0
    for name, cells in rows.items():
        assert float(cells[1]) > 0, (name, cells)  # requests/s
    # each model's own counters per mode: weak-only never calls the strong model, strong-only never the weak
    prof = {x.split()[0]: [float(v) for v in re.findall(r"[\d.]+", x[len(x.split()[0]):])]
            for x in profiles.splitlines() if x.split() and x.split()[0] in modes}
    assert len(prof) == 8, profiles
    weak_prompt, weak_gen, _, _, strong_prompt, strong_gen, strong_calls, _ = prof["weak-only"]
    assert weak_gen > 0 and weak_prompt > 0 and strong_gen == 0 and strong_calls == 0
    weak_prompt, weak_gen, _, _, strong_prompt, strong_gen, _, _ = prof["strong-only"]
    assert strong_gen > 0 and strong_prompt > 0 and weak_gen == 0
