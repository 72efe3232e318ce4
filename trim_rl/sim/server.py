"""``python -m trim_rl.sim serve``: the simulated weak, strong and PRM servers over real HTTP.

One process answers for the three models (``sim-weak``, ``sim-strong``, ``sim-prm``, picked by each
request's ``model``) as ``vllm serve`` does: ``GET /health``, ``GET /v1/models`` (cards with
``owned_by: "vllm"`` and ``max_model_len``, so the live engines batch prompts), ``POST
/v1/completions``, ``POST /pooling``, ``POST /tokenize``, and ``GET /sim/stats`` (requests, prompts and
tokens served).  The answers come from :class:`trim_rl.sim.backend.SimBackend`.

Latency: an answer is held back ``prefill + token x (most tokens generated for one prompt of the
call)`` (a batching engine's call lasts as long as its longest sequence); a ``/pooling`` call takes
the prefill latency.  The server is asynchronous (uvicorn; a plain ASGI app), so concurrent calls
wait side by side.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

from trim_rl.argtypes import add_command, add_host_port, add_limit, add_seed, int_at_least, int_between, nonneg_float, output_file
from trim_rl.netutil import bind_listener, serve_until_stopped
from trim_rl.sim.backend import DEFAULT_MAX_MODEL_LEN, SimBackend, SimInputError, error_body, write_problems

MAX_BODY = 64 * 2**20  # bytes of one request (a batch of 512 long prompts is a few MB)


def make_app(backend: SimBackend, token_latency_ms: float = 0.0, prefill_latency_ms: float = 0.0, sleep=asyncio.sleep):
    """The ASGI app answering for ``backend`` with the given latencies; ``sleep`` holds an answer back
    (a test passes its own to see the waits)."""
    per_token, prefill = token_latency_ms / 1e3, prefill_latency_ms / 1e3

    def route(method: str, path: str, body: bytes) -> tuple[int, object, float]:
        """(status, answer, seconds to hold it back)."""
        gets = {"/health": lambda: "", "/v1/models": backend.models, "/sim/stats": lambda: backend.stats}
        posts = {"/v1/completions", "/pooling", "/tokenize"}
        if path not in gets and path not in posts:
            return 404, error_body(SimInputError(f"no route {path}", None, 404, "NotFoundError")), 0.0
        if (method == "GET") != (path in gets):
            return 405, error_body(SimInputError(f"method {method} not allowed on {path}", None, 405,
                                                 "MethodNotAllowed")), 0.0
        if path in gets:
            return 200, gets[path](), 0.0
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return 400, error_body(SimInputError("the body is not valid JSON")), 0.0
        if not isinstance(payload, dict):
            return 400, error_body(SimInputError("the body must be a JSON object")), 0.0
        try:
            if path == "/v1/completions":
                answer, tokens = backend.completions(payload)
                return 200, answer, prefill + per_token * tokens
            if path == "/pooling":
                return 200, backend.pooling(payload), prefill
            return 200, backend.tokenize(payload), 0.0
        except SimInputError as exc:
            return exc.status, error_body(exc), 0.0

    async def app(scope, receive, send):
        if scope["type"] != "http":  # lifespan is off (uvicorn's config below); websockets are not served
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return await _send(send, 413, error_body(SimInputError(f"the body is over {MAX_BODY} bytes", None,
                                                                       413, "PayloadTooLarge")))
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            status, answer, delay = route(scope["method"], scope["path"], b"".join(chunks))
        except Exception as exc:  # a bug: answer it rather than drop the connection
            status, answer, delay = 500, error_body(SimInputError(f"{type(exc).__name__}: {exc}", None, 500,
                                                                  "InternalServerError")), 0.0
        if delay > 0:  # the call's generation time; other calls are served meanwhile
            await sleep(delay)
        await _send(send, status, answer)

    return app


async def _send(send, status: int, answer) -> None:
    body = b"" if answer == "" else json.dumps(answer, separators=(",", ":")).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app):
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise ValueError("the simulated backend needs uvicorn: pip install 'trim_rl[serve]'") from None
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))


class SimServer:
    """The simulated backend in a background thread (tests, benchmarks, notebooks)::

        with SimServer(profile="math500", seed=0) as srv:
            ... --weak-url srv.url --strong-url srv.url --prm-url srv.url ...

    ``backend_kwargs`` go to :class:`~trim_rl.sim.backend.SimBackend`; port 0 takes a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token_latency_ms: float = 0.0,
                 prefill_latency_ms: float = 0.0, backend: SimBackend | None = None, **backend_kwargs):
        self.backend = backend or SimBackend(**backend_kwargs)
        self.host, self.port = host, port
        self.latency = (token_latency_ms, prefill_latency_ms)
        self.url = ""
        self._server = self._thread = self._sock = None

    def start(self, timeout_s: float = 30.0) -> SimServer:
        self._sock = bind_listener(self.host, self.port)
        self.url = _url(self._sock)
        self._server = _uvicorn_server(make_app(self.backend, *self.latency))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="trim_rl-sim-server")
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.02)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the simulated backend did not start at {self.url}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def add_parser(sub) -> None:
    """The ``serve`` subcommand of ``python -m trim_rl.sim``."""
    s = add_command(sub, "serve", main, "simulated weak, strong and PRM servers (OpenAI-compatible, vLLM-style /pooling)")
    s.add_argument("--profile", default="math500", help="simulator profile (default math500)")
    add_host_port(s, 8000)
    add_seed(s, "random seed")
    s.add_argument("--token-latency-ms", type=nonneg_float, default=0.0,
                   help="milliseconds per generated token of a call's longest completion (default 0)")
    s.add_argument("--prefill-latency-ms", type=nonneg_float, default=0.0,
                   help="milliseconds added to every completions and pooling call (default 0)")
    s.add_argument("--max-model-len", type=int_at_least(16), default=DEFAULT_MAX_MODEL_LEN,
                   help=f"context length of the three models, at 4 characters per token (default {DEFAULT_MAX_MODEL_LEN})")
    s.add_argument("--params", default=None, help="parameter JSON (default: the package's fitted file)")
    s.add_argument("--write-problems", type=output_file, metavar="FILE",
                   help="write the simulated problems of --split with their answers (JSON Lines, for "
                        "python -m trim_rl.live decode --problems FILE) and exit")
    s.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="split of --write-problems (default test)")
    s.add_argument("--draws", type=int_between(1, 1000), default=1,
                   help="episodes per problem for --write-problems (default 1)")
    add_limit(s, int_at_least(1), where=" of --write-problems")


