"""Step-level continuous batching: every active request advances one step per round.

A round, over the active requests:
1. one draft call per backend, both at once: the weak engine drafts the next step of every routed
   and weak-only request, the strong engine writes the next step of every strong-only one;
2. one scorer call: every routed request's draft, plus the strong step it accepted last round;
3. one routing decision per request (the same observation builders as the env);
4. one strong call regenerating every rejected draft.
Requests that arrived meanwhile join at the next round (up to ``max_active``, the rest wait in a
queue of ``max_queue``); a request leaves as soon as its solution ends.

The engines and scorers of the live layer are reused as they are (prompt building, parsing, retries
over replicas, context fitting): their calls are synchronous, running their HTTP on the live layer's
shared async clients (one per backend, on its own loop thread), so the scheduler awaits each batched
call from a worker thread and the server's event loop never blocks.

Admission: a request is admitted whole (all its prompts) while the requests decoded or waiting, its
own included, number at most ``max_active + max_queue``; else 429 with Retry-After.  A request with
more prompts than that could never be admitted: the app answers it 400.

Faults: a call that fails fails only the requests in it, with 502 / 504 naming the backend's role; a
batch that fails for another reason than a timeout (or that raises while being built or read) is asked
again one request at a time, so that one bad request or one bad answer fails only its own request.
A router that raises on one request fails that request alone.  Other requests go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Sequence

from trim_rl.live.http import EngineError, EngineTimeout
from trim_rl.live.prm import UNSCORED
from trim_rl.live.serve.errors import ServeError, backend_error, internal_error, redact
from trim_rl.live.serve.job import Job
from trim_rl.live.serve.settings import SchedulerSettings

log = logging.getLogger("trim_rl.serve")


@dataclass
class Backends:
    """The engines and the scorer of the server (``strong`` / ``scorer`` None where not given)."""

    weak: Any
    strong: Any = None
    scorer: Any = None

    def roles(self) -> list[str]:
        """The roles that have a backend (the only backend names a client or a metric label sees)."""
        return [role for role in ("weak", "strong", "scorer") if getattr(self, role) is not None]

    def engines(self) -> dict[str, Any]:
        """Role -> engine, for the engines a request's first prompt is rendered with."""
        return {role: getattr(self, role) for role in ("weak", "strong") if getattr(self, role) is not None}


class QueueFull(ServeError):
    def __init__(self, retry_after: int):
        super().__init__(429, "the server's queue is full; retry later", None, "queue_full", "rate_limit_error",
                         {"Retry-After": str(retry_after)})


