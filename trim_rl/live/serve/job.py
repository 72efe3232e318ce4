"""One request's decoding: a :class:`~trim_rl.live.routing.Route` with what the server adds to it (its
policy and price, the future its handler awaits, the events of a stream, usage and step trace).

The server scores an accepted strong step in the *next* round's scorer call, together with the next
draft (the draft's prompt needs only the step's text), so a round makes one scorer call.  A strong
step that ends the solution is never needed by the policy and stays unscored (``score: null`` in the
trace).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from trim_rl.live.engines import request_seed
from trim_rl.live.prompts import STEP_SEPARATOR
from trim_rl.live.routing import Failure, Limits, Route, StepRecord
from trim_rl.live.serve.errors import ServeError, backend_error, internal_error
from trim_rl.live.serve.policies import NO_REGEN_PRICE, ServedPolicy

__all__ = ["Job", "Limits"]
FINISH = {"answer": "stop", "eos": "stop", "max_steps": "length", "max_tokens": "length", "context": "length"}


class Job(Route):
    """One prompt of a request, from admission to its last step."""

    def __init__(self, problem: str, policy: ServedPolicy, limits: Limits | None = None, lam: float | None = None,
                 priced: bool = False, system: str | None = None, seed: int = 0, stream: bool = False):
        super().__init__(problem, policy.mode, policy.router, limits, lam, system)
        self.policy, self.priced, self.seed, self.stream = policy, priced, seed, stream
        self.id = uuid.uuid4().hex[:24]
        self.created = time.monotonic()
        self.error: ServeError | None = None
        self.cancelled = False
        self.future: asyncio.Future | None = None
        self.events: asyncio.Queue | None = None  # ("step", delta) ... then ("end", None), for streams

    @property
    def done(self) -> bool:
        return super().done or self.error is not None or self.cancelled

    @property
    def finish(self) -> str | None:
        """OpenAI's finish_reason: stop | length."""
        return None if self.why is None else FINISH[self.why]

    def seed_for(self, role: str) -> int:
        return request_seed(self.seed, len(self.texts), role)

    def regenerate_block(self, has_strong: bool) -> str | None:
        block = super().regenerate_block(has_strong)
        if block is None and self.lam is not None and self.policy.budget_conditioned and self.lam >= NO_REGEN_PRICE:
            return "price"
        return block

    # -- updates ---------------------------------------------------------------------------------
    def accepted(self, rec: StepRecord) -> None:
        if rec.text and self.events is not None:
            shown = sum(1 for t in self.texts[:-1] if t)
            self.events.put_nowait(("step", (STEP_SEPARATOR if shown else "") + rec.text))

    def fail(self, error: ServeError | Failure) -> None:
        """Fail with a ServeError, or with a routing failure turned into one (502 / 504 naming the backend's
        role, 500 for a fault of the server's own)."""
        if self.done:
            return
        if isinstance(error, Failure):
            error = internal_error() if error.exc is None else backend_error(error.role, error.exc)
        self.error = error
        self._deliver()

    def ended(self) -> None:
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
    def content(self) -> str:
        return STEP_SEPARATOR.join(t for t in self.texts if t)

    def usage(self) -> dict:
        prompt = self.prompt_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": self.solution_tokens,
                "total_tokens": prompt + self.solution_tokens, "weak_tokens": self.weak_tokens,
                "strong_tokens": self.strong_tokens, "discarded_tokens": self.discarded_tokens,
                "prm_calls": self.prm_calls, "interventions": self.interventions, "steps": len(self.steps),
                "strong_prompt_tokens": self.strong_prompt_tokens, "strong_cached_tokens": self.strong_cached_tokens}

    def trace(self, steps: bool) -> dict:
        out = {"policy": self.policy.name, "lam": self.lam, "finish": self.why}
        if steps:
            out["steps"] = [trace_step(i, rec) for i, rec in enumerate(self.steps)]
        return out


def trace_step(index: int, rec: StepRecord) -> dict:
    """A step as the response's trace shows it."""
    out = {"index": index, "by": rec.by, "text": rec.text, "tokens": rec.tokens,
           "score": None if rec.score is None else rec.score.value, "decision": rec.decision,
           "finish_reason": rec.finish_reason, **rec.note}
    if rec.draft is not None:
        text, tokens, score = rec.draft
        out["draft"] = {"text": text, "tokens": tokens, "score": None if score is None else score.value}
    return out