def main(args) -> int:
    """Answer as the weak, strong and PRM servers of vLLM would (models sim-weak, sim-strong, sim-prm),
    drawing steps, their correctness and PRM scores from the calibrated simulator. Problems are named in
    their text ('sim problem I of PROFILE/SPLIT, draw D'); --write-problems writes them with their
    answers."""
    # run from parsed flags; user errors are ValueErrors naming the flag
    from trim_rl.cli_errors import Terminated
    from trim_rl.sim.params import load_params

    params = load_params(args.params)
    if args.write_problems:
        n = write_problems(args.write_problems, args.profile, args.split, args.draws, args.limit, params)
        print(f"wrote {n} simulated problems of {args.profile}/{args.split} to {args.write_problems}")
        return 0
    backend = SimBackend(args.profile, args.seed, params, args.max_model_len)
    server = _uvicorn_server(make_app(backend, args.token_latency_ms, args.prefill_latency_ms))
    sock = bind_listener(args.host, args.port)
    try:
        return serve_until_stopped(server, sock, f"serving {', '.join(backend.names.values())} (profile "
                                   f"{args.profile}, seed {args.seed}) at {_url(sock)} (Ctrl-C stops)", "stopped",
                                   (KeyboardInterrupt, Terminated))
    finally:
        sock.close()
