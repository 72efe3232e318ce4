"""A small async JSON client for OpenAI-compatible servers: bounded concurrency, timeouts, retries.

Retries (with exponential backoff) cover connection errors, timeouts, HTTP 429 and 5xx; any other
HTTP error is raised at once.  Every failure is an :class:`EngineError` naming the URL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence


class EngineError(RuntimeError):
    """A server did not answer (after retries) or answered with an error."""

    def __init__(self, url: str, message: str, status: int | None = None):
        super().__init__(f"{url}: {message}")
        self.url, self.status = url, status


@dataclass
class HTTPSettings:
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 0.5
    concurrency: int = 16


class JSONClient:
    """POSTs JSON payloads to one server; :meth:`post_many` sends a batch concurrently."""

    def __init__(self, base_url: str, settings: HTTPSettings | None = None, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.settings = settings or HTTPSettings()
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def _request(self, client, method: str, path: str, payload: dict | None, sem: asyncio.Semaphore) -> Any:
        import httpx

        url, s = self.url(path), self.settings
        last = "no attempt"
        for attempt in range(s.retries + 1):
            if attempt:
                await asyncio.sleep(s.backoff * 2 ** (attempt - 1))
            try:
                async with sem:
                    r = await client.request(method, url, json=payload, headers=self.headers)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc or 'no detail'}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                continue
            if r.status_code >= 400:
                raise EngineError(url, f"HTTP {r.status_code}: {r.text[:500]}", r.status_code)
            try:
                return r.json()
            except ValueError:
                raise EngineError(url, f"answer is not JSON: {r.text[:200]!r}") from None
        raise EngineError(url, f"no answer after {s.retries + 1} attempts ({last})")

    async def _many(self, method: str, path: str, payloads: Sequence[dict | None]) -> list[Any]:
        import httpx

        sem = asyncio.Semaphore(max(1, self.settings.concurrency))
        limits = httpx.Limits(max_connections=max(1, self.settings.concurrency))
        async with httpx.AsyncClient(timeout=self.settings.timeout, limits=limits) as client:
            tasks = [asyncio.ensure_future(self._request(client, method, path, p, sem)) for p in payloads]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for t in tasks:
                    t.cancel()

    def post_many(self, path: str, payloads: Sequence[dict]) -> list[Any]:
        """POST each payload (concurrently, at most ``concurrency`` in flight); answers in order."""
        if not payloads:
            return []
        return asyncio.run(self._many("POST", path, payloads))

    def post(self, path: str, payload: dict) -> Any:
        return self.post_many(path, [payload])[0]

    def get(self, path: str) -> Any:
        return asyncio.run(self._many("GET", path, [None]))[0]

    def model_id(self) -> str:
        """The first model the server lists at ``/v1/models``."""
        data = self.get("/v1/models").get("data") or []
        if not data:
            raise EngineError(self.url("/v1/models"), "the server lists no model")
        return str(data[0]["id"])