class Scheduler:
    def __init__(self, backends: Backends, settings: SchedulerSettings | None = None, metrics=None):
        self.b = backends
        self.s = settings or SchedulerSettings()
        self.metrics = metrics
        self.waiting: deque[Job] = deque()
        self.active: list[Job] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # backend calls block in the engines' sync API: one thread per call in flight (a split batch
        # asks every request at once)
        self._pool = ThreadPoolExecutor(max_workers=max(8, min(64, self.s.max_active)), thread_name_prefix="trim-call")
        self.rounds = 0
        self._wait_s = 0.0  # time of this round spent awaiting backends
        self.latency_s: deque[float] = deque(maxlen=256)  # of finished requests, for Retry-After

    # -- requests --------------------------------------------------------------------------------
    def submit(self, jobs: Sequence[Job]) -> None:
        """Admit a request's jobs together (they join at the next round), or raise QueueFull and admit none:
        at most ``max_active + max_queue`` jobs are decoded or waiting, whatever the round is doing."""
        if self.load + len(jobs) > self.s.capacity:
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        for job in jobs:
            job.future = loop.create_future()
            if job.stream:
                job.events = asyncio.Queue()
            self.waiting.append(job)
        self._wake.set()

    def withdraw(self, job: Job) -> None:
        """Drop a request whose client left or whose time ran out; its slot is free for the next round."""
        job.cancel()
        try:
            self.waiting.remove(job)
        except ValueError:
            pass

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the median latency of recent requests times the rounds of
        waiting requests ahead, at least 1."""
        if not self.latency_s:
            return 1
        med = sorted(self.latency_s)[len(self.latency_s) // 2]
        return max(1, round(med * (1 + len(self.waiting) / max(1, self.s.max_active))))

    @property
    def load(self) -> int:
        """Jobs that hold a slot or a place in the queue (a finished job frees its slot at once)."""
        return sum(1 for j in self.active if not j.done) + sum(1 for j in self.waiting if not j.done)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    @property
    def running(self) -> int:
        return len(self.active)

    # -- the loop --------------------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="trim-scheduler")

    async def stop(self) -> None:
        """Stop after the current round; requests still there fail with 503 (the server drains before)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in list(self.active) + list(self.waiting):
            job.fail(ServeError(503, "the server is shutting down", None, "shutting_down"))
        self.active.clear()
        self.waiting.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            self.active = [j for j in self.active if not j.done]
            while self.waiting and len(self.active) < self.s.max_active:
                job = self.waiting.popleft()
                if not job.done:
                    self.active.append(job)
            if not self.active:
                self._wake.clear()
                await self._wake.wait()
                continue
            jobs = list(self.active)
            t0 = time.perf_counter()
            self._wait_s = 0.0
            steps_before = sum(len(j.steps) for j in jobs)
            try:
                await self.round(jobs)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the server: fail this round's requests, loudly
                log.exception("round failed")
                for j in jobs:
                    j.fail(internal_error())
            self.rounds += 1
            log.debug("round %d: %d requests, %.3f s (%.3f s in backend calls)", self.rounds, len(jobs),
                      time.perf_counter() - t0, self._wait_s)
            if self.metrics is not None:
                steps = sum(len(j.steps) for j in jobs) - steps_before
                self.metrics.round_done(time.perf_counter() - t0 - self._wait_s, steps)
            for j in jobs:
                if j.done and not j.cancelled:
                    self._finished(j)

    def _finished(self, job: Job) -> None:
        self.latency_s.append(time.monotonic() - job.created)
        if job.error is None and job.priced and job.policy.controller is not None:
            job.policy.controller.observe(job.strong_tokens, job.solution_tokens)
        if self.metrics is not None:
            self.metrics.job_done(job)

    # -- one round -------------------------------------------------------------------------------
    async def round(self, jobs: Sequence[Job]) -> None:
        by_weak = [j for j in jobs if j.mode != "strong-only"]
        by_strong = [j for j in jobs if j.mode == "strong-only"]
        weak_drafts, strong_steps = await self._waiting(asyncio.gather(self._generate("weak", by_weak),
                                                                       self._generate("strong", by_strong)), "drafts")
        for j, s in zip(by_strong, strong_steps):
            self._take(j, s, lambda r, j=j: j.accept(r, "strong"))
        routed = []
        for j, d in zip(by_weak, weak_drafts):
            if j.mode == "weak-only":
                self._take(j, d, lambda r, j=j: j.accept(r, "weak"))
            elif self._take(j, d, j.drafted):
                routed.append((j, d))
        if routed:
            await self._route(routed)

    def _take(self, job: Job, result, then: Callable) -> bool:
        """Apply ``then`` to a call's result for ``job``; False where the job failed, was dropped, or its
        prompt no longer fits the model's context (the solution ends as it stands)."""
        if job.done:
            return False
        if isinstance(result, ServeError):
            job.fail(result)
            return False
        if result.finish_reason == "context":
            job.end("length", "context")
            return False
        then(result)
        return not job.done

    async def _route(self, routed: list) -> None:
        items, owner = [], []
        for j, d in routed:
            for it in j.scorer_items(d.text):
                items.append(it)
                owner.append(j)
        scores = await self._waiting(self._call("scorer", self.b.scorer.score_last_detail, items), "scores")
        got: dict[int, list] = {}
        for j, sc in zip(owner, scores):
            got.setdefault(id(j), []).append(sc)
        regen = []
        for j, d in routed:
            mine = got[id(j)]
            failed = next((s for s in mine if isinstance(s, ServeError)), None)
            if j.done:
                continue
            if failed is not None:
                j.fail(failed)
                continue
            j.prm_calls += len(mine)
            if j.pending is not None:
                j.settle(mine[0].value)
            sc = mine[-1].value
            block = j.regenerate_block(self.b.strong is not None)
            try:
                action, j.state = j.policy.router.decide(j.history, UNSCORED if sc is None else sc, d.tokens,
                                                         block is None, j.state, j.lam)
            except Exception:  # this request's observation broke the policy: it fails alone
                log.exception("router %s failed on request %s", j.policy.name, j.id)
                j.fail(internal_error())
                continue
            if action == 1:
                regen.append((j, d, sc))
            else:
                j.accept(d, "weak", sc, "keep", **({"blocked": block} if block else {}))
        self._router_times({id(j.policy.router): j.policy.router for j, _ in routed}.values())
        if not regen:
            return
        strong = await self._waiting(self._generate("strong", [j for j, _, _ in regen]), "regenerations")
        for (j, d, sc), s in zip(regen, strong):
            if j.done:
                continue
            if isinstance(s, ServeError):
                j.fail(s)
            elif s.finish_reason == "context":  # the strong model's context is full: keep the weak step
                j.accept(d, "weak", sc, "regenerate", strong_failed="context")
            else:
                j.accept(s, "strong", None, "regenerate", draft={"text": d.text, "tokens": d.tokens, "score": sc})

    # -- backend calls ---------------------------------------------------------------------------
    async def _generate(self, role: str, jobs: Sequence[Job]) -> list:
        if not jobs:
            return []
        engine = getattr(self.b, role)
        return await self._call(role, engine.generate, [j.step_request(role) for j in jobs])

    async def _call(self, role: str, fn: Callable[[list], list], items: list) -> list:
        """``fn(items)`` in a worker thread: one result per item, or a ServeError for each item whose
        call failed."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        try:
            out = list(await loop.run_in_executor(self._pool, fn, list(items)))
            if len(out) == len(items):
                return out
            raise EngineError(role, f"{len(out)} results for {len(items)} inputs")
        except EngineError as exc:
            self._backend_failed(role, exc)
            if len(items) == 1 or isinstance(exc, EngineTimeout):
                return [backend_error(role, exc)] * len(items)
        except Exception:  # the batch could not be built or read (one request's text, one odd answer)
            log.exception("%s call of %d items failed; asking for each alone", role, len(items))
            if len(items) == 1:
                return [internal_error()]
        # a refusal, a bad answer or a bad item: ask for each item alone, so that only its own requests fail
        alone = await asyncio.gather(*(loop.run_in_executor(self._pool, fn, [it]) for it in items),
                                     return_exceptions=True)
        out = []
        for r in alone:
            if isinstance(r, EngineError):
                self._backend_failed(role, r)
                out.append(backend_error(role, r))
            elif isinstance(r, Exception):
                log.error("%s call failed for one request: %s", role, redact(f"{type(r).__name__}: {r}"))
                out.append(internal_error())
            elif isinstance(r, BaseException):
                raise r
            else:
                out.append(r[0] if len(r) == 1 else internal_error())
        return out

    async def _waiting(self, aw, what: str = ""):
        """Await backend calls, counting the time apart from the scheduler's own."""
        t0 = time.perf_counter()
        try:
            return await aw
        finally:
            self._wait_s += time.perf_counter() - t0
            log.debug("  %s: %.3f s", what, time.perf_counter() - t0)

    def _router_times(self, routers) -> None:
        """Hand the routers' decision times to the metrics (and empty their lists, which only grow)."""
        for r in routers:
            if self.metrics is not None:
                self.metrics.router_times(r.seconds)
            r.seconds.clear()

    def _backend_failed(self, role: str, exc: EngineError) -> None:
        log.warning("%s backend: %s", role, redact(str(exc)))
        if self.metrics is not None:
            self.metrics.backend_error(role)
