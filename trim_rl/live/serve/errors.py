"""What a request can fail with, as the OpenAI API reports it: ``{"error": {message, type, param, code}}``.

A client is told what it may know: the field at fault, or the backend *role* that failed and how (its
HTTP status or a timeout), never a backend URL, a credential or an exception's text.  The server's log
keeps the detail, with credentials taken out of every URL (:func:`redact`).
"""

from __future__ import annotations

import re

from trim_rl.live.http import EngineError, EngineTimeout

# ``scheme://user:password@host`` -> ``scheme://***@host``; also a bare ``user:password@host``
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)?[^\s/@:'\"]+:[^\s/@'\"]*@")
# ``Bearer sk-...`` and ``api_key=...`` in texts a backend echoed back
_TOKENS = re.compile(r"(?i)(bearer\s+|api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL and every bearer token or API key replaced by ``***``."""
    text = _USERINFO.sub(lambda m: (m.group("scheme") or "") + "***@", str(text))
    return _TOKENS.sub(lambda m: m.group(1) + "***", text)


class ServeError(Exception):
    """A request that ends with an HTTP error; ``param`` names the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 err_type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = err_type or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}
        self.counted = False  # in the request metrics already (by the serving object)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(param: str | None, message: str) -> ServeError:
    """HTTP 400 naming the field."""
    return ServeError(400, f"{param}: {message}" if param else message, param, "invalid_value")


def internal_error() -> ServeError:
    """HTTP 500 for a request the server itself failed on (the detail is in the server's log only)."""
    return ServeError(500, "internal error while decoding this request (see the server's log)", None, "internal_error")


def backend_error(role: str, exc: EngineError) -> ServeError:
    """HTTP 504 when the backend timed out, 502 when it refused or answered garbage: the message names the
    backend's role and the HTTP status it answered with, nothing of the server behind it."""
    if isinstance(exc, EngineTimeout):
        return ServeError(504, f"the {role} backend timed out", None, "backend_timeout")
    how = f"it answered HTTP {exc.status}" if exc.status else "no answer it could read, or none at all"
    return ServeError(502, f"the {role} backend failed ({how})", None, "backend_error")
