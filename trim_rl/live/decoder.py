"""Hybrid decoding: the weak model writes each step, a PRM scores it, the router keeps it or has the
strong model regenerate it.

Problems run concurrently in lock step through the one routing loop (:mod:`trim_rl.live.routing`):
every round, one engine call drafts the next step of all active problems, one scorer call scores them,
the router decides per problem (with the same observation builders as the offline env), and one
strong-engine call regenerates the steps it rejects (those are scored too, at once: accepted strong
steps enter the history, as in the env).  A problem ends at a step with ``\\boxed``, when the model
ends its answer, at ``max_steps``, or when its prompt no longer fits the generating model's context
(``finish: "context"``); it is graded with math-verify and written at once to the results file
(:class:`~trim_rl.live.results.ResultsFile`).  A backend that fails (after its retries) ends the run;
finished problems are kept, and a re-run resumes.

A solution longer than the PRM's context is scored with its earliest steps left out (the step records
``prm_dropped``); a step that cannot be scored at all is recorded with ``prm: null`` and the policy sees
:data:`~trim_rl.live.prm.UNSCORED`.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from collections.abc import Sequence

from trim_rl.data.grading import Verdict, extract_answer, judge
from trim_rl.data.problems import Problem
from trim_rl.data.schema import MAX_STEPS
from trim_rl.live.aio import run_sync
from trim_rl.live.engines import Engine, request_seed
from trim_rl.live.http import EngineError
from trim_rl.live.prm import PRMScorer
from trim_rl.live.prompts import solution_text
from trim_rl.live.results import DECODE_KIND, ResultsFile, write_json
from trim_rl.live.router import Router
from trim_rl.live.routing import Backends, Limits, Route, RoutingLoop, StepRecord
from trim_rl.live.window import Score


@dataclass
class DecodeSettings:
    max_steps: int = MAX_STEPS
    max_interventions: int | None = None  # None: no limit
    concurrency: int = 256  # problems decoded at once (--batch)
    seed: int = 0
    mode: str = "hybrid"  # hybrid | weak-only | strong-only


class _Active(Route):
    """One problem being decoded; its calls are seeded by (run seed, problem id, step, role)."""

    def __init__(self, problem: Problem, t0: float, mode: str, router: Router | None, limits: Limits, seed: int):
        super().__init__(problem.problem, mode, router, limits)
        self.item, self.t0, self.seed = problem, t0, seed

    def seed_for(self, role: str) -> int:
        # a fixed mode seeds its steps by the mode's name (what earlier results files were written with)
        return request_seed(self.seed, self.item.problem_id, len(self.texts), role if self.mode == "hybrid" else self.mode)


class HybridDecoder:
    """Decode problems with a weak and a strong engine routed per step (see the module notes)."""

    def __init__(self, weak: Engine | None, strong: Engine | None, scorer: PRMScorer | None, router: Router | None,
                 settings: DecodeSettings | None = None, policy_name: str = "policy", run_settings: dict | None = None):
        self.weak, self.strong, self.scorer, self.router = weak, strong, scorer, router
        self.s = settings or DecodeSettings()
        self.policy_name = policy_name
        #: what wrote the results (recorded in every row; a re-run with other settings is refused)
        self.run_settings = run_settings if run_settings is not None else self.default_settings()
        if self.s.mode == "hybrid" and (weak is None or scorer is None or router is None):
            raise ValueError("hybrid decoding needs a weak engine, a PRM scorer and a policy")
        if self.s.mode == "weak-only" and weak is None:
            raise ValueError("weak-only decoding needs a weak engine")
        if self.s.mode == "strong-only" and strong is None:
            raise ValueError("strong-only decoding needs a strong engine (--strong-url)")
        self.loop = RoutingLoop(Backends(weak, strong, scorer), score_strong="now")
        self.limits = Limits(self.s.max_steps, self.s.max_interventions)

    @property
    def generations(self) -> int:
        """Engine requests so far, for the benchmarks."""
        return self.loop.generations

    def default_settings(self) -> dict:
        return {"policy": self.policy_name, "mode": self.s.mode, "max_steps": self.s.max_steps,
                "max_interventions": self.s.max_interventions, "seed": self.s.seed,
                "weak_model": getattr(self.weak, "name", None), "strong_model": getattr(self.strong, "name", None),
                "scorer": getattr(self.scorer, "name", None)}

    def _start(self, problem: Problem) -> _Active:
        return _Active(problem, time.perf_counter(), self.s.mode, self.router if self.s.mode == "hybrid" else None,
                       self.limits, self.s.seed)

    def _record(self, a: _Active) -> dict:
        text = solution_text(a.texts)
        pred = extract_answer(text)
        verdict = judge(text, a.item.answer) if pred is not None else Verdict.INCORRECT
        p = a.item
        return {
            "kind": DECODE_KIND, "settings": self.run_settings,
            "problem_id": p.problem_id, "dataset": p.dataset, "problem": p.problem,
            "answer": p.answer, "policy": self.policy_name, "mode": self.s.mode,
            "steps": [result_step(rec) for rec in a.steps], "decisions": [int(rec.by == "strong") for rec in a.steps],
            "prediction": pred, "correct": verdict is Verdict.CORRECT,
            "grade": verdict.value,  # "timeout" when the comparison missed its deadline (not a silent False)
            "finish": a.why, "n_steps": len(a.steps), "interventions": a.interventions,
            "weak_tokens": a.weak_tokens, "strong_tokens": a.strong_tokens,
            "strong_prompt_tokens": a.strong_prompt_tokens, "strong_cached_tokens": a.strong_cached_tokens,
            "router_ms_per_step": round(1e3 * a.router_s / max(1, len(a.steps)), 4),
            "wall_s": round(time.perf_counter() - a.t0, 3),
        }

    # -- a run -----------------------------------------------------------------------------------
    def run(self, problems: Sequence[Problem], out: ResultsFile, progress: bool = True) -> dict:
        """Decode every problem not yet in ``out``; returns (and writes beside ``out``) the summary."""
        from tqdm.auto import tqdm

        todo = [p for p in problems if p.problem_id not in out.done]
        queue = list(reversed(todo))
        active: list[_Active] = []
        t_start = time.perf_counter()
        error = None
        bar = tqdm(total=len(todo), desc=f"decode ({self.s.mode})", unit="problem", disable=not progress, file=sys.stderr)
        async def rounds() -> None:
            while queue or active:
                while queue and len(active) < max(1, self.s.concurrency):
                    active.append(self._start(queue.pop()))
                await self.loop.round(active)
                for a in [a for a in active if a.done]:
                    out.append(self._record(a))
                    active.remove(a)
                    bar.update(1)

        try:
            run_sync(rounds())
        except EngineError as exc:
            error = str(exc)
        finally:
            bar.close()
        summary = self.summary(problems, out, time.perf_counter() - t_start, error)
        summary["settings"] = self.run_settings
        write_json(summary_path(out), summary)
        return summary

    def summary(self, problems: Sequence[Problem], out: ResultsFile, wall_s: float, error: str | None) -> dict:
        ids = [p.problem_id for p in problems]
        rows = [out.done[i] for i in ids if i in out.done]
        n = len(rows)
        steps = sum(r["n_steps"] for r in rows)
        router = [r["router_ms_per_step"] for r in rows if r.get("mode") == "hybrid"]
        remaining = [i for i in ids if i not in out.done]
        return {
            "policy": self.policy_name, "mode": self.s.mode, "problems": len(ids), "finished": n,
            "complete": not remaining, "remaining": remaining, "error": error,
            "accuracy": (sum(r["correct"] for r in rows) / n) if n else None,
            "grade_timeouts": sum(r.get("grade") == "timeout" for r in rows),
            "strong_tokens_per_problem": (sum(r["strong_tokens"] for r in rows) / n) if n else None,
            "weak_tokens_per_problem": (sum(r["weak_tokens"] for r in rows) / n) if n else None,
            "interventions_per_problem": (sum(r["interventions"] for r in rows) / n) if n else None,
            "steps_per_problem": steps / n if n else None,
            "router_ms_per_step_median": statistics.median(router) if router else None,
            "wall_s_this_run": round(wall_s, 3),
        }


def summary_path(out: ResultsFile):
    return out.path.with_name(out.path.name.removesuffix(".jsonl") + ".summary.json")


def result_step(rec: StepRecord) -> dict:
    """A step as the results file records it (``prm``, and the replaced weak ``draft`` with its ``prm``)."""
    step = {"text": rec.text, "by": rec.by, "tokens": rec.tokens, **_prm_fields(rec.score),
            "finish_reason": rec.finish_reason}
    if rec.cached_tokens is not None:  # where the server reports its prefix cache
        step["prompt_tokens"], step["cached_tokens"] = rec.prompt_tokens, rec.cached_tokens
    if rec.draft is not None:
        text, tokens, score = rec.draft
        step["draft"] = {"text": text, "tokens": tokens, **_prm_fields(score)}
    return step


def _prm_fields(sc: Score | None) -> dict:
    """A step's score as recorded: ``prm`` (None when unscored or not scored) and, when the scorer's
    input had to leave out the earliest steps, how many (``prm_dropped``)."""
    if sc is None:
        return {"prm": None}
    out = {"prm": sc.value}
    if sc.value is None:
        out["prm_unscored"] = True
    if sc.dropped:
        out["prm_dropped"] = sc.dropped
    return out
