"""The FastAPI application: OpenAI's chat completions, completions and models, plus health and metrics.

Every request becomes one :class:`~trim_rl.live.serve.job.Job` per prompt, decoded by the shared
:class:`~trim_rl.live.serve.scheduler.Scheduler`.  Each request is answered exactly once: with its
response, with one error in OpenAI's format, or not at all when the client has left (counted as 499).
A stream starts when its first step is accepted, so that a request failing before it gets a plain
HTTP error; a failure after that ends the stream with an ``error`` event and ``[DONE]``.

A request is checked whole before it joins a round: its fields (strictly typed), its texts (they must
encode as UTF-8) and its first prompt, rendered with each engine's chat template.  What fails then is
that request's 400 (or 500 where the server's template fails on it), never its neighbours'.  With
``api_key`` set, every endpoint but ``/health`` wants ``Authorization: Bearer <key>`` (401 otherwise);
bodies beyond ``max_body_bytes`` are refused with 413 before they are read.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations, which name models
# imported inside create_app
import asyncio
import hmac
import logging
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from trim_rl.data.schema import MAX_STEPS
from trim_rl.live.prompts import step_prompt
from trim_rl.live.serve.errors import ServeError, bad_request
from trim_rl.live.serve.job import Job, Limits
from trim_rl.live.serve.metrics import Metrics
from trim_rl.live.serve.policies import ServedPolicy
from trim_rl.live.serve.scheduler import Backends, Scheduler, SchedulerSettings

CLIENT_LEFT = 499  # nginx's status for a request whose client closed the connection first
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
OPEN_PATHS = ("/health",)  # answered without the API key (load balancers and orchestrators probe it)
log = logging.getLogger("trim_rl.serve")


@dataclass
class ServeSettings:
    max_active: int = 256
    max_queue: int = 1024
    request_timeout: float = 600.0  # seconds from arrival to the last step
    max_steps: int = MAX_STEPS
    max_interventions: int | None = None
    api_key: str | None = None  # clients must send it as a bearer token (None: no authentication)
    max_body_bytes: int = 8 * 2 ** 20


def unauthorized() -> ServeError:
    return ServeError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'", None,
                      "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def too_large(limit: int) -> ServeError:
    return ServeError(413, f"the request body is larger than the server's limit of {limit} bytes (--max-body-mb)",
                      None, "body_too_large")


class Guard:
    """ASGI middleware in front of every route: the API key, then the body limit (the declared length
    at once; a body sent in chunks as it grows, so that no more than the limit is ever read)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int, refused):
        self.app, self.key, self.limit, self.refused = app, api_key, max_body_bytes, refused

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        if self.key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            return await self.refused(scope, unauthorized())(scope, receive, send)
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > self.limit:
            return await self.refused(scope, too_large(self.limit))(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    from starlette.exceptions import HTTPException

                    # FastAPI re-raises an HTTPException met while reading the body: it becomes our 413
                    raise HTTPException(413, too_large(self.limit).message)
            return message

        return await self.app(scope, limited, send)

    def _authorized(self, headers: dict) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"),
                                                                  self.key.encode("utf-8"))


