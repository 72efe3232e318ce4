"""Hybrid decoding: the weak model writes each step, a PRM scores it, the router keeps it or has the
strong model regenerate it.

Problems run concurrently in lock step: every round, one engine call drafts the next step of all
active problems, one scorer call scores them, the router decides per problem (with the same
observation builders as the offline env), and one strong-engine call regenerates the steps it
rejects (those are scored too: accepted strong steps enter the history, as in the env).  A problem
ends at a step with ``\\boxed``, when the model ends its answer, at ``max_steps``, or when its prompt
no longer fits the generating model's context (``finish: "context"``); it is graded with math-verify
and written at once to the results file (:class:`~trim_rl.live.results.ResultsFile`).

A solution longer than the PRM's context is scored with its earliest steps left out (the step records
``prm_dropped``); a step that cannot be scored at all is recorded with ``prm: null`` and the policy sees
:data:`~trim_rl.live.prm.UNSCORED`.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

from trim_rl.data.grading import Verdict, extract_answer, judge
from trim_rl.data.problems import Problem
from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import StepHistory
from trim_rl.live.engines import Engine, StepRequest, StepResult, request_seed
from trim_rl.live.http import EngineError
from trim_rl.live.prm import UNSCORED, PRMScorer
from trim_rl.live.prompts import is_final, solution_text
from trim_rl.live.results import DECODE_KIND, ResultsFile, write_json
from trim_rl.live.window import Score
from trim_rl.live.router import Router


@dataclass
class DecodeSettings:
    max_steps: int = MAX_STEPS
    max_interventions: int | None = None  # None: no limit
    concurrency: int = 256  # problems decoded at once (--batch)
    seed: int = 0
    mode: str = "hybrid"  # hybrid | weak-only | strong-only


@dataclass
class _Active:
    problem: Problem
    t0: float
    history: StepHistory = field(default_factory=StepHistory)
    texts: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    state: Any = None
    weak_tokens: int = 0
    strong_tokens: int = 0
    router_s: float = 0.0
    finish: str | None = None


class HybridDecoder:
    """Decode problems with a weak and a strong engine routed per step (see the module notes)."""

    def __init__(self, weak: Engine | None, strong: Engine | None, scorer: PRMScorer | None, router: Router | None,
                 settings: DecodeSettings | None = None, policy_name: str = "policy", run_settings: dict | None = None):
        self.weak, self.strong, self.scorer, self.router = weak, strong, scorer, router
        self.s = settings or DecodeSettings()
        self.policy_name = policy_name
        #: what wrote the results (recorded in every row; a re-run with other settings is refused)
        self.run_settings = run_settings if run_settings is not None else self.default_settings()
        self.generations = 0  # engine calls' requests, for the benchmarks
        if self.s.mode == "hybrid" and (weak is None or scorer is None or router is None):
            raise ValueError("hybrid decoding needs a weak engine, a PRM scorer and a policy")
        if self.s.mode == "weak-only" and weak is None:
            raise ValueError("weak-only decoding needs a weak engine")
        if self.s.mode == "strong-only" and strong is None:
            raise ValueError("strong-only decoding needs a strong engine (--strong-url)")

    # -- one round -------------------------------------------------------------------------------
    def _requests(self, act: list[_Active], role: str) -> list[StepRequest]:
        return [StepRequest(a.problem.problem, tuple(a.texts), request_seed(self.s.seed, a.problem.problem_id,
                                                                           len(a.texts), role)) for a in act]

    def _can_regenerate(self, a: _Active) -> bool:
        k = self.s.max_interventions
        return self.strong is not None and (k is None or a.history.interventions < k)

    def default_settings(self) -> dict:
        return {"policy": self.policy_name, "mode": self.s.mode, "max_steps": self.s.max_steps,
                "max_interventions": self.s.max_interventions, "seed": self.s.seed,
                "weak_model": getattr(self.weak, "name", None), "strong_model": getattr(self.strong, "name", None),
                "scorer": getattr(self.scorer, "name", None)}

    def _generate(self, engine: Engine, act: list[_Active], role: str) -> list[StepResult]:
        self.generations += len(act)
        return engine.generate(self._requests(act, role))

    def _score(self, act: list[_Active], steps: list[StepResult]) -> list[Score]:
        return self.scorer.score_last_detail([(a.problem.problem, a.texts + [d.text]) for a, d in zip(act, steps)])

    def _round(self, act: list[_Active]) -> None:
        mode = self.s.mode
        first = self.strong if mode == "strong-only" else self.weak
        drafts = self._generate(first, act, mode if mode != "hybrid" else "weak")
        for a, d in zip(act, drafts):
            if d.finish_reason == "context":  # the prompt no longer fits: the solution ends as it stands
                a.finish = "context"
        live = [(a, d) for a, d in zip(act, drafts) if a.finish is None]
        if mode != "hybrid":
            for a, d in live:
                self._accept(a, d, "strong" if mode == "strong-only" else "weak", None)
            return
        if not live:
            return
        scores = self._score([a for a, _ in live], [d for _, d in live])
        regen = []
        for (a, d), sc in zip(live, scores):
            p = UNSCORED if sc.value is None else sc.value
            t0 = time.perf_counter()
            action, a.state = self.router.decide(a.history, p, d.tokens, self._can_regenerate(a), a.state)
            a.router_s += time.perf_counter() - t0
            if action == 1:
                regen.append((a, d, sc))
            else:
                self._accept(a, d, "weak", sc)
        if not regen:
            return
        strong = self._generate(self.strong, [a for a, _, _ in regen], "strong")
        fits = [(x, s) for x, s in zip(regen, strong) if s.finish_reason != "context"]
        for (a, d, sc), s in zip(regen, strong):
            if s.finish_reason == "context":  # the strong model's context is full: keep the weak step
                self._accept(a, d, "weak", sc)
        s_scores = self._score([a for (a, _, _), _ in fits], [s for _, s in fits]) if fits else []
        for ((a, d, sc), s), ssc in zip(fits, s_scores):
            self._accept(a, s, "strong", ssc, draft={"text": d.text, "tokens": d.tokens, **_prm_fields(sc)})

    def _accept(self, a: _Active, r: StepResult, by: str, sc: Score | None, draft: dict | None = None) -> None:
        if by == "strong":
            a.strong_tokens += r.tokens
        else:
            a.weak_tokens += r.tokens
        if draft is not None:  # the discarded weak draft
            a.weak_tokens += draft["tokens"]
        a.texts.append(r.text)
        prm = None if sc is None else (UNSCORED if sc.value is None else sc.value)
        a.history.append(0.0 if prm is None else prm, r.tokens, by == "strong" and self.s.mode == "hybrid")
        step = {"text": r.text, "by": by, "tokens": r.tokens, **_prm_fields(sc), "finish_reason": r.finish_reason}
        if draft is not None:
            step["draft"] = draft
        a.steps.append(step)
        if r.ends_solution:
            a.finish = "answer" if is_final(r.text) else "eos"
        elif len(a.texts) >= self.s.max_steps:
            a.finish = "max_steps"

    def _record(self, a: _Active) -> dict:
        text = solution_text(a.texts)
        pred = extract_answer(text)
        verdict = judge(text, a.problem.answer) if pred is not None else Verdict.INCORRECT
        return {
            "kind": DECODE_KIND, "settings": self.run_settings,
            "problem_id": a.problem.problem_id, "dataset": a.problem.dataset, "problem": a.problem.problem,
            "answer": a.problem.answer, "policy": self.policy_name, "mode": self.s.mode,
            "steps": a.steps, "decisions": [int(s["by"] == "strong") for s in a.steps],
            "prediction": pred, "correct": verdict is Verdict.CORRECT,
            "grade": verdict.value,  # "timeout" when the comparison missed its deadline (not a silent False)
            "finish": a.finish, "n_steps": len(a.steps), "interventions": a.history.interventions,
            "weak_tokens": a.weak_tokens, "strong_tokens": a.strong_tokens,
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
        try:
            while queue or active:
                while queue and len(active) < max(1, self.s.concurrency):
                    active.append(_Active(queue.pop(), time.perf_counter()))
                self._round(active)
                for a in [a for a in active if a.finish]:
                    out.append(self._record(a))
                    active.remove(a)
                    bar.update(1)
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
