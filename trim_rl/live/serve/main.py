"""``python -m trim_rl.live serve``: the step-routing server's command line.

Flags of the engines, scorer, sampling and requests are those of ``decode``; user errors are one line
with exit code 2 (a bad flag, a policy that does not load, a port in use), a backend that does not
answer at start-up exits with code 3 naming it; SIGTERM or Ctrl-C drain the requests in flight, then
the server exits with code 0.  The server's own log takes the credentials out of every URL it prints.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import sys
from collections.abc import Callable

from trim_rl.argtypes import add_command, add_host_port, add_max_steps, int_between, nonneg_float, positive_float
from trim_rl.fsutil import read_text_file
from trim_rl.netutil import bind_listener, serve_until_stopped
from trim_rl.data.schema import MAX_STEPS
from trim_rl.live.backends import BackendConfig, build_engines, build_scorer
from trim_rl.live.serve.app import create_app
from trim_rl.live.serve.control import PriceController
from trim_rl.live.serve.errors import redact
from trim_rl.live.serve.policies import NO_REGEN_PRICE, lam_for_budget, lam_range, load_served
from trim_rl.live.serve.scheduler import Backends
from trim_rl.live.serve.settings import PriceControlSettings, SchedulerSettings, ServeSettings

API_KEY_ENV = "TRIM_RL_SERVER_API_KEY"
_steps = int_between(1, MAX_STEPS, f"a number of steps from 1 to {MAX_STEPS}")


def add_parser(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``serve`` subcommand; ``common`` adds the engine, sampling and request flags of ``decode``."""
    p = add_command(sub, "serve", serve, "an OpenAI-compatible step-routing server in front of the backends")
    common(p)
    r = p.add_argument_group("router")
    r.add_argument("--policy", action="append", required=True, metavar="[NAME=]SPEC",
                   help="a served policy, repeatable: a checkpoint folder (TRIM-Agg/Seq export or TRIM-POMDP), "
                        "thr:K, weak-only or strong-only; NAME is its model id (default: the folder name or SPEC)")
    r.add_argument("--default-policy", metavar="NAME",
                   help="the policy of requests whose model is not a served policy's id and that name none in "
                        "trim.policy; listed first by /v1/models (default: the first --policy)")
    r.add_argument("--lam", type=positive_float,
                   help="default price of a strong token for budget-conditioned policies (a request's trim.lam or "
                        "trim.budget overrides it)")
    r.add_argument("--budget", type=nonneg_float,
                   help="default budget (%% of always-strong's strong tokens) for budget-conditioned checkpoints "
                        "with a budget table")
    ServeSettings.add_cli_args(r, "max_interventions")
    add_max_steps(r, ServeSettings.max_steps, _steps, ", and the most a request may ask for")
    s = p.add_argument_group("server")
    add_host_port(s, 8000)
    SchedulerSettings.add_cli_args(s)
    ServeSettings.add_cli_args(s, "max_body_bytes")
    a = s.add_mutually_exclusive_group()
    a.add_argument("--server-api-key", metavar="KEY",
                   help="clients must send 'Authorization: Bearer KEY' to every endpoint but /health (HTTP 401 "
                        f"otherwise); a command-line key shows in ps: prefer --server-api-key-file or ${API_KEY_ENV} "
                        "(--api-key is the key sent to the backends)")
    a.add_argument("--server-api-key-file", metavar="FILE",
                   help="read the clients' API key from the first line of FILE")
    ServeSettings.add_cli_args(s, "request_timeout")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default info)")
    s.add_argument("--no-access-log", action="store_true", help="no log line per request")
    PriceControlSettings.add_cli_args(p.add_argument_group("budget control"))
    g = p.add_argument_group("decision log (off-policy evaluation of other routers on this traffic)")
    ServeSettings.add_cli_args(g, "log_decisions", "explore_rate")