# the endpoints are closures over one app's state: the complexity counted here is theirs, together
def create_app(served: dict[str, ServedPolicy], default: str, backends: Backends,  # noqa: C901
               settings: ServeSettings | None = None, metrics: Metrics | None = None):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    # trim_rl.live.serve.protocol imports pydantic (the [serve] extra)
    from trim_rl.live.serve.protocol import (ChatCompletionRequest, ChunkWriter, CompletionRequest, TrimOptions,
                                             chat_response, completion_response, models_list)

    s = settings or ServeSettings()
    metrics = metrics or Metrics()
    scheduler = Scheduler(backends, SchedulerSettings(s.max_active, s.max_queue), metrics)
    started = int(time.time())
    for role in backends.roles():
        metrics.backend_errors[role] += 0  # every role's series exists from the start
    metrics.gauges["trim_requests_active"] = lambda: [({}, scheduler.running)]
    metrics.gauges["trim_requests_queued"] = lambda: [({}, scheduler.queued)]
    controlled = [p for p in served.values() if p.controller is not None]
    if controlled:
        metrics.gauges["trim_price"] = lambda: [({"policy": p.name}, p.controller.price) for p in controlled]
        metrics.gauges["trim_target_strong_share"] = lambda: [({}, controlled[0].controller.target)]

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        await scheduler.stop()

    app = FastAPI(title="trim_rl step-routing server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.scheduler, app.state.metrics = scheduler, metrics

    def error_response(err: ServeError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    def refused(request, err: ServeError):
        """An error before the request reached the scheduler (counted without a policy)."""
        path = request["path"] if isinstance(request, dict) else request.url.path
        endpoint = ENDPOINTS.get(path)
        if endpoint is not None:
            metrics.request(endpoint, "", err.status)
        return error_response(err)

    app.add_middleware(Guard, api_key=s.api_key, max_body_bytes=s.max_body_bytes, refused=refused)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = field_path(first.get("loc", ()))
        return refused(request, bad_request(param or None, first.get("msg", "invalid value")))

    @app.exception_handler(ServeError)
    async def _served(request, exc: ServeError):
        return refused(request, exc)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        if exc.status_code == 413:
            return refused(request, too_large(s.max_body_bytes))
        return error_response(ServeError(exc.status_code, str(exc.detail), None, "not_found" if exc.status_code == 404
                                         else None))

    @app.get("/health")
    async def health():
        return {"status": "ok", "active": scheduler.running, "queued": scheduler.queued}

    @app.get("/v1/models")
    async def models():
        return models_list([default] + [n for n in served if n != default], started)

    @app.get("/metrics")
    async def metrics_text():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request):
        users = [i for i, m in enumerate(body.messages) if m.role == "user"]
        if not users:
            raise bad_request("messages", "no user message (the last user message is the problem)")
        system = next((i for i, m in enumerate(body.messages) if m.role in ("system", "developer")), None)
        problem = checked_text(f"messages[{users[-1]}].content", body.messages[users[-1]].text())
        system_text = None if system is None else checked_text(f"messages[{system}].content",
                                                                body.messages[system].text())
        return await answer(request, "chat", body, [problem], system_text or None)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        if isinstance(body.prompt, str):
            prompts = [checked_text("prompt", body.prompt)]
        else:
            prompts = [checked_text(f"prompt[{i}]", p) for i, p in enumerate(body.prompt)]
        if body.stream and len(prompts) > 1:
            raise bad_request("prompt", "a stream takes one prompt")
        if len(prompts) > scheduler.s.capacity:
            raise bad_request("prompt", f"{len(prompts)} prompts can never be admitted: the server decodes or "
                                        f"queues at most {scheduler.s.capacity} at once (--max-active + --max-queue)")
        return await answer(request, "completions", body, prompts, None)

    def checked_text(param: str, text: str) -> str:
        """A text as the backends will get it: it must encode as UTF-8 (JSON lets a client escape a lone
        UTF-16 surrogate, which no backend call could then send)."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_request(param, f"not valid Unicode text (character {exc.start} cannot be encoded "
                                     "as UTF-8)") from None
        return text

    def check_prompts(jobs: list[Job]) -> None:
        """Render each job's first prompt with every engine's chat template, as its first round will: a
        template that fails on this request fails this request alone (500, the detail in the log)."""
        for job in jobs:
            for role, engine in backends.engines().items():
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

    # -- one request -----------------------------------------------------------------------------
    async def answer(request, endpoint: str, body, problems: list[str], system: str | None):
        t = body.trim or TrimOptions()
        policy = resolve_policy(t.policy, body.model)
        price, priced = policy.price(t.budget, t.lam)
        if any(not p.strip() for p in problems):
            raise bad_request("messages" if endpoint == "chat" else "prompt", "the problem is empty")
        lim = Limits(min(t.max_steps or s.max_steps, s.max_steps),
                     _least(t.max_interventions, s.max_interventions), t.max_strong_tokens,
                     getattr(body, "max_completion_tokens", None) or body.max_tokens)
        seed = body.seed if body.seed is not None else random.getrandbits(31)
        jobs = [Job(p, policy, lim, price, priced, system, seed + i, body.stream) for i, p in enumerate(problems)]
        try:
            check_prompts(jobs)
            scheduler.submit(jobs)
        except ServeError as err:
            metrics.request(endpoint, policy.name, err.status)
            return error_response(err)
        deadline = jobs[0].created + s.request_timeout
        prefix = "chatcmpl-" if endpoint == "chat" else "cmpl-"
        if body.stream:
            return await stream(request, endpoint, jobs[0], prefix + jobs[0].id, t.return_steps, deadline,
                                bool(body.stream_options and body.stream_options.include_usage))
        status = CLIENT_LEFT
        try:
            status = await wait_all(request, jobs, deadline)
            if status != 200:
                return error_response(status) if isinstance(status, ServeError) else Response(status_code=CLIENT_LEFT)
            build = chat_response if endpoint == "chat" else completion_response
            return build(prefix + jobs[0].id, policy.name, jobs, t.return_steps)
        finally:
            for j in jobs:
                if not j.done:
                    scheduler.withdraw(j)
            finish_count(endpoint, policy.name, status, jobs)

    def resolve_policy(name: str | None, model: str) -> ServedPolicy:
        if name is not None:
            if name not in served:
                raise bad_request("trim.policy", f"{name!r} is not served (served: {', '.join(served)})")
            return served[name]
        return served.get(model) or served[default]

    def finish_count(endpoint: str, policy: str, status, jobs) -> None:
        code = status.status if isinstance(status, ServeError) else status
        metrics.request(endpoint, policy, code)
        if code == 200:
            metrics.latency_of(time.monotonic() - jobs[0].created)

    async def wait_all(request, jobs: list[Job], deadline: float):
        """200 when every job finished, its ServeError when one failed, a 504 past the deadline, or
        CLIENT_LEFT when the client disconnected first."""
        left = asyncio.ensure_future(client_left(request))
        pending = {j.future for j in jobs}
        try:
            while pending:
                done, pending = await asyncio.wait(pending | {left}, timeout=max(0.0, deadline - time.monotonic()),
                                                   return_when=asyncio.FIRST_COMPLETED)
                if left in done:
                    return CLIENT_LEFT
                pending.discard(left)
                if not done:
                    return timeout_error()
                failed = next((j.error for j in jobs if j.error is not None), None)
                if failed is not None:
                    return failed
            return 200
        finally:
            left.cancel()

    async def stream(request, endpoint, job: Job, rid: str, steps: bool, deadline: float, include_usage: bool):
        writer = ChunkWriter(rid, job.policy.name, endpoint == "chat", include_usage)
        first = await next_event(request, job, deadline)
        if isinstance(first, ServeError) or first == CLIENT_LEFT:
            scheduler.withdraw(job)
            finish_count(endpoint, job.policy.name, first, [job])
            return error_response(first) if isinstance(first, ServeError) else Response(status_code=CLIENT_LEFT)

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
                    ev = await next_event(None, job, deadline)
                yield writer.done()
            finally:  # also when the client left mid-stream (the generator is closed)
                if not job.done:
                    scheduler.withdraw(job)
                finish_count(endpoint, job.policy.name, status, [job])

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def next_event(request, job: Job, deadline: float):
        """The job's next event, its error, a 504 past the deadline, or CLIENT_LEFT."""
        get = asyncio.ensure_future(job.events.get())
        left = asyncio.ensure_future(client_left(request)) if request is not None else None
        try:
            done, _ = await asyncio.wait({get} | ({left} if left else set()),
                                         timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (get, left):
                if f is not None and not f.done():
                    f.cancel()
        if left is not None and left in done:
            return CLIENT_LEFT
        if get not in done:
            return timeout_error()
        kind, delta = get.result()
        if kind == "end" and job.error is not None:
            return job.error
        return kind, delta

    def timeout_error() -> ServeError:
        return ServeError(504, f"the request did not finish within --request-timeout {s.request_timeout:g} s",
                          None, "request_timeout")

    return app


async def client_left(request) -> None:
    """Returns when the client disconnects (the request's body has been read, so the next ASGI message
    is the disconnect)."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


def field_path(loc) -> str:
    """pydantic's error location -> ``trim.budget`` / ``messages[0].content``, without the leading
    ``body`` and the names of union members pydantic adds."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "int", "float", "bool", "none") or "[" in str(part) or "-" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
