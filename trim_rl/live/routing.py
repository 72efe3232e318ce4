"""The one routing loop of live decoding and serving: draft -> score -> decide -> regenerate -> accept.

A round advances every active :class:`Route` (one problem's solution in progress) by one step:

1. one draft call per backend, both at once: the weak engine drafts the next step of every routed and
   weak-only route, the strong engine writes the next step of every strong-only one;
2. one scorer call: every routed draft (plus, with deferred scoring, the strong step each route
   accepted last round, whose score its next observation needs);
3. one routing decision per route, from the same observation builders as the offline env;
4. one strong call regenerating every rejected draft (and, with immediate scoring, one scorer call for
   those strong steps).

``live decode`` drives it with immediate scoring, every step scored, and a failed call ending the run;
the step-routing server with deferred scoring (one scorer call a round) and ``isolate``: a call that
fails for more than a timeout is asked again one route at a time, and a route whose call, router or
input fails fails alone.  Token accounting, limits and the step records live on the route.

Engines and scorers are awaited (``agenerate``, ``ascore_last_detail``) on the loop that runs the
rounds: the server's own, or a batch command's private one (:func:`trim_rl.live.aio.run_sync`).  A
backend with the sync method alone (an engine of one's own, a test's fake) is called in place, or, with
``offload_sync`` (the server), in a worker thread so that it cannot block the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import StepHistory
from trim_rl.live.aio import awaitable, run_inline
from trim_rl.live.engines import StepRequest, StepResult
from trim_rl.live.http import EngineError, EngineTimeout
from trim_rl.live.prm import UNSCORED
from trim_rl.live.prompts import is_final
from trim_rl.live.window import Score

__all__ = ["MODES", "Backends", "Failure", "Limits", "Proposal", "Route", "RoutingLoop", "StepRecord", "run_inline"]
log = logging.getLogger(__name__)
MODES = ("hybrid", "weak-only", "strong-only")


@dataclass(frozen=True)
class Limits:
    max_steps: int = MAX_STEPS
    max_interventions: int | None = None
    max_strong_tokens: int | None = None  # no step is regenerated once the route has spent this many
    max_tokens: int | None = None  # solution tokens: the solution stops after the step that reaches it


@dataclass
class Backends:
    """The engines and the scorer (``strong`` / ``scorer`` None where not given)."""

    weak: Any
    strong: Any = None
    scorer: Any = None

    def roles(self) -> list[str]:
        """The roles that have a backend (the only backend names a client or a metric label sees)."""
        return [role for role in ("weak", "strong", "scorer") if getattr(self, role) is not None]

    def engines(self) -> dict[str, Any]:
        """Role -> engine, for the engines a request's first prompt is rendered with."""
        return {role: getattr(self, role) for role in ("weak", "strong") if getattr(self, role) is not None}


@dataclass(frozen=True)
class Failure:
    """A backend call that failed for one route: the role and the engine's error; ``exc`` None for a
    failure of ours (a request that could not be sent, an answer that could not be read)."""

    role: str
    exc: EngineError | None = None

    @property
    def timeout(self) -> bool:
        return isinstance(self.exc, EngineTimeout)


@dataclass
class StepRecord:
    """One accepted step: who wrote it, its score (None: not scored), the decision that kept or
    replaced the weak draft, and the draft a strong step replaced (text, tokens, score)."""

    by: str
    text: str
    tokens: int
    finish_reason: str
    score: Score | None = None
    decision: str | None = None
    draft: tuple[str, int, Score | None] | None = None
    note: dict = field(default_factory=dict)
    prompt_tokens: int | None = None  # the prompt of the call that wrote it, where the server says it
    cached_tokens: int | None = None  # the part of that prompt the server's prefix cache held


