"""The scheduler's round without HTTP: engines and a scorer in-process, jobs submitted and decoded on an
event loop, and what a round asks of each backend."""

from __future__ import annotations

import asyncio

import pytest

from trim_rl.live.engines import StepResult
from trim_rl.live.http import EngineError
from trim_rl.live.prompts import ChatTemplate
from trim_rl.live.serve.job import Job
from trim_rl.live.serve.policies import load_served
from trim_rl.live.serve.scheduler import Backends, QueueFull, Scheduler
from trim_rl.live.serve.settings import SchedulerSettings
from trim_rl.live.window import Score


class Engine:
    """Step k of a problem is "<name> k"; the third step states the answer.  Records each call's size."""

    def __init__(self, name: str, fail_on: str | None = None):
        self.name, self.fail_on, self.calls = name, fail_on, []
        self.template, self.system = ChatTemplate.resolve("chatml"), "system"

    def generate(self, requests):
        self.calls.append(len(requests))
        if self.fail_on and any(self.fail_on in r.problem for r in requests):
            raise EngineError("http://user:pw@backend", "HTTP 500: boom", 500)
        out = []
        for r in requests:
            k = len(r.steps) + 1
            text = f"{self.name} {k}" + (" \\boxed{4}" if k == 3 else "")
            # the strong server reports its prefix cache: 100 prompt tokens, 60 of them cached
            out.append(StepResult(text, 10 if self.name == "weak" else 20, "stop",
                                  *((100, 60) if self.name == "strong" else ())))
        return out


class Scorer:
    """Scores every step 0.9 but the weak model's second step of problems holding "#low" (0.1)."""

    def __init__(self):
        self.calls = []

    def score_last_detail(self, items):
        self.calls.append(len(items))
        return [Score(0.1 if "#low" in problem and steps[-1] == "weak 2" else 0.9, 0) for problem, steps in items]


def decode(problems: list[str], backends: Backends, policy: str = "thr:0.5"):
    served, _ = load_served([policy])
    (p,) = served.values()

    async def run():
        scheduler = Scheduler(backends, SchedulerSettings())
        scheduler.start()
        jobs = [Job(q, p, seed=i) for i, q in enumerate(problems)]
        scheduler.submit(jobs)
        await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 30)
        await scheduler.stop()
        return jobs, scheduler

    return asyncio.run(run())


def test_a_round_makes_one_call_per_backend_and_regenerates_what_the_router_rejects():
    weak, strong, scorer = Engine("weak"), Engine("strong"), Scorer()
    jobs, scheduler = decode(["1+1? #low", "2+2?", "3+3? #low"], Backends(weak, strong, scorer))
    assert weak.calls == [3, 3, 3]  # every request drafts in one call per round
    assert strong.calls == [2]  # the two rejected drafts of round 2, in one call
    assert scheduler.rounds == 3
    low, plain = jobs[0], jobs[1]
    assert [s.by for s in low.steps] == ["weak", "strong", "weak"] and low.interventions == 1
    assert [s.by for s in plain.steps] == ["weak", "weak", "weak"] and plain.interventions == 0
    # a weak draft replaced by a strong step still counts among the weak tokens, as discarded
    assert (low.weak_tokens, low.strong_tokens, low.discarded_tokens) == (30, 20, 10)
    assert low.solution_tokens == 40 and low.finish == "stop" and low.why == "answer"
    usage = low.usage()  # the strong model's prompt and its cached part, summed over its calls
    assert (usage["strong_prompt_tokens"], usage["strong_cached_tokens"]) == (100, 60)
    assert (plain.usage()["strong_prompt_tokens"], plain.usage()["strong_cached_tokens"]) == (0, 0)
    # the strong step's score is asked in the next round, with the next draft (one scorer call a round)
    assert scorer.calls == [3, 3, 5]


def test_a_failing_backend_call_fails_only_its_own_requests():
    weak, strong, scorer = Engine("weak"), Engine("strong", fail_on="#bad"), Scorer()
    jobs, _ = decode(["1+1? #low #bad", "2+2? #low", "3+3?"], Backends(weak, strong, scorer))
    bad, regen, plain = jobs
    assert bad.error is not None and bad.error.status == 502 and "user" not in bad.error.message
    assert regen.error is None and regen.interventions == 1  # asked again alone, and answered
    assert plain.error is None and len(plain.steps) == 3


def test_admission_is_all_or_nothing_within_max_active_plus_max_queue():
    served, _ = load_served(["weak-only"])
    (p,) = served.values()

    async def run():
        scheduler = Scheduler(Backends(Engine("weak")), SchedulerSettings(max_active=1, max_queue=1))
        scheduler.start()
        scheduler.submit([Job("a", p)])
        with pytest.raises(QueueFull):
            scheduler.submit([Job("b", p), Job("c", p)])  # two more than the one place left
        assert scheduler.load == 1
        last = Job("d", p)
        scheduler.submit([last])
        await asyncio.wait_for(last.future, 30)
        await scheduler.stop()

    asyncio.run(run())