def controllers(served, control: PriceControlSettings) -> None:
    """A price controller for every budget-conditioned policy (``--target-strong-share``)."""
    conditioned = [p for p in served.values() if p.budget_conditioned]
    if not conditioned:
        raise ValueError("--target-strong-share: no served policy is budget-conditioned (the price is an input of "
                         "budget-conditioned checkpoints only)")
    for p in conditioned:
        trained = lam_range(p.router.policy)
        lam0 = p.lam
        if lam0 is None:
            try:  # the budget table's price for that share, where the checkpoint has one
                lam0 = lam_for_budget(p.router.policy, 100 * control.target_strong_share, "--target-strong-share")
            except ValueError:
                lam0 = (trained[0] * trained[1]) ** 0.5 if trained else 1e-3
        lo = trained[0] / 100 if trained else 1e-7
        p.controller = PriceController(control.target_strong_share, lam0, lo, NO_REGEN_PRICE, control.price_window,
                                       control.price_rate)


def client_api_key(args) -> str | None:
    """The key clients must present: --server-api-key, the first line of --server-api-key-file, or
    $TRIM_RL_SERVER_API_KEY (None: no authentication)."""
    if args.server_api_key_file:
        where = f"--server-api-key-file {args.server_api_key_file}"
        key = next(iter(read_text_file(args.server_api_key_file, where).splitlines()), "").strip()
    elif args.server_api_key is not None:
        key, where = args.server_api_key.strip(), "--server-api-key"
    elif os.environ.get(API_KEY_ENV) is not None:
        key, where = os.environ[API_KEY_ENV].strip(), f"${API_KEY_ENV}"
    else:
        return None
    if not key or not key.isprintable() or not key.isascii() or " " in key:
        raise ValueError(f"{where}: expected a key of printable ASCII characters without spaces")
    return key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare(args):
    """The app, its listening socket and its served policies, from the parsed flags (user errors:
    ValueError; a backend that does not answer: EngineError)."""
    import torch

    torch.set_num_threads(1)  # one decision at a time: one thread is fastest and leaves the cores to the engines
    api_key = client_api_key(args)
    if getattr(args, "explore_rate", None) and not getattr(args, "log_decisions", None):
        raise ValueError("--explore-rate: needs --log-decisions (exploring without logging only costs answers)")
    served, default = load_served(args.policy, args.default_policy, args.lam, args.budget)
    control = PriceControlSettings.from_cli_args(args)
    if control.target_strong_share is not None:
        controllers(served, control)
    modes = {p.mode for p in served.values()}
    sock = bind_listener(args.host, args.port)
    try:
        cfg = BackendConfig.from_cli_args(args)
        weak, strong, http, template, urls, vargs = build_engines(cfg, need_strong="strong-only" in modes,
                                                                  need_scorer="hybrid" in modes)
        scorer = build_scorer(cfg, http, template, urls, vargs) if "hybrid" in modes else None
    except BaseException:
        sock.close()
        raise
    settings = ServeSettings.from_cli_args(args, api_key)
    if api_key is None and not is_loopback(args.host):
        print(f"warning: listening on {args.host} without a client API key: anyone who reaches the port can spend "
              f"the strong model (set ${API_KEY_ENV} or --server-api-key-file)", file=sys.stderr, flush=True)
    return create_app(served, default, Backends(weak, strong, scorer), settings), sock, served, default


def serve(args) -> int:
    """Serve trained routers as OpenAI-compatible endpoints (/v1/chat/completions, /v1/completions,
    /v1/models, /health, /metrics): each request's solution is drafted step by step by the weak model,
    scored, and routed by its policy; concurrent requests share the backends step by step (continuous
    batching). See docs/serving.md."""
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"the server needs {' and '.join(missing)}: pip install 'trim_rl[serve]'",
                                  name=missing[0])
    import uvicorn

    # the scheduler's warnings (backend faults), the routing loop's errors and debug lines (rounds)
    log = logging.getLogger("trim_rl")
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())
    app, sock, served, default = prepare(args)
    try:
        config = uvicorn.Config(app, log_level=args.log_level, access_log=not args.no_access_log,
                                timeout_graceful_shutdown=int(args.request_timeout) + 1, lifespan="on")
        server = uvicorn.Server(config)
        host, port = sock.getsockname()[:2]
        return serve_until_stopped(server, sock, f"serving {', '.join(served)} (default {default}) at "
                                   f"http://{host}:{port}/v1 (Ctrl-C or SIGTERM drains and stops)",
                                   "stopped (the requests in flight were drained first)")
    finally:
        sock.close()


class RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with the credentials of every URL and key taken out."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
