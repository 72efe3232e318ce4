"""What a request can fail with, as the OpenAI API reports it: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from trim_rl.live.http import EngineTimeout


class ServeError(Exception):
    """A request that ends with an HTTP error; ``param`` names the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 err_type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = err_type or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(param: str | None, message: str) -> ServeError:
    """HTTP 400 naming the field."""
    return ServeError(400, f"{param}: {message}" if param else message, param, "invalid_value")


def backend_error(role: str, exc: Exception) -> ServeError:
    """HTTP 504 when the backend timed out, 502 when it refused or answered garbage; the message names
    the backend's role and its server (``EngineError`` messages start with the URL)."""
    if isinstance(exc, EngineTimeout):
        return ServeError(504, f"{role} backend timed out: {exc}", None, "backend_timeout")
    return ServeError(502, f"{role} backend failed: {exc}", None, "backend_error")
