"""``serve --log-decisions FILE [--explore-rate P]``: the server's routing decisions as a decision log.

Every routed step's observation (the router's own builder), legal actions, action and the probability
the serving behaviour gave that action are recorded; a finished request is appended as one line of
the format :mod:`trim_rl.evaluation.offpolicy` reads (``evaluate.py --logged FILE --checkpoints ...``), the
format ``train.py --live`` writes.  Served requests carry no reference answer: ``correct`` is null
(the accuracy estimate needs it filled in by a later grading of ``prediction``), the strong-token cost
is estimated from the log as it is.

Exploration: with ``--explore-rate P`` a decision whose regenerate is allowed is replaced, with
probability P, by an action drawn uniformly from the legal ones, so the log covers actions the served
policy would not take (without it, only policies that agree with the served one on every logged
decision can be evaluated).  The draw is seeded by the request's seed and the step, so a request
answers the same for the same seed.  Off (no flag): decisions and answers are unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trim_rl.evaluation.offpolicy import EpisodeLog, decision_row
from trim_rl.live.engines import request_seed
from trim_rl.live.prm import UNSCORED
from trim_rl.live.routing import Proposal

log = logging.getLogger("trim_rl.serve")


class DecisionLog:
    """Records (and with ``explore`` > 0 perturbs) each routing decision; writes finished requests."""

    def __init__(self, path: str | Path, explore: float = 0.0):
        if not 0.0 <= explore < 1.0:
            raise ValueError(f"--explore-rate: expected a probability in [0, 1), got {explore}")
        self.explore = float(explore)
        self.out = EpisodeLog(path, {"source": "serve", "explore": self.explore})
        self.written = 0

    def decide(self, p: Proposal, action: int) -> int:
        """The routing loop's ``on_decision`` hook: the action to play, recorded with its probability."""
        r = p.route
        router = r.router
        lam = r.lam if r.lam is not None else router.lam
        obs = router.builder.from_history(r.history, UNSCORED if p.score.value is None else p.score.value,
                                          p.draft.tokens, lam)
        legal = [1, int(p.block is None)]
        greedy, prob = action, 1.0
        if self.explore > 0 and sum(legal) == 2:
            key = (getattr(r, "seed", 0), r.problem, len(r.texts))
            if request_seed(*key, "explore") / 2**31 < self.explore:  # uniform over both actions
                action = request_seed(*key, "explore-action") % 2
            prob = (1.0 - self.explore) * (action == greedy) + self.explore / 2
        r.__dict__.setdefault("_decisions", []).append(decision_row(obs, legal, action, prob))
        return action

    def finished(self, job) -> None:
        """Append a request that ended without error (its decisions matched to its accepted steps)."""
        rows = job.__dict__.get("_decisions")
        if not rows:
            return
        routed = [rec for rec in job.steps if rec.decision is not None]
        out = []
        for row, rec in zip(rows, routed):
            row["strong_tokens"] = rec.tokens if rec.by == "strong" else 0
            out.append(row)
        from trim_rl.data.grading import extract_answer
        from trim_rl.live.prompts import solution_text

        text = solution_text(job.texts)
        try:
            self.out.write({"id": job.id, "behaviour": {"source": "serve", "policy": job.policy.name,
                                                        "explore": self.explore},
                            "lam": job.lam, "correct": None, "prediction": extract_answer(text),
                            "strong_tokens": int(sum(d["strong_tokens"] for d in out)), "weak_tokens": job.weak_tokens,
                            "interventions": job.interventions, "steps": len(out), "finish": job.why,
                            "decisions": out})
            self.written += 1
        except OSError as exc:  # a full disk must not fail the request that was answered
            log.error("decision log %s: %s", self.out.path, exc)

    def close(self) -> None:
        self.out.close()

