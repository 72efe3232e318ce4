"""The server's typed settings, built once from the command line (:meth:`ServeSettings.from_cli_args`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from trim_rl.data.schema import MAX_STEPS


@dataclass(frozen=True)
class SchedulerSettings:
    max_active: int = 256  # requests decoded at once (one step each per round)
    max_queue: int = 1024  # requests waiting for a slot; beyond it: 429 (0: no waiting, up to max_active served)

    @property
    def capacity(self) -> int:
        """Requests decoded or waiting at most."""
        return self.max_active + self.max_queue


@dataclass(frozen=True)
class ServeSettings:
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    request_timeout: float = 600.0  # seconds from arrival to the last step
    max_steps: int = MAX_STEPS
    max_interventions: int | None = None
    api_key: str | None = None  # clients must send it as a bearer token (None: no authentication)
    max_body_bytes: int = 8 * 2 ** 20
    log_decisions: str | None = None  # the decision log (None: none, and decisions are the policy's own)
    explore_rate: float = 0.0  # with a decision log: share of decisions drawn uniformly instead

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace, api_key: str | None) -> ServeSettings:
        return cls(SchedulerSettings(args.max_active, args.max_queue), args.request_timeout, args.max_steps,
                   args.max_interventions, api_key, int(args.max_body_mb * 2 ** 20),
                   getattr(args, "log_decisions", None), getattr(args, "explore_rate", None) or 0.0)
