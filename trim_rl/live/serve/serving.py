"""The serving object of the app (``app.state.serving``): turns an OpenAI request into jobs for the
scheduler and their results into a response, a stream or an error.

Every request becomes one :class:`~trim_rl.live.serve.job.Job` per prompt, decoded by the shared
:class:`~trim_rl.live.serve.scheduler.Scheduler`.  Each request is answered exactly once: with its
response, with one error in OpenAI's format, or not at all when the client has left (counted as 499).
A stream starts when its first step is accepted, so that a request failing before it gets a plain
HTTP error; a failure after that ends the stream with an ``error`` event and ``[DONE]``.

A request is checked whole before it joins a round: its fields (strictly typed, by the request
models), its texts (they must encode as UTF-8) and its first prompt, rendered with each engine's chat
template.  What fails then is that request's 400 (or 500 where the server's template fails on it),
never its neighbours'.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from trim_rl.live.prompts import step_prompt
from trim_rl.live.serve.errors import ServeError, bad_request
from trim_rl.live.serve.job import Job, Limits
from trim_rl.live.serve.metrics import Metrics
from trim_rl.live.serve.middleware import CLIENT_LEFT
from trim_rl.live.serve.policies import ServedPolicy
from trim_rl.live.serve.protocol import (ChatCompletionRequest, ChunkWriter, CompletionRequest, Health, ModelList,
                                         TrimOptions, chat_response, completion_response, models_list)
from trim_rl.live.serve.scheduler import Backends, Scheduler
from trim_rl.live.serve.settings import ServeSettings

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
log = logging.getLogger("trim_rl.serve")


class OpenAIServing:
    """Answers the OpenAI endpoints with the served policies, one scheduler and the app's metrics."""

    def __init__(self, served: dict[str, ServedPolicy], default: str, backends: Backends, settings: ServeSettings,
                 metrics: Metrics):
        self.served, self.default, self.backends, self.s, self.metrics = served, default, backends, settings, metrics
        self.scheduler = Scheduler(backends, settings.scheduler, metrics)
        if settings.log_decisions:
            from trim_rl.live.serve.decisions import DecisionLog

            self.scheduler.log_decisions(DecisionLog(settings.log_decisions, settings.explore_rate))
        self.started = int(time.time())
        for role in backends.roles():
            metrics.backend_role(role)  # every role's series exists from the start
        metrics.gauges["trim_requests_active"] = lambda: [({}, self.scheduler.running)]
        metrics.gauges["trim_requests_queued"] = lambda: [({}, self.scheduler.queued)]
        controlled = [p for p in served.values() if p.controller is not None]
        if controlled:
            metrics.gauges["trim_price"] = lambda: [({"policy": p.name}, p.controller.price) for p in controlled]
            metrics.gauges["trim_target_strong_share"] = lambda: [({}, controlled[0].controller.target)]

    # -- the small endpoints ---------------------------------------------------------------------
    def health(self) -> Health:
        return Health(active=self.scheduler.running, queued=self.scheduler.queued)

    def models(self) -> ModelList:
        return models_list([self.default] + [n for n in self.served if n != self.default], self.started)

    def refused(self, path: str, err: ServeError) -> ServeError:
        """Count an error met before the request reached the scheduler (without a policy)."""
        endpoint = ENDPOINTS.get(path)
        if endpoint is not None:
            self.metrics.request(endpoint, "", err.status)
        return err

    # -- the OpenAI endpoints --------------------------------------------------------------------
    async def chat(self, body: ChatCompletionRequest):
        users = [i for i, m in enumerate(body.messages) if m.role == "user"]
        if not users:
            raise bad_request("messages", "no user message (the last user message is the problem)")
        system = next((i for i, m in enumerate(body.messages) if m.role in ("system", "developer")), None)
        problem = checked_text(f"messages[{users[-1]}].content", body.messages[users[-1]].text())
        system_text = None if system is None else checked_text(f"messages[{system}].content",
                                                                body.messages[system].text())
        return await self.answer("chat", body, [problem], system_text or None)

    async def completions(self, body: CompletionRequest):
        if isinstance(body.prompt, str):
            prompts = [checked_text("prompt", body.prompt)]
        else:
            prompts = [checked_text(f"prompt[{i}]", p) for i, p in enumerate(body.prompt)]
        if body.stream and len(prompts) > 1:
            raise bad_request("prompt", "a stream takes one prompt")
        capacity = self.scheduler.s.capacity
        if len(prompts) > capacity:
            raise bad_request("prompt", f"{len(prompts)} prompts can never be admitted: the server decodes or "
                                        f"queues at most {capacity} at once (--max-active + --max-queue)")
        return await self.answer("completions", body, prompts, None)

    # -- one request -----------------------------------------------------------------------------
    async def answer(self, endpoint: str, body, problems: list[str], system: str | None):
        """The response, a stream, or a ServeError; cancelled when the client leaves (the jobs are
        withdrawn and the request counted as 499)."""
        t = body.trim or TrimOptions()
        policy = self.resolve_policy(t.policy, body.model)
        price, priced = policy.price(t.budget, t.lam)
        if any(not p.strip() for p in problems):
            raise bad_request("messages" if endpoint == "chat" else "prompt", "the problem is empty")
        s = self.s
        lim = Limits(min(t.max_steps or s.max_steps, s.max_steps), _least(t.max_interventions, s.max_interventions),
                     t.max_strong_tokens, getattr(body, "max_completion_tokens", None) or body.max_tokens)
        seed = body.seed if body.seed is not None else random.getrandbits(31)
        jobs = [Job(p, policy, lim, price, priced, system, seed + i, body.stream) for i, p in enumerate(problems)]
        try:
            self.check_prompts(jobs)
            self.scheduler.submit(jobs)
        except ServeError as err:
            self.metrics.request(endpoint, policy.name, err.status)
            err.counted = True
            raise
        deadline = jobs[0].created + s.request_timeout
        prefix = "chatcmpl-" if endpoint == "chat" else "cmpl-"
        if body.stream:
            return await self.stream(endpoint, jobs[0], prefix + jobs[0].id, t.return_steps, deadline,
                                     bool(body.stream_options and body.stream_options.include_usage))
        status = CLIENT_LEFT
        try:
            status = await self.wait_all(jobs, deadline)
            if status != 200:
                raise status
            build = chat_response if endpoint == "chat" else completion_response
            return build(prefix + jobs[0].id, policy.name, jobs, t.return_steps)
        finally:
            for j in jobs:
                if not j.done:
                    self.scheduler.withdraw(j)
            self.finish_count(endpoint, policy.name, status, jobs)

    def resolve_policy(self, name: str | None, model: str) -> ServedPolicy:
        if name is not None:
            if name not in self.served:
                raise bad_request("trim.policy", f"{name!r} is not served (served: {', '.join(self.served)})")
            return self.served[name]
        return self.served.get(model) or self.served[self.default]

    def check_prompts(self, jobs: list[Job]) -> None:
        """Render each job's first prompt with every engine's chat template, as its first round will: a
        template that fails on this request fails this request alone (500, the detail in the log)."""
        for job in jobs:
            for role, engine in self.backends.engines().items():
                template = getattr(engine, "template", None)
                if template is None:
                    continue
                try:
                    step_prompt(template, job.problem, [], job.system or engine.system).encode("utf-8")
                except Exception as exc:  # a template error or an unencodable render, whatever the template did
                    log.warning("the %s engine's chat template fails on request %s: %s: %s", role, job.id,
                                type(exc).__name__, exc)
                    raise ServeError(500, f"the server's chat template for the {role} model fails on this request",
                                     None, "template_error") from None

    def finish_count(self, endpoint: str, policy: str, status, jobs) -> None:
        code = status.status if isinstance(status, ServeError) else status
        if isinstance(status, ServeError):
            status.counted = True
        self.metrics.request(endpoint, policy, code)
        if code == 200:
            self.metrics.latency_of(time.monotonic() - jobs[0].created)

    async def wait_all(self, jobs: list[Job], deadline: float):
        """200 when every job finished, its ServeError when one failed, a 504 past the deadline."""
        pending = {j.future for j in jobs}
        while pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                return self.timeout_error()
            failed = next((j.error for j in jobs if j.error is not None), None)
            if failed is not None:
                return failed
        return 200

    async def stream(self, endpoint: str, job: Job, rid: str, steps: bool, deadline: float, include_usage: bool):
        from fastapi.responses import StreamingResponse

        writer = ChunkWriter(rid, job.policy.name, endpoint == "chat", include_usage)
        try:
            first = await self.next_event(job, deadline)
        except asyncio.CancelledError:  # the client left before the first step
            self.scheduler.withdraw(job)
            self.finish_count(endpoint, job.policy.name, CLIENT_LEFT, [job])
            raise
        if isinstance(first, ServeError):
            self.scheduler.withdraw(job)
            self.finish_count(endpoint, job.policy.name, first, [job])
            raise first

        async def events():
            status, ev = CLIENT_LEFT, first
            try:
                head = writer.start()
                if head:
                    yield head
                while True:
                    if isinstance(ev, ServeError):
                        status = ev
                        yield writer.error(ev.body())
                        break
                    kind, delta = ev
                    if kind == "end":
                        status = 200
                        yield writer.finish(job, steps)
                        break
                    yield writer.delta(delta)
                    ev = await self.next_event(job, deadline)
                yield writer.done()
            finally:  # also when the client left mid-stream (the generator is closed)
                if not job.done:
                    self.scheduler.withdraw(job)
                self.finish_count(endpoint, job.policy.name, status, [job])

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def next_event(self, job: Job, deadline: float):
        """The job's next event, its error, or a 504 past the deadline."""
        try:
            kind, delta = await asyncio.wait_for(job.events.get(), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return self.timeout_error()
        if kind == "end" and job.error is not None:
            return job.error
        return kind, delta

    def timeout_error(self) -> ServeError:
        return ServeError(504, f"the request did not finish within --request-timeout {self.s.request_timeout:g} s",
                          None, "request_timeout")


def checked_text(param: str, text: str) -> str:
    """A text as the backends will get it: it must encode as UTF-8 (JSON lets a client escape a lone
    UTF-16 surrogate, which no backend call could then send)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request(param, f"not valid Unicode text (character {exc.start} cannot be encoded as UTF-8)") from None
    return text


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
