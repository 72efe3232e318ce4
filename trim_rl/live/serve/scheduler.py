"""Step-level continuous batching: every active request advances one step per round of the one routing
loop (:mod:`trim_rl.live.routing`: draft -> score -> decide -> regenerate -> accept), with deferred
scoring of strong steps (one scorer call a round) and faults isolated per request.  Requests that
arrived meanwhile join at the next round (up to ``max_active``, the rest wait in a queue of
``max_queue``); a request leaves as soon as its solution ends.

The engines and scorers of the live layer are reused as they are (prompt building, parsing, retries
over replicas, context fitting): they are async, and the loop awaits each batched call on the server's
own event loop (no worker thread between; an in-process vLLM engine runs its blocking call in a
worker thread of its own, and a backend with a sync API alone is called in a worker thread).

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
from collections.abc import Sequence

from trim_rl.live.http import EngineError
from trim_rl.live.routing import Backends, RoutingLoop
from trim_rl.live.serve.errors import ServeError, internal_error, redact
from trim_rl.live.serve.job import Job
from trim_rl.live.serve.settings import SchedulerSettings

__all__ = ["Backends", "QueueFull", "Scheduler"]
log = logging.getLogger("trim_rl.serve")


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
        self.loop = RoutingLoop(backends, score_strong="next_round", isolate=True, offload_sync=True)
        self.loop.on_backend_error = self._backend_failed
        self.rounds = 0
        self.latency_s: deque[float] = deque(maxlen=256)  # of finished requests, for Retry-After
        self.decisions = None  # a DecisionLog (serve --log-decisions): sees every decision, writes finished requests

    def log_decisions(self, decisions) -> None:
        """Record every routing decision in ``decisions`` (a :class:`~trim_rl.live.serve.decisions.DecisionLog`)."""
        self.decisions = decisions
        self.loop.on_decision = decisions.decide

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
        if self.decisions is not None:
            self.decisions.close()

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
            self.loop.wait_s = 0.0
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
                      time.perf_counter() - t0, self.loop.wait_s)
            if self.metrics is not None:
                steps = sum(len(j.steps) for j in jobs) - steps_before
                self.metrics.round_done(time.perf_counter() - t0 - self.loop.wait_s, steps)
            for j in jobs:
                if j.done and not j.cancelled:
                    self._finished(j)

    def _finished(self, job: Job) -> None:
        self.latency_s.append(time.monotonic() - job.created)
        if self.decisions is not None and job.error is None:
            self.decisions.finished(job)
        if job.error is None and job.priced and job.policy.controller is not None:
            job.policy.controller.observe(job.strong_tokens, job.solution_tokens)
        if self.metrics is not None:
            self.metrics.job_done(job)

    # -- one round -------------------------------------------------------------------------------
    async def round(self, jobs: Sequence[Job]) -> None:
        await self.loop.round(jobs)
        self._router_times({id(j.policy.router): j.policy.router for j in jobs if j.policy.router is not None}.values())

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
