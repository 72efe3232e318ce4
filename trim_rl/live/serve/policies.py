"""The served policies (``--policy [NAME=]SPEC``, repeatable) and the price of each request.

SPEC is what ``decode --policy`` takes: a checkpoint folder (an exported TRIM-Agg / TRIM-Seq network
or a TRIM-POMDP table), ``thr:K``, or ``always-weak`` / ``always-strong`` (also spelled ``weak-only`` /
``strong-only``: decoding without a router).  NAME is the model id clients send (default: the
folder's name, or SPEC itself, as spelled).

Policies are loaded, and budgets turned into prices, through the policy registry
(:func:`trim_rl.agents.registry.load_policy`; the policy table says which specs are fixed modes) and
a checkpoint's budget table (:meth:`~trim_rl.agents.base.PolicyBase.lam_for_budget`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trim_rl.agents.catalog import HYBRID, decode_mode
from trim_rl.live.serve.errors import ServeError, bad_request

if TYPE_CHECKING:
    from trim_rl.agents.base import PolicyBase
    from trim_rl.live.router import Router
    from trim_rl.live.serve.control import PriceController

#: At this price one strong token costs what a correct answer is worth, so no regeneration (at least
#: one token, at most +1 of reward) can pay for itself: the server keeps every step, whatever a
#: budget-conditioned network (trained on prices far below) would extrapolate there.
NO_REGEN_PRICE = 1.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def lam_for_budget(policy: PolicyBase, budget: float, what: str) -> float:
    """The price at which a budget-conditioned checkpoint spends ``budget`` % of always-strong's strong
    tokens, from its budget table; ValueError naming ``what`` (out of the table's range, no table)."""
    return float(policy.lam_for_budget(budget, what))


def lam_range(policy: PolicyBase) -> tuple[float, float] | None:
    """The prices a budget-conditioned checkpoint was trained on (policy.json ``lam_range``)."""
    r = policy.meta.get("lam_range")
    try:
        lo, hi = float(r[0]), float(r[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return (lo, hi) if 0 < lo <= hi else None


@dataclass
class ServedPolicy:
    """One model id of the server: a routed policy (``router``) or a fixed mode."""

    name: str
    spec: str
    mode: str  # hybrid | weak-only | strong-only
    router: Router | None = None
    lam: float | None = None  # default price of a budget-conditioned policy; None: each request gives one
    controller: PriceController | None = None  # --target-strong-share

    @property
    def budget_conditioned(self) -> bool:
        return self.router is not None and bool(self.router.builder.budget_conditioned)

    def price(self, budget: float | None, lam: float | None) -> tuple[float | None, bool]:
        """The price of one request and whether the controller set it; a ServeError (400) naming the
        ``trim`` field where the request's budget or price does not fit this policy."""
        if budget is not None or lam is not None:
            field = "trim.budget" if budget is not None else "trim.lam"
            if not self.budget_conditioned:
                raise bad_request(field, f"policy {self.name!r} is not budget-conditioned; it takes no budget or price")
            if lam is not None:
                return float(lam), False
            try:
                return lam_for_budget(self.router.policy, budget, field), False
            except ValueError as exc:  # its message names the field already
                raise ServeError(400, str(exc), field, "invalid_value") from None
        if not self.budget_conditioned:
            return None, False
        if self.controller is not None:
            return self.controller.price, True
        if self.lam is None:
            raise ServeError(400, f"trim.budget: policy {self.name!r} is budget-conditioned and the server has no "
                                  "default price (--lam / --budget): give trim.budget or trim.lam", "trim.budget",
                             "missing_value")
        return self.lam, False


def parse_spec(item: str) -> tuple[str, str]:
    """``NAME=SPEC`` or ``SPEC`` -> (name, spec)."""
    name, eq, spec = item.partition("=")
    if eq and _NAME.match(name) and spec:
        return name, spec
    if eq and not Path(item).exists():
        raise ValueError(f"--policy {item!r}: NAME must be letters, digits, '.', '_' or '-' (NAME=SPEC)")
    path = Path(item)
    return (path.name if (path / "policy.json").is_file() else item), item


def load_served(items: list[str], default: str | None = None, lam: float | None = None,
                budget: float | None = None) -> tuple[dict[str, ServedPolicy], str]:
    """The served policies by name, and the default's name (``default``, else the first)."""
    # trim_rl.live.router imports torch (and the registry with it)
    from trim_rl.live.router import Router, load_policy

    if lam is not None and budget is not None:
        raise ValueError("--lam and --budget: give one default price, not both")
    if lam is not None and not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"--lam: expected a price > 0, got {lam}")
    served: dict[str, ServedPolicy] = {}
    for item in items:
        name, spec = parse_spec(item)
        if name in served:
            raise ValueError(f"--policy: the name {name!r} is given twice (name them: --policy NAME=SPEC)")
        mode = decode_mode(spec)
        if mode != HYBRID:  # a fixed mode: no router (and no scorer call)
            served[name] = ServedPolicy(name, spec, mode)
            continue
        try:
            policy = load_policy(spec)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"--policy {item}: {exc}") from None
        # routers are built without a price: each decision of a budget-conditioned one passes its request's
        served[name] = ServedPolicy(name, spec, "hybrid", Router(policy, math.nan))
    conditioned = [p for p in served.values() if p.budget_conditioned]
    if (lam is not None or budget is not None) and not conditioned:
        raise ValueError(f"{'--lam' if lam is not None else '--budget'}: no served policy is budget-conditioned")
    for p in conditioned:
        own, wanted = p.router.policy.lam, p.router.policy.requested_budget
        if lam is not None:
            p.lam = float(lam)
        elif budget is not None:
            p.lam = lam_for_budget(p.router.policy, budget, "--budget")
        elif own is not None:
            p.lam = float(own)
        elif wanted is not None:
            p.lam = lam_for_budget(p.router.policy, wanted, f"--policy {p.spec} (its requested budget)")
    if default is not None and default not in served:
        raise ValueError(f"--default-policy {default!r}: not a served policy ({', '.join(served)})")
    return served, default or next(iter(served))

