"""The server's typed settings, built once from the command line (:meth:`ServeSettings.from_cli_args`);
each field's metadata is its flag (:meth:`ServeSettings.add_cli_args`), whose default is the field's."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from trim_rl.argtypes import add_field_flags, flag, int_at_least, number_in, positive_float
from trim_rl.data.schema import MAX_STEPS

MB = 2 ** 20
DEFAULT_BODY_MB = 8
_body_mb = number_in(0.0, 1024.0, lo_open=True, what="a size in MB, > 0 and at most 1024")
_explore = number_in(0.0, 1.0, hi_open=True, what="a probability in [0, 1)")
_share = number_in(0.0, 1.0, lo_open=True, hi_open=True, what="a share strictly between 0 and 1 (0.3 = 30%)")


@dataclass(frozen=True)
class SchedulerSettings:
    max_active: int = field(default=256, metadata=flag(
        "requests decoded at once, one step each per round (default 256)", type=int_at_least(1)))
    max_queue: int = field(default=1024, metadata=flag(
        "requests waiting for a slot (0: none wait; up to --max-active are served); a request whose prompts do "
        "not fit in --max-active + --max-queue with those already there gets HTTP 429 with Retry-After, one that "
        "could never fit gets 400 (default 1024)", type=int_at_least(0)))

    @property
    def capacity(self) -> int:
        """Requests decoded or waiting at most."""
        return self.max_active + self.max_queue

    @classmethod
    def add_cli_args(cls, parser) -> None:
        """``--max-active`` and ``--max-queue``."""
        add_field_flags(parser, cls)


@dataclass(frozen=True)
class ServeSettings:
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    request_timeout: float = field(default=600.0, metadata=flag(
        "seconds a request may take from arrival to its last step before HTTP 504 (default 600); also how long "
        "SIGTERM waits for requests in flight", type=positive_float))
    max_steps: int = MAX_STEPS
    max_interventions: int | None = field(default=None, metadata=flag(
        "most regenerations per request (default: no limit)", type=int_at_least(0)))
    api_key: str | None = None  # clients must send it as a bearer token (None: no authentication)
    max_body_bytes: int = field(default=DEFAULT_BODY_MB * MB, metadata=flag(
        "largest request body in MB; a larger one gets HTTP 413 before it is read (default 8)",
        flag="--max-body-mb", default=float(DEFAULT_BODY_MB), type=_body_mb))
    # the decision log (None: none, and decisions are the policy's own)
    log_decisions: str | None = field(default=None, metadata=flag(
        "append every finished request's routing decisions (observation, legal actions, action, its probability) "
        "to FILE, the log evaluate.py --logged reads (default: no log)", metavar="FILE"))
    explore_rate: float = field(default=0.0, metadata=flag(
        "with --log-decisions: play a uniformly drawn action instead of the policy's on a share P of the decisions "
        "that may regenerate, so that the log can evaluate policies that differ from the served one (default 0: "
        "answers unchanged)", default=None, metavar="P", type=_explore))

    @classmethod
    def add_cli_args(cls, parser, *names: str) -> None:
        """The flags of the fields ``names``, in that order (``serve`` places them among its own)."""
        add_field_flags(parser, cls, names=names)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace, api_key: str | None) -> ServeSettings:
        return cls(SchedulerSettings(args.max_active, args.max_queue), args.request_timeout, args.max_steps,
                   args.max_interventions, api_key, int(args.max_body_mb * MB),
                   getattr(args, "log_decisions", None), getattr(args, "explore_rate", None) or 0.0)


@dataclass(frozen=True)
class PriceControlSettings:
    """The online price control of the budget-conditioned policies (``--target-strong-share``)."""

    target_strong_share: float | None = field(default=None, metadata=flag(
        "adjust the price of every budget-conditioned policy online so that live traffic spends a share P of its "
        "solution tokens on the strong model (dual update over a sliding window of finished requests; requests "
        "with their own trim.budget / trim.lam are left alone)", metavar="P", type=_share))
    price_window: int = field(default=32, metadata=flag(
        "finished requests in the controller's window (default 32)", type=int_at_least(1)))
    price_rate: float = field(default=0.1, metadata=flag(
        "step of the controller's update of log(price) per finished request, relative to P (default 0.1)",
        type=positive_float))

    @classmethod
    def add_cli_args(cls, parser) -> None:
        add_field_flags(parser, cls)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> PriceControlSettings:
        return cls(args.target_strong_share, args.price_window, args.price_rate)