class Route:
    """One problem's solution in progress: its history, tokens, limits and step records.  Subclasses
    say how its calls are seeded (:meth:`seed_for`) and what ending or failing means to their user."""

    def __init__(self, problem: str, mode: str, router=None, limits: Limits | None = None, lam: float | None = None,
                 system: str | None = None):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        self.problem, self.mode, self.router, self.lam, self.system = problem, mode, router, lam, system
        self.limits = limits or Limits()
        self.texts: list[str] = []
        self.history = StepHistory()
        self.steps: list[StepRecord] = []
        self.state: Any = None  # the policy's own state (TRIM-POMDP's belief)
        self.pending: StepRecord | None = None  # deferred scoring: the strong step scored next round
        self.weak_tokens = 0  # every weak token, discarded drafts included
        self.strong_tokens = 0
        # the strong model's prompts (what an escalation makes it prefill) and the cached part of them,
        # summed over the strong calls whose server reported them
        self.strong_prompt_tokens = 0
        self.strong_cached_tokens = 0
        self.discarded_tokens = 0
        self.interventions = 0
        self.prm_calls = 0  # scorer inputs made for this route
        self.prompt_tokens: int | None = None
        self.why: str | None = None  # answer | eos | max_steps | max_tokens | context
        self.failure: Failure | None = None
        self.router_s = 0.0

    # -- what the loop asks ----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.why is not None or self.failure is not None

    def seed_for(self, role: str) -> int | None:
        """The sampling seed of this route's next ``role`` call."""
        raise NotImplementedError

    def step_request(self, role: str) -> StepRequest:
        return StepRequest(self.problem, tuple(self.texts), self.seed_for(role), self.system)

    def scorer_items(self, draft: str) -> list[tuple[str, list[str]]]:
        """The pending strong step (if any) and the draft, for one scorer call."""
        items = [(self.problem, list(self.texts))] if self.pending is not None else []
        return items + [(self.problem, self.texts + [draft])]

    def regenerate_block(self, has_strong: bool) -> str | None:
        """Why this route may not regenerate its next step (None: it may)."""
        lim = self.limits
        if not has_strong:
            return "no_strong_backend"
        if lim.max_interventions is not None and self.interventions >= lim.max_interventions:
            return "max_interventions"
        if lim.max_strong_tokens is not None and self.strong_tokens >= lim.max_strong_tokens:
            return "max_strong_tokens"
        return None

    # -- updates ---------------------------------------------------------------------------------
    def drafted(self, result: StepResult) -> None:
        if self.prompt_tokens is None and not self.texts and result.prompt_tokens is not None:
            self.prompt_tokens = int(result.prompt_tokens)

    def settle(self, score: Score) -> None:
        """The pending strong step's score arrived: it enters the policy's history."""
        rec, self.pending = self.pending, None
        rec.score = score
        self.history.append(UNSCORED if score.value is None else score.value, rec.tokens, True)

    def accept(self, r: StepResult, by: str, score: Score | None = None, decision: str | None = None,
               draft: tuple[str, int, Score | None] | None = None, defer: bool = False, **note) -> StepRecord:
        """Append a step written by ``by``; ``draft`` is the weak draft a strong step replaced; ``defer``:
        the strong step's score comes next round (:meth:`settle`)."""
        if by == "strong":
            self.strong_tokens += r.tokens
            if r.prompt_tokens is not None and r.cached_tokens is not None:
                self.strong_prompt_tokens += r.prompt_tokens
                self.strong_cached_tokens += r.cached_tokens
        else:
            self.weak_tokens += r.tokens
        if draft is not None:
            self.weak_tokens += draft[1]
            self.discarded_tokens += draft[1]
            self.interventions += 1
        rec = StepRecord(by, r.text, r.tokens, r.finish_reason, score, decision, draft, note, r.prompt_tokens,
                         r.cached_tokens)
        self.steps.append(rec)
        self.texts.append(r.text)
        self.accepted(rec)
        if r.ends_solution:
            self.end("answer" if is_final(r.text) else "eos")
        elif len(self.texts) >= self.limits.max_steps:
            self.end("max_steps")
        elif self.limits.max_tokens is not None and self.solution_tokens >= self.limits.max_tokens:
            self.end("max_tokens")
        elif self.mode == "hybrid":
            if by == "strong" and defer:
                self.pending = rec
            else:
                value = None if score is None else score.value
                self.history.append(UNSCORED if value is None else value, r.tokens, by == "strong")
        return rec

    def accepted(self, rec: StepRecord) -> None:
        """Called for every accepted step, before the route may end (a stream sends it)."""

    def end(self, why: str) -> None:
        if not self.done:
            self.why = why
            self.ended()

    def fail(self, failure: Failure) -> None:
        if not self.done:
            self.failure = failure
            self.ended()

    def ended(self) -> None:
        """Called once, when the route ends or fails."""

    @property
    def solution_tokens(self) -> int:
        return self.weak_tokens - self.discarded_tokens + self.strong_tokens


@dataclass
class Proposal:
    """A routed draft awaiting its decision: the route, the weak draft, its score, and why it may not be
    regenerated (None: it may)."""

    route: Route
    draft: StepResult
    score: Score
    block: str | None

    @property
    def value(self) -> float:
        """The score the policy sees (:data:`UNSCORED` for a step that could not be scored)."""
        return UNSCORED if self.score.value is None else self.score.value


