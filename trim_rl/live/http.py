"""An async JSON client for OpenAI-compatible servers, one per backend for a whole run.

The client is async first (:meth:`JSONClient.areplies`, :meth:`~JSONClient.apost`, ...): the server
awaits it on its own event loop.  Its sync methods run the same coroutines with
:func:`~trim_rl.live.aio.run_sync` (the calling thread's private loop), for the batch commands.  An
``httpx.AsyncClient`` belongs to one event loop, so the client keeps one per loop that uses it, each
keeping its connections for the whole run.

A backend may be several URLs (replicas of one model): a request goes to the live server it is keyed
to (the same problem to the same server, so that server's prefix cache holds its prompt), else to the
live one with the fewest requests in flight.  A server that fails (connection error, timeout, 5xx) is
taken out for a while and tried again later; the request is retried on another.

Each attempt is bounded as a whole by ``timeout``: a server that trickles its answer cannot hold a
request longer (httpx's own timeouts are per read).  Retries (exponential backoff) cover connection
errors, timeouts, 429 and 5xx; any other HTTP error is raised at once.  Every failure is an
:class:`EngineError` naming the server.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

from trim_rl.live.aio import run_sync

__all__ = ["ContextLengthError", "EngineError", "EngineTimeout", "HTTPSettings", "JSONClient", "Reply", "check_number",
           "connect", "is_context_error", "run_sync", "split_urls"]


class EngineError(RuntimeError):
    """A server did not answer (after retries) or answered with an error or a bad value."""

    def __init__(self, url: str, message: str, status: int | None = None):
        super().__init__(f"{url}: {message}")
        self.url, self.status = url, status


class ContextLengthError(EngineError):
    """HTTP 400: the prompt does not fit the model's context (vLLM, llama.cpp)."""


class EngineTimeout(EngineError):
    """The last attempt got no complete answer within the timeout (the step-routing server answers 504)."""


def is_context_error(status: int, text: str) -> bool:
    """vLLM answers 400 "This model's maximum context length is N tokens ..." (every version),
    llama-cpp-python 400 with code ``context_length_exceeded``, and llama.cpp's llama-server (context
    shift off) 400 "the request exceeds the available context size ..." (type
    ``exceed_context_size_error`` in later versions)."""
    low = text.lower()
    return status == 400 and ("maximum context length" in low or "context_length_exceeded" in low
                              or "exceeds model's maximum context length" in low
                              or "exceeds the available context size" in low or "exceed_context_size" in low)


def check_number(url: str, field_name: str, value, lo: float | None = None, hi: float | None = None,
                 integer: bool = False) -> float:
    """``value`` as a finite number in [lo, hi] (an int when ``integer``), or an EngineError naming
    the server and the field."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    if not ok:
        want = "an integer" if integer else "a finite number"
        if lo is not None and hi is not None:
            want += f" in [{lo:g}, {hi:g}]"
        elif lo is not None:
            want += f" >= {lo:g}"
        elif hi is not None:
            want += f" <= {hi:g}"
        raise EngineError(url, f"bad value in the answer: {field_name} = {value!r} (expected {want})")
    return int(value) if integer else float(value)


@dataclass
class HTTPSettings:
    timeout: float = 120.0  # seconds per attempt, the whole request
    retries: int = 3
    backoff: float = 0.5
    concurrency: int = 256  # requests in flight per server
    down_s: float = 5.0  # a failed server is left out this long (doubling with each failure, at most 60 s)


@dataclass(frozen=True)
class Reply:
    data: Any
    url: str  # the server that answered (base URL)


def split_urls(spec: str | Sequence[str]) -> list[str]:
    """``"http://a:1,http://b:2"`` (or a list of such strings) -> ``["http://a:1", "http://b:2"]``."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    urls = [u.strip().rstrip("/") for p in parts for u in p.split(",") if u.strip()]
    if not urls:
        raise ValueError("no server URL given")
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ValueError(f"server {u!r}: give a URL such as http://127.0.0.1:8000")
    return urls


@dataclass
class _Server:
    url: str
    in_flight: int = 0
    failures: int = 0
    down_until: float = 0.0

    def live(self, now: float) -> bool:
        return self.down_until <= now


