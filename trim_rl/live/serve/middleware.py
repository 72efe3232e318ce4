"""What stands in front of every route: the client API key and the body limit (an ASGI middleware),
and the cancellation of a handler whose client disconnected (a decorator of route handlers)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac

from trim_rl.live.serve.errors import ServeError

CLIENT_LEFT = 499  # nginx's status for a request whose client closed the connection first
OPEN_PATHS = ("/health",)  # answered without the API key (load balancers and orchestrators probe it)


def unauthorized() -> ServeError:
    return ServeError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'", None,
                      "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def too_large(limit: int) -> ServeError:
    return ServeError(413, f"the request body is larger than the server's limit of {limit} bytes (--max-body-mb)",
                      None, "body_too_large")


class Guard:
    """ASGI middleware in front of every route: the API key, then the body limit (the declared length
    at once; a body sent in chunks as it grows, so that no more than the limit is ever read).
    ``refused(scope, error)`` builds the response of a refused request."""

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

                    # FastAPI re-raises an HTTPException met while reading the body: the app answers 413
                    raise HTTPException(413, too_large(self.limit).message)
            return message

        return await self.app(scope, limited, send)

    def _authorized(self, headers: dict) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"),
                                                                  self.key.encode("utf-8"))


async def client_left(request) -> None:
    """Returns when the client disconnects (the request's body has been read, so the next ASGI message
    is the disconnect)."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


def with_cancellation(handler):
    """Run a route handler (with a ``raw_request`` argument) as a task, cancelled when its client
    disconnects first: the handler's ``finally`` blocks free what it held, and the answer is a bare 499
    that no one reads.  A stream, once its response has begun, is closed by Starlette itself."""

    @functools.wraps(handler)
    async def wrapper(*args, **kwargs):
        from fastapi.responses import Response

        work = asyncio.ensure_future(handler(*args, **kwargs))
        left = asyncio.ensure_future(client_left(kwargs["raw_request"]))
        done, _ = await asyncio.wait({work, left}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            left.cancel()
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return Response(status_code=CLIENT_LEFT)

    return wrapper
