"""Fit a scorer input into the scorer's context by leaving out the earliest steps.

A long solution can outgrow the PRM's context (Qwen2.5-Math-PRM-7B: 4,096 tokens; 30 steps of 256
tokens do not fit).  The scorer then sees the system prompt, the problem and the newest steps only:
for each item the fewest earliest steps are dropped such that the input fits (found by exponential
then binary search on the server's context-length answer, in parallel over the items).  What was
dropped for a branch of a problem is remembered, so later calls on the same branch start there and
stay one request.  An item whose newest step alone does not fit is unscored (value None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple
from collections.abc import Awaitable, Callable, Sequence

from trim_rl.live.aio import awaitable, run_inline
from trim_rl.live.http import ContextLengthError

Item = tuple[str, Sequence[str]]  # (problem, steps)


class Score(NamedTuple):
    value: Any  # what the scorer returned for the visible steps; None: unscored
    dropped: int  # earliest steps left out of the scorer's input


@dataclass
class _Search:
    bad: int  # dropping this many does not fit
    good: int | None = None  # dropping this many fits
    step: int = 1
    value: Any = None


class StepWindow:
    """Runs scorer calls with the earliest steps dropped where an input does not fit."""

    def __init__(self):
        # problem -> (dropped steps, how many, steps of the input it was learned on)
        self._known: dict[str, list[tuple[tuple[str, ...], int, int]]] = {}

    def _start(self, problem: str, steps: Sequence[str]) -> int:
        """What to drop at least: learned on this branch for an input no longer than this one (the
        input of a branch only grows, and so does what must be dropped)."""
        ks = [k for prefix, k, n in self._known.get(problem, ()) if n <= len(steps) and tuple(steps[:k]) == prefix]
        return min(max(ks, default=0), max(0, len(steps) - 1))

    def _remember(self, problem: str, steps: Sequence[str], k: int) -> None:
        if k:
            self._known.setdefault(problem, []).append((tuple(steps[:k]), k, len(steps)))

    def run(self, items: Sequence[Item], score_all: Callable[[list[Item]], list],
            score_each: Callable[[list[Item]], list]) -> list[Score]:
        """``score_all(items)`` scores every item in one go and raises ContextLengthError if any is too
        long; ``score_each(items)`` gives a value or a ContextLengthError per item."""
        return run_inline(self.arun(items, awaitable(score_all), awaitable(score_each)))

    async def arun(self, items: Sequence[Item], score_all: Callable[[list[Item]], Awaitable[list]],
                   score_each: Callable[[list[Item]], Awaitable[list]]) -> list[Score]:
        """:meth:`run` with coroutine functions for ``score_all`` and ``score_each``."""
        if not items:
            return []
        ks = [self._start(p, s) for p, s in items]
        views = [(p, list(s)[k:]) for (p, s), k in zip(items, ks)]
        try:
            return [Score(v, k) for v, k in zip(await score_all(views), ks)]
        except ContextLengthError:
            pass
        out: list[Score | None] = [None] * len(items)
        search: dict[int, _Search] = {}
        for i, v in enumerate(await score_each(views)):
            if isinstance(v, ContextLengthError):
                if ks[i] >= len(items[i][1]) - 1:
                    out[i] = Score(None, ks[i])
                else:
                    search[i] = _Search(ks[i])
            else:
                out[i] = Score(v, ks[i])
        while search:
            trials = {}
            for i, st in search.items():
                last = len(items[i][1]) - 1
                trials[i] = min(st.bad + st.step, last) if st.good is None else (st.bad + st.good) // 2
            got = await score_each([(items[i][0], list(items[i][1])[k:]) for i, k in trials.items()])
            for (i, k), v in zip(trials.items(), got):
                st, last = search[i], len(items[i][1]) - 1
                if isinstance(v, ContextLengthError):
                    st.bad, st.step = k, st.step * 2
                else:
                    st.good, st.value = k, v
                if st.good is None and st.bad >= last:  # the newest step alone does not fit
                    out[i] = Score(None, last)
                elif st.good is not None and st.good - st.bad <= 1:
                    out[i] = Score(st.value, st.good)
                    self._remember(items[i][0], items[i][1], st.good)
                else:
                    continue
                del search[i]
        return out  # type: ignore[return-value]
