"""The FastAPI application: the routes of :mod:`~trim_rl.live.serve.routes` (OpenAI's chat completions,
completions and models, plus health and metrics), one :class:`~trim_rl.live.serve.serving.OpenAIServing`
on ``app.state.serving``, the exception handlers that turn every error into OpenAI's format, and the
:class:`~trim_rl.live.serve.middleware.Guard` (client API key, body limit) in front of it all.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from trim_rl.live.serve.errors import ServeError, bad_request
from trim_rl.live.serve.metrics import Metrics
from trim_rl.live.serve.middleware import Guard, too_large
from trim_rl.live.serve.policies import ServedPolicy
from trim_rl.live.serve.scheduler import Backends
from trim_rl.live.serve.settings import ServeSettings


def create_app(served: dict[str, ServedPolicy], default: str, backends: Backends, settings: ServeSettings | None = None,
               metrics: Metrics | None = None):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from trim_rl.live.serve.routes import router
    from trim_rl.live.serve.serving import OpenAIServing

    settings = settings or ServeSettings()
    serving = OpenAIServing(served, default, backends, settings, metrics or Metrics())

    @asynccontextmanager
    async def lifespan(app):
        serving.scheduler.start()
        yield
        await serving.scheduler.stop()

    app = FastAPI(title="trim_rl step-routing server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.serving = serving
    app.include_router(router)

    def error_response(err: ServeError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    def refused(scope_or_request, err: ServeError):
        """An error met before the request reached the scheduler (counted without a policy)."""
        path = scope_or_request["path"] if isinstance(scope_or_request, dict) else scope_or_request.url.path
        return error_response(serving.refused(path, err))

    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = field_path(first.get("loc", ()))
        return refused(request, bad_request(param or None, first.get("msg", "invalid value")))

    async def served_error(request, exc: ServeError):
        return error_response(exc) if exc.counted else refused(request, exc)

    async def http_error(request, exc: HTTPException):
        if exc.status_code == 413:  # a chunked body that grew past the limit (the Guard raised it)
            return refused(request, too_large(settings.max_body_bytes))
        return error_response(ServeError(exc.status_code, str(exc.detail), None,
                                         "not_found" if exc.status_code == 404 else None))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ServeError, served_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes, refused=refused)
    return app


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