class RoutingLoop:
    """Runs rounds over routes (see the module notes).  ``score_strong``: "now" (a second scorer call a
    round, every strong step scored) or "next_round" (the score rides with the next draft's call; a
    strong step that ends the solution stays unscored); ``isolate``: one route's fault stays its own;
    ``offload_sync``: a backend without the async method runs in a worker thread (else in place)."""

    def __init__(self, backends: Backends, score_strong: str = "now", isolate: bool = False,
                 offload_sync: bool = False):
        if score_strong not in ("now", "next_round"):
            raise ValueError(f"score_strong {score_strong!r}: expected 'now' or 'next_round'")
        self.b, self.defer, self.isolate = backends, score_strong == "next_round", isolate
        self.offload_sync = offload_sync
        self.generations = 0  # engine requests, for the benchmarks
        self.wait_s = 0.0  # time spent awaiting backends
        self.on_backend_error: Callable[[str, EngineError], None] | None = None
        #: sees each router decision and may replace it (the server's decision log and its exploration)
        self.on_decision: Callable[[Proposal, int], int] | None = None

    async def round(self, routes: Sequence[Route]) -> None:
        """One round: :meth:`propose`, the routers' decisions, then :meth:`resolve`."""
        decided = []
        for p in await self.propose(routes):
            action = self._decide(p)
            if action is not None:
                decided.append((p, action))
        if decided:
            await self.resolve(decided)

    async def propose(self, routes: Sequence[Route]) -> list[Proposal]:
        """The first half of a round: draft every route's next step (strong-only and weak-only routes
        accept theirs at once), score the routed drafts, and return the decisions they await.  A caller
        that decides by itself (the live env: its agent's actions) calls :meth:`resolve` with them."""
        by_weak = [r for r in routes if r.mode != "strong-only"]
        by_strong = [r for r in routes if r.mode == "strong-only"]
        weak_drafts, strong_steps = await self._waiting(asyncio.gather(self._generate("weak", by_weak),
                                                                       self._generate("strong", by_strong)))
        for r, s in zip(by_strong, strong_steps):
            self._take(r, s, lambda res, r=r: r.accept(res, "strong"))
        routed = []
        for r, d in zip(by_weak, weak_drafts):
            if r.mode == "weak-only":
                self._take(r, d, lambda res, r=r: r.accept(res, "weak"))
            elif self._take(r, d, r.drafted):
                routed.append((r, d))
        return await self._score(routed) if routed else []

    async def resolve(self, decided: Sequence[tuple[Proposal, int]]) -> None:
        """The second half of a round: keep (0) or regenerate (1) each proposal's draft, and accept the
        step.  A regenerate the proposal blocks is played as keep, as the offline env does."""
        regen = []
        for p, action in decided:
            r = p.route
            if r.done:
                continue
            if action == 1 and p.block is None:
                regen.append((r, p.draft, p.score))
            else:
                r.accept(p.draft, "weak", p.score, "keep", **({"blocked": p.block} if p.block else {}))
        if regen:
            await self._regenerate(regen)

    def _take(self, route: Route, result, then: Callable) -> bool:
        """Apply ``then`` to a call's result for ``route``; False where the route failed, ended, or its
        prompt no longer fits the model's context (the solution ends as it stands)."""
        if route.done:
            return False
        if isinstance(result, Failure):
            route.fail(result)
            return False
        if result.finish_reason == "context":
            route.end("context")
            return False
        then(result)
        return not route.done

    async def _score(self, routed: list) -> list[Proposal]:
        items, owner = [], []
        for r, d in routed:
            for it in r.scorer_items(d.text):
                items.append(it)
                owner.append(r)
        scores = await self._waiting(self._call("scorer", self._method(self.b.scorer, "score_last_detail"), items))
        got: dict[int, list] = {}
        for r, sc in zip(owner, scores):
            got.setdefault(id(r), []).append(sc)
        out = []
        for r, d in routed:
            mine = got[id(r)]
            failed = next((s for s in mine if isinstance(s, Failure)), None)
            if r.done:
                continue
            if failed is not None:
                r.fail(failed)
                continue
            r.prm_calls += len(mine)
            if r.pending is not None:
                r.settle(mine[0])
            out.append(Proposal(r, d, mine[-1], r.regenerate_block(self.b.strong is not None)))
        return out

    def _decide(self, p: Proposal) -> int | None:
        """The route's router's action for a proposal (None: the router failed and, isolated, the route
        with it)."""
        r, sc = p.route, p.score
        t0 = time.perf_counter()
        try:
            action, r.state = r.router.decide(r.history, UNSCORED if sc.value is None else sc.value, p.draft.tokens,
                                              p.block is None, r.state, r.lam)
        except Exception:
            if not self.isolate:
                raise
            log.exception("the router failed on one request")  # it fails alone
            r.fail(Failure("router"))
            return None
        finally:
            r.router_s += time.perf_counter() - t0
        if self.on_decision is not None:
            action = self.on_decision(p, action)
        return action

    async def _regenerate(self, regen: list) -> None:
        strong = await self._waiting(self._generate("strong", [r for r, _, _ in regen]))
        fits = []
        for (r, d, sc), s in zip(regen, strong):
            if r.done:
                continue
            if isinstance(s, Failure):
                r.fail(s)
            elif s.finish_reason == "context":  # the strong model's context is full: keep the weak step
                r.accept(d, "weak", sc, "regenerate", strong_failed="context")
            else:
                fits.append((r, d, sc, s))
        if self.defer:
            for r, d, sc, s in fits:
                r.accept(s, "strong", None, "regenerate", draft=(d.text, d.tokens, sc), defer=True)
            return
        items = [(r.problem, r.texts + [s.text]) for r, _, _, s in fits]
        scores = (await self._waiting(self._call("scorer", self._method(self.b.scorer, "score_last_detail"), items))
                  if items else [])
        for (r, d, sc, s), ssc in zip(fits, scores):
            if isinstance(ssc, Failure):
                r.fail(ssc)
                continue
            r.prm_calls += 1
            r.accept(s, "strong", ssc, "regenerate", draft=(d.text, d.tokens, sc))

    # -- backend calls ---------------------------------------------------------------------------
    async def _generate(self, role: str, routes: Sequence[Route]) -> list:
        if not routes:
            return []
        self.generations += len(routes)
        engine = getattr(self.b, role)
        return await self._call(role, self._method(engine, "generate"), [r.step_request(role) for r in routes])

    def _method(self, backend, name: str) -> Callable[[list], Awaitable[list]]:
        """The backend's ``a<name>`` coroutine method, else its sync ``name`` wrapped as one."""
        fn = getattr(backend, "a" + name, None)
        if fn is not None and inspect.iscoroutinefunction(fn):
            return fn
        sync = getattr(backend, name)
        if self.offload_sync:
            return lambda items: asyncio.to_thread(sync, items)
        return awaitable(sync)

    async def _call(self, role: str, fn: Callable[[list], Awaitable[list]], items: list) -> list:
        """``fn(items)``: one result per item, or a :class:`Failure` for each item whose call failed."""
        if not items:
            return []
        if not self.isolate:  # a failed call fails the caller (live decode ends the run, resumably)
            return list(await fn(list(items)))
        try:
            out = list(await fn(list(items)))
            if len(out) == len(items):
                return out
            raise EngineError(role, f"{len(out)} results for {len(items)} inputs")
        except EngineError as exc:
            self._backend_failed(role, exc)
            if len(items) == 1 or isinstance(exc, EngineTimeout):
                return [Failure(role, exc)] * len(items)
        except Exception:  # the batch could not be built or read (one request's text, one odd answer)
            log.exception("%s call of %d items failed; asking for each alone", role, len(items))
            if len(items) == 1:
                return [Failure(role)]
        # a refusal, a bad answer or a bad item: ask for each item alone, so that only its own routes fail
        alone = await asyncio.gather(*(fn([it]) for it in items), return_exceptions=True)
        out = []
        for r in alone:
            if isinstance(r, EngineError):
                self._backend_failed(role, r)
                out.append(Failure(role, r))
            elif isinstance(r, Exception):
                log.error("%s call failed for one request: %s: %s", role, type(r).__name__, r)
                out.append(Failure(role))
            elif isinstance(r, BaseException):
                raise r
            else:
                out.append(r[0] if len(r) == 1 else Failure(role))
        return out

    async def _waiting(self, aw):
        """Await backend calls, counting the time apart from the loop's own."""
        t0 = time.perf_counter()
        try:
            return await aw
        finally:
            self.wait_s += time.perf_counter() - t0

    def _backend_failed(self, role: str, exc: EngineError) -> None:
        if self.on_backend_error is not None:
            self.on_backend_error(role, exc)
