"""Tests that grading is bounded in time wherever it runs, and that a timeout is reported as such."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from trim_rl.data.grading import Verdict, grade, judge
from trim_rl.data.grading.guard import MAX_DIGITS, refuse
from trim_rl.data.grading.pool import pool

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

# sympy multiplies ten million numbers for this, and nothing in the answer looks large
SLOW = "\\boxed{\\prod_{k=1}^{10^{7}} k}"
BOUND_S = 30.0  # generous: the unbounded versions of these ran past 60 s or never returned


def _in_thread(fn, *args, **kwargs):
    out = {}
    th = threading.Thread(target=lambda: out.update(v=fn(*args, **kwargs)), daemon=True)
    t0 = time.perf_counter()
    th.start()
    th.join(BOUND_S)
    return out.get("v"), time.perf_counter() - t0, th.is_alive()


@pytest.mark.parametrize("prediction", [
    "\\boxed{9^{9^{9^{9^{9}}}}}",
    "\\boxed{9^{9^{9}}}",
    "\\boxed{x^{9^{9^9}}}",
    "\\boxed{" + "(" * 100_000 + "}",
    "(" * 100_000,
    "\\boxed{" + "+".join(["x"] * 20_000) + "}",
    "\\boxed{100000!}",
    "\\boxed{\\binom{10^{9}}{10^{5}}}",
    "\\boxed{2^{-10^{9}}}",
])
def test_pathological_answers_return_in_a_worker_thread(prediction):
    v, wall, alive = _in_thread(judge, prediction, "42")
    assert not alive and wall < BOUND_S
    assert v is Verdict.INCORRECT  # refused before parsing: compared as text only


def test_refused_answer_still_equal_to_the_same_text():
    tower = "9^{9^{9}}"
    assert judge(f"\\boxed{{{tower}}}", tower) is Verdict.CORRECT


def test_slow_comparison_times_out_in_a_worker_thread():
    v, wall, alive = _in_thread(judge, SLOW, "5", timeout=2.0)
    assert not alive and wall < BOUND_S
    assert v is Verdict.TIMEOUT


def test_slow_comparison_does_not_freeze_the_process():
    # while a thread waits on a stuck comparison, this thread keeps running (no GIL held)
    done = threading.Event()
    th = threading.Thread(target=lambda: (judge(SLOW, "5", timeout=3.0), done.set()), daemon=True)
    th.start()
    beats, t0 = 0, time.perf_counter()
    while not done.is_set() and time.perf_counter() - t0 < BOUND_S:
        time.sleep(0.05)
        beats += 1
    assert done.is_set()
    assert beats >= 20  # about 60 while the 3 s deadline runs; 0 if the process froze


def test_timeout_on_main_thread_and_pool_recovers(caplog):
    assert judge(SLOW, "5", timeout=1.0) is Verdict.TIMEOUT
    with caplog.at_level(logging.WARNING, logger="trim_rl.data.grading"):
        assert grade(SLOW, "5", timeout=1.0) is False
    assert "timed out" in caplog.text
    # the stuck worker was killed: the next symbolic comparison gets a fresh one
    assert judge("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}") is Verdict.CORRECT


def test_many_threads_share_the_pool():
    cases = [("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}", Verdict.CORRECT),
             ("\\boxed{x^2-1}", "(x-1)(x+1)", Verdict.CORRECT),
             ("\\boxed{x^2+1}", "(x-1)(x+1)", Verdict.INCORRECT)] * 4
    got: list = [None] * len(cases)

    def work(i, p, r):
        got[i] = judge(p, r)

    threads = [threading.Thread(target=work, args=(i, p, r)) for i, (p, r, _) in enumerate(cases)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(BOUND_S)
    assert got == [v for _, _, v in cases]
    assert len(pool()._all) <= pool().size


def test_guard_classes():
    assert refuse("2^{2023}") is None and refuse("10^{100}") is None and refuse("\\binom{100}{50}") is None
    assert refuse("1000!") is None and refuse("1^{10^{1000}}") is None
    assert "digits" in refuse("9^{9^{9}}") and "digits" in refuse(f"10^{{{MAX_DIGITS + 10}}}")
    assert "digits" in refuse("2^{10^{5} \\cdot 10^{5}}")
    assert "deeper" in refuse("(" * 60) and "longer" in refuse("1" * 5000)
    assert refuse("2" + "^2" * 900) is not None  # a chain too deep to walk is refused too


@pytest.mark.parametrize("answer", ["(3", "(", "{(2+3", "2^(", "\\binom(3", "\\frac{1}{(2"])
def test_guard_reads_an_answer_that_ends_inside_a_bracket(answer):
    # a model's solution cut off mid-answer (a collection's max-tokens) ends inside an open bracket
    assert refuse(answer) is None
    assert grade(f"\\boxed{{{answer}}}", "3") in (True, False)


def test_fast_path_starts_no_worker_and_exit_stops_workers():
    # plain numbers and identical texts never start a worker; a symbolic comparison starts one,
    # and it is gone once the process exits
    code = (
        "import trim_rl.data.grading as g, trim_rl.data.grading.pool as p\n"
        "assert g.judge('\\\\boxed{1\\\\,000}', '1000') and g.judge('\\\\boxed{3.83e35}', '3.83 \\\\times 10^{35}')\n"
        "assert g.judge('\\\\text{east}', '\\\\text{east}') and p._pool is None\n"
        "assert g.judge('\\\\boxed{\\\\frac{\\\\sqrt{2}}{2}}', '\\\\frac{1}{\\\\sqrt{2}}')\n"
        "print(*[w.proc.pid for w in p._pool._all])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pids = [int(x) for x in out.stdout.split()]
    assert len(pids) == 1
    time.sleep(0.5)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_that_cannot_start_is_named(monkeypatch):
    import trim_rl.data.grading.pool as pool_module

    monkeypatch.setattr(pool_module, "_CMD", "import sys; sys.exit(3)")
    p = pool_module.GradingPool(size=1)
    with pytest.raises(pool_module.WorkerError, match="exited with code 3"):
        p.run({"pred": "x", "ref": "y", "kind": "answer"}, 5.0)
    assert p._starting == 0 and not p._all  # the slot is free again
