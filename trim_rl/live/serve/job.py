"""One request's decoding between rounds: its limits, accepted steps, usage and step trace.

An accepted strong step enters the policy's history with its PRM score, as in the env; that score is
asked for in the *next* round's scorer call, together with the next draft (the draft's prompt needs
only the step's text), so a round makes one scorer call.  A strong step that ends the solution is
never needed by the policy and stays unscored (``score: null`` in the trace).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import StepHistory
from trim_rl.live.engines import StepRequest, StepResult, request_seed
from trim_rl.live.prm import UNSCORED
from trim_rl.live.prompts import STEP_SEPARATOR, is_final
from trim_rl.live.serve.errors import ServeError
from trim_rl.live.serve.policies import NO_REGEN_PRICE, ServedPolicy


@dataclass(frozen=True)
class Limits:
    max_steps: int = MAX_STEPS
    max_interventions: int | None = None
    max_strong_tokens: int | None = None  # no step is regenerated once the request has spent this many
    max_tokens: int | None = None  # solution tokens: the solution stops after the step that reaches it


@dataclass(eq=False)
class Job:
    problem: str
    policy: ServedPolicy
    limits: Limits = field(default_factory=Limits)
    lam: float | None = None
    priced: bool = False  # the price came from the controller, so the spend feeds its window
    system: str | None = None
    seed: int = 0
    stream: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: float = field(default_factory=time.monotonic)

    texts: list[str] = field(default_factory=list)
    history: StepHistory = field(default_factory=StepHistory)
    steps: list[dict] = field(default_factory=list)
    state: Any = None  # the policy's own state (TRIM-POMDP's belief)
    pending: dict | None = None  # the accepted strong step whose score the next round asks for
    weak_tokens: int = 0  # every weak token, discarded drafts included
    strong_tokens: int = 0
    discarded_tokens: int = 0
    interventions: int = 0
    prm_calls: int = 0  # scorer inputs made for this request
    prompt_tokens: int | None = None
    finish: str | None = None  # OpenAI's finish_reason: stop | length
    why: str | None = None  # answer | eos | max_steps | max_tokens | context
    error: ServeError | None = None
    cancelled: bool = False
    future: asyncio.Future | None = None
    events: asyncio.Queue | None = None  # ("step", delta) ... then ("end", None), for streams

    # -- what the scheduler asks ----------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.finish is not None or self.error is not None or self.cancelled

    @property
    def mode(self) -> str:
        return self.policy.mode

    def step_request(self, role: str) -> StepRequest:
        return StepRequest(self.problem, tuple(self.texts), request_seed(self.seed, len(self.texts), role), self.system)

    def scorer_items(self, draft: str) -> list[tuple[str, list[str]]]:
        """The pending strong step (if any) and the draft, for one scorer call."""
        items = [(self.problem, list(self.texts))] if self.pending is not None else []
        return items + [(self.problem, self.texts + [draft])]

    def regenerate_block(self, has_strong: bool) -> str | None:
        """Why this request may not regenerate its next step (None: it may)."""
        lim = self.limits
        if not has_strong:
            return "no_strong_backend"
        if lim.max_interventions is not None and self.interventions >= lim.max_interventions:
            return "max_interventions"
        if lim.max_strong_tokens is not None and self.strong_tokens >= lim.max_strong_tokens:
            return "max_strong_tokens"
        if self.lam is not None and self.policy.budget_conditioned and self.lam >= NO_REGEN_PRICE:
            return "price"
        return None

    # -- updates ---------------------------------------------------------------------------------
    def drafted(self, result: StepResult) -> None:
        if self.prompt_tokens is None and not self.texts and result.prompt_tokens is not None:
            self.prompt_tokens = int(result.prompt_tokens)

    def settle(self, score: float | None) -> None:
        """The pending strong step's score arrived: it enters the policy's history."""
        rec, self.pending = self.pending, None
        rec["score"] = score
        self.history.append(UNSCORED if score is None else score, rec["tokens"], True)

    def accept(self, r: StepResult, by: str, score: float | None = None, decision: str | None = None,
               draft: dict | None = None, **note) -> None:
        """Append a step written by ``by``; ``draft`` is the weak draft a strong step replaced."""
        if by == "strong":
            self.strong_tokens += r.tokens
        else:
            self.weak_tokens += r.tokens
        if draft is not None:
            self.weak_tokens += draft["tokens"]
            self.discarded_tokens += draft["tokens"]
            self.interventions += 1
        rec = {"index": len(self.steps), "by": by, "text": r.text, "tokens": r.tokens, "score": score,
               "decision": decision, "finish_reason": r.finish_reason, **note}
        if draft is not None:
            rec["draft"] = draft
        self.steps.append(rec)
        self.texts.append(r.text)
        if r.text and self.events is not None:
            shown = sum(1 for t in self.texts[:-1] if t)
            self.events.put_nowait(("step", (STEP_SEPARATOR if shown else "") + r.text))
        if r.ends_solution:
            self.end("stop", "answer" if is_final(r.text) else "eos")
        elif len(self.texts) >= self.limits.max_steps:
            self.end("length", "max_steps")
        elif self.limits.max_tokens is not None and self.solution_tokens >= self.limits.max_tokens:
            self.end("length", "max_tokens")
        elif self.mode == "hybrid":
            if by == "strong":
                self.pending = rec
            else:
                self.history.append(UNSCORED if score is None else score, r.tokens, False)

    def end(self, finish: str, why: str) -> None:
        if self.done:
            return
        self.finish, self.why = finish, why
        self._deliver()

    def fail(self, error: ServeError) -> None:
        if self.done:
            return
        self.error = error
        self._deliver()

    def cancel(self) -> None:
        """The client left or its time ran out: nothing more is sent, and the scheduler drops it."""
        self.cancelled = True

    def _deliver(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(self)
        if self.events is not None:
            self.events.put_nowait(("end", None))

    # -- what the response says ------------------------------------------------------------------
    @property
    def solution_tokens(self) -> int:
        return self.weak_tokens - self.discarded_tokens + self.strong_tokens

    @property
    def content(self) -> str:
        return STEP_SEPARATOR.join(t for t in self.texts if t)

    def usage(self) -> dict:
        prompt = self.prompt_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": self.solution_tokens,
                "total_tokens": prompt + self.solution_tokens, "weak_tokens": self.weak_tokens,
                "strong_tokens": self.strong_tokens, "discarded_tokens": self.discarded_tokens,
                "prm_calls": self.prm_calls, "interventions": self.interventions, "steps": len(self.steps)}

    def trace(self, steps: bool) -> dict:
        out = {"policy": self.policy.name, "lam": self.lam, "finish": self.why}
        if steps:
            out["steps"] = self.steps
        return out