@dataclass
class JSONClient:
    """POSTs JSON to one backend (one or several servers); :meth:`post_many` sends a batch at once."""

    base_url: str | Sequence[str]
    settings: HTTPSettings = field(default_factory=HTTPSettings)
    api_key: str | None = None

    def __post_init__(self):
        self.settings = self.settings or HTTPSettings()
        self.servers = [_Server(u) for u in split_urls(self.base_url)]
        self.base_url = self.servers[0].url
        self.headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        # event loop -> (its httpx.AsyncClient, server URL -> its semaphore): both belong to one loop
        self._per_loop: dict[asyncio.AbstractEventLoop, tuple[Any, dict[str, asyncio.Semaphore]]] = {}
        self._turn = 0

    @property
    def name(self) -> str:
        return ",".join(s.url for s in self.servers)

    def url(self, path: str, server: str | None = None) -> str:
        return f"{server or self.base_url}/{path.lstrip('/')}"

    # -- on the loop -----------------------------------------------------------------------------
    def _state(self) -> tuple[Any, dict[str, asyncio.Semaphore]]:
        """The running loop's httpx client and per-server semaphores (made on first use)."""
        import httpx

        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            for gone in [lp for lp in self._per_loop if lp.is_closed()]:  # a closed loop's client is dead
                del self._per_loop[gone]
            n = max(1, self.settings.concurrency) * len(self.servers)
            client = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout),
                                       limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
            state = self._per_loop[loop] = (client, {})
        return state

    def _http(self):
        return self._state()[0]

    def _pick(self, key: str | None) -> _Server:
        now = time.monotonic()
        live = [s for s in self.servers if s.live(now)]
        if not live:  # every server is out: try the one that comes back first
            return min(self.servers, key=lambda s: s.down_until)
        if key is not None:
            home = self.servers[zlib.crc32(key.encode("utf-8")) % len(self.servers)]
            if home.live(now):
                return home
        self._turn += 1
        return min(live, key=lambda s: (s.in_flight, (self.servers.index(s) - self._turn) % len(self.servers)))

    def _fail(self, server: _Server) -> None:
        if not server.live(time.monotonic()):
            return  # already out: requests of the same wave do not lengthen its time out
        server.failures += 1
        down = min(60.0, self.settings.down_s * 2 ** (server.failures - 1))
        server.down_until = time.monotonic() + down

    async def _attempt(self, server: _Server, method: str, path: str, payload):
        import httpx

        client, sems = self._state()
        sem = sems.get(server.url)
        if sem is None:
            sem = sems[server.url] = asyncio.Semaphore(max(1, self.settings.concurrency))
        server.in_flight += 1  # queued or sent: what the next pick should see as this server's load
        try:
            async with sem:
                async with asyncio.timeout(self.settings.timeout):
                    return await client.request(method, self.url(path, server.url), json=payload,
                                                      headers=self.headers)
        except TimeoutError:
            raise httpx.TimeoutException(f"no complete answer within {self.settings.timeout:g} s") from None
        finally:
            server.in_flight -= 1

    async def _request(self, method: str, path: str, payload, key: str | None = None) -> Reply:
        import httpx

        s = self.settings
        last: list[str] = []
        timed_out = False
        status = None  # the last attempt's HTTP status, where it got one
        url = self.url(path)
        for attempt in range(s.retries + 1):
            if attempt:
                await asyncio.sleep(s.backoff * 2 ** (attempt - 1))
            server = self._pick(key if attempt == 0 else None)
            url = self.url(path, server.url)
            try:
                r = await self._attempt(server, method, path, payload)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                self._fail(server)
                last.append(f"{type(exc).__name__}: {exc or 'no detail'}")
                timed_out, status = isinstance(exc, httpx.TimeoutException), None
                continue
            if r.status_code == 429 or r.status_code >= 500:
                if r.status_code != 429:
                    self._fail(server)
                last.append(f"HTTP {r.status_code}: {r.text[:300]}")
                timed_out, status = False, r.status_code
                continue
            server.failures, server.down_until = 0, 0.0
            if r.status_code >= 400:
                err = ContextLengthError if is_context_error(r.status_code, r.text) else EngineError
                raise err(url, f"HTTP {r.status_code}: {r.text[:500]}", r.status_code)
            try:
                return Reply(r.json(), server.url)
            except ValueError:
                raise EngineError(url, f"answer is not JSON: {r.text[:200]!r}") from None
        err = EngineTimeout if last and timed_out else EngineError
        raise err(url, f"no answer after {s.retries + 1} attempts ({last[-1] if last else 'no attempt'})", status)

    async def _request_or_context(self, method: str, path: str, payload, key: str | None):
        try:
            return await self._request(method, path, payload, key)
        except ContextLengthError as exc:
            return exc

    async def _many(self, method: str, path: str, payloads: Sequence, keys: Sequence[str | None] | None,
                    context_errors: bool = False) -> list:
        keys = keys if keys is not None else [None] * len(payloads)
        one = self._request_or_context if context_errors else self._request
        tasks = [asyncio.ensure_future(one(method, path, p, k)) for p, k in zip(payloads, keys)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for t in tasks:
                t.cancel()

    # -- async API -------------------------------------------------------------------------------
    async def areplies(self, path: str, payloads: Sequence[dict], keys: Sequence[str | None] | None = None,
                       context_errors: bool = False) -> list:
        """POST each payload (concurrently); replies in order.  ``keys`` send equal keys to one server.
        With ``context_errors`` a prompt too long for the model gives its :class:`ContextLengthError` in
        its place instead of stopping the batch."""
        if not payloads:
            return []
        return await self._many("POST", path, payloads, keys, context_errors)

    async def apost_many(self, path: str, payloads: Sequence[dict],
                         keys: Sequence[str | None] | None = None) -> list[Any]:
        return [r.data for r in await self.areplies(path, payloads, keys)]

    async def apost(self, path: str, payload: dict) -> Any:
        return (await self.apost_many(path, [payload]))[0]

    async def aget(self, path: str) -> Any:
        return (await self._request("GET", path, None)).data

    async def aclose(self) -> None:
        """Close the running loop's connections."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].aclose()

    async def await_ready(self, wait_s: float) -> None:
        """:meth:`wait_ready`, awaited."""
        await self._wait_ready(wait_s)

    # -- sync API (the same coroutines, run by run_sync) -------------------------------------------
    def replies(self, path: str, payloads: Sequence[dict], keys: Sequence[str | None] | None = None,
                context_errors: bool = False) -> list:
        """:meth:`areplies`, run to its end."""
        if not payloads:
            return []
        return run_sync(self.areplies(path, payloads, keys, context_errors))

    def post_many(self, path: str, payloads: Sequence[dict], keys: Sequence[str | None] | None = None) -> list[Any]:
        return [r.data for r in self.replies(path, payloads, keys)]

    def post(self, path: str, payload: dict) -> Any:
        return self.post_many(path, [payload])[0]

    def get(self, path: str) -> Any:
        return run_sync(self.aget(path))

    def close(self) -> None:
        """Close the connections of this thread's private loop (the one the sync methods use)."""
        run_sync(self.aclose())

    def wait_ready(self, wait_s: float) -> None:
        """Poll ``GET /health`` on every server until each answers (200, or 404 from a server without
        that route, such as llama-cpp-python's) or ``wait_s`` has passed.  Servers still not ready are
        left out until they come back; none ready is an EngineError naming the first."""
        run_sync(self._wait_ready(wait_s))

    async def _wait_ready(self, wait_s: float) -> None:
        import httpx

        deadline = time.monotonic() + max(0.0, wait_s)
        why: dict[str, str] = {}

        async def one(server: _Server) -> bool:
            while True:
                try:
                    async with asyncio.timeout(min(10.0, self.settings.timeout)):
                        r = await self._http().get(self.url("/health", server.url), headers=self.headers)
                    if r.status_code in (200, 404, 405):
                        return True
                    why[server.url] = f"/health answered HTTP {r.status_code}"
                except TimeoutError:
                    why[server.url] = f"/health: no answer within {min(10.0, self.settings.timeout):g} s"
                except httpx.HTTPError as exc:
                    why[server.url] = f"/health: {type(exc).__name__}: {exc or 'no detail'}"
                if time.monotonic() + 1.0 > deadline:
                    return False
                await asyncio.sleep(1.0)

        ready = await asyncio.gather(*(one(s) for s in self.servers))
        for s, ok in zip(self.servers, ready):
            if not ok:
                self._fail(s)
        if not any(ready):
            s = self.servers[0]
            raise EngineError(self.url("/health", s.url), f"server not ready after {wait_s:g} s ({why.get(s.url)})")

    def model_card(self, model: str | None = None) -> dict:
        """The ``/v1/models`` entry of ``model`` (default: the first the server lists); vLLM's cards
        carry ``owned_by: "vllm"`` and ``max_model_len``."""
        return self._card(self.get("/v1/models"), model)

    async def amodel_card(self, model: str | None = None) -> dict:
        """:meth:`model_card`, awaited."""
        return self._card(await self.aget("/v1/models"), model)

    def _card(self, answer, model: str | None) -> dict:
        url = self.url("/v1/models")
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not data or not all(isinstance(d, dict) and "id" in d for d in data):
            raise EngineError(url, "the server lists no model" if data == [] else f"unexpected answer: {str(answer)[:300]}")
        if model is None:
            return data[0]
        for d in data:
            if d["id"] == model:
                return d
        raise EngineError(url, f"the server does not serve model {model!r} (it lists "
                               f"{', '.join(repr(d['id']) for d in data[:5])})")

    def model_id(self) -> str:
        return str(self.model_card()["id"])


def connect(url: str | Sequence[str], settings: HTTPSettings | None = None, api_key: str | None = None,
            wait_ready_s: float = 0.0) -> JSONClient:
    """The client of a backend, once its servers answer ``/health`` (when ``wait_ready_s``)."""
    client = JSONClient(url, settings or HTTPSettings(), api_key)
    if wait_ready_s:
        client.wait_ready(wait_ready_s)
    return client
