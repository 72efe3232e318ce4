"""Serving-time budget control (``--target-strong-share P``): the price follows live traffic.

A budget-conditioned policy takes the price of a strong token, lambda, as an input.  The server
treats "spend a share P of the solution tokens on the strong model" as a constraint and lambda as its
Lagrange multiplier, and runs dual ascent on it: after each finished request that it priced,

    log lambda <- log lambda + rate * (share_W - P) / P,     clipped to [lo, hi],

where share_W is strong tokens / solution tokens over the last ``window`` such requests.  The update
is in log lambda because the policy sees log10 lambda and its spend moves with it over orders of
magnitude; it is relative to P so that one ``rate`` suits every target.  (``rate`` 0.1 and a window of
32 settled within 0.01-0.02 of P on a simulated stream with 16 requests in flight and a policy whose
share falls 0.05 per unit of log lambda; larger rates oscillate once the window's lag bites.)
"""

from __future__ import annotations

import math
from collections import deque


class PriceController:
    def __init__(self, target: float, lam0: float, lo: float, hi: float, window: int = 32, rate: float = 0.1):
        if not 0.0 < target < 1.0:
            raise ValueError(f"--target-strong-share: expected a share in (0, 1), got {target}")
        if not 0.0 < lo <= hi:
            raise ValueError(f"price bounds must satisfy 0 < lo <= hi, got {lo}, {hi}")
        self.target, self.rate = float(target), float(rate)
        self.lo, self.hi = math.log(lo), math.log(hi)
        self._log = min(self.hi, max(self.lo, math.log(lam0)))
        self.window: deque[tuple[int, int]] = deque(maxlen=max(1, int(window)))
        self.updates = 0

    @property
    def price(self) -> float:
        return math.exp(self._log)

    @property
    def share(self) -> float | None:
        """Strong tokens / solution tokens over the window (None before any request with tokens)."""
        total = sum(c for _, c in self.window)
        return sum(s for s, _ in self.window) / total if total else None

    def observe(self, strong_tokens: int, solution_tokens: int) -> None:
        """A finished request that this controller priced: its strong tokens and its solution's tokens."""
        self.window.append((int(strong_tokens), int(solution_tokens)))
        share = self.share
        if share is None:
            return
        self._log = min(self.hi, max(self.lo, self._log + self.rate * (share - self.target) / self.target))
        self.updates += 1
