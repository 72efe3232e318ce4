"""Collect ``trim_rl.tree/v1`` trees from real engines.

For each problem the tree is expanded breadth-first: every open node (a prefix of accepted steps)
gets a weak candidate step and, while the path has used fewer than ``max_interventions``
regenerations, a strong candidate; both are scored by the PRM.  A non-final candidate opens a child
node (``keep`` for the weak step, ``regenerate`` for the strong one).  All open nodes of a level,
across a chunk of problems, go to the engines in one call each.  The strong model also solves each
problem alone (``strong_only``).  A solution that reaches ``max_depth`` steps without an answer is
cut there: its last step is marked final, graded (so incorrect unless it holds the answer) and
flagged ``"truncated": true``; so is a path whose prompt no longer fits the generating model's
context (an empty final step, ``"context": true``).  A candidate whose PRM input is longer than the
PRM's context is scored with the earliest steps left out (``prm_dropped``); one that cannot be scored at
all gets :data:`~trim_rl.live.prm.UNSCORED` and ``"prm_unscored": true``.  Finished trees are validated
and appended one per line, so a run resumes where it stopped and its file loads in
:class:`~trim_rl.envs.routing_env.RoutingEnv` as is.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from collections.abc import Sequence

from trim_rl.data.grading import Verdict, judge
from trim_rl.data.problems import Problem
from trim_rl.data.schema import MAX_STEPS, SCHEMA, validate_tree
from trim_rl.live.engines import Engine, StepRequest, StepResult, request_seed
from trim_rl.live.http import EngineError
from trim_rl.live.prm import UNSCORED, PRMScorer
from trim_rl.live.window import Score
from trim_rl.live.prompts import solution_text
from trim_rl.live.results import ResultsFile


@dataclass
class CollectSettings:
    max_interventions: int = 1
    max_depth: int = MAX_STEPS
    chunk: int = 64  # problems expanded together
    seed: int = 0
    meta: dict = field(default_factory=dict)  # recorded in each tree's meta (sampling settings)


@dataclass
class _Open:
    tree: int  # index in the chunk
    node: int
    steps: tuple[str, ...]
    inter: int


class TreeCollector:
    def __init__(self, weak: Engine, strong: Engine, scorer: PRMScorer, settings: CollectSettings | None = None):
        self.weak, self.strong, self.scorer = weak, strong, scorer
        self.s = settings or CollectSettings()
        self.stats = {"generations": 0, "tokens": 0, "prm_inputs": 0}  # for --estimate and the benchmarks
        if not 1 <= self.s.max_depth <= MAX_STEPS:
            raise ValueError(f"max_depth must be in [1, {MAX_STEPS}], got {self.s.max_depth}")
        if self.s.max_interventions < 0:
            raise ValueError(f"max_interventions must be >= 0, got {self.s.max_interventions}")

    def _generate(self, engine: Engine, requests: list[StepRequest]) -> list[StepResult]:
        res = engine.generate(requests)
        self.stats["generations"] += len(requests)
        self.stats["tokens"] += sum(r.tokens for r in res)
        return res

    def _step(self, problem: Problem, steps: tuple[str, ...], r: StepResult, sc: Score | None) -> tuple[dict, bool]:
        depth = len(steps) + 1
        context = r.finish_reason == "context"
        final = r.ends_solution and not context
        truncated = not final and (depth >= self.s.max_depth or context)
        prm = UNSCORED if sc is None or sc.value is None else sc.value
        step = {"tokens": int(r.tokens), "prm": float(min(1.0, max(0.0, prm))), "final": final or truncated,
                "text": r.text}
        if final or truncated:
            verdict = judge(solution_text(steps + ((r.text,) if r.text else ())), problem.answer)
            step["correct"] = verdict is Verdict.CORRECT
            if verdict is Verdict.TIMEOUT:  # recorded as such, not as a silent wrong answer
                step["grade"] = verdict.value
        if truncated:
            step["truncated"] = True
        if context:
            step["context"] = True
        if sc is None or sc.value is None:
            step["prm_unscored"] = True
        elif sc.dropped:
            step["prm_dropped"] = sc.dropped
        return step, not (final or truncated)

    def _strong_only(self, chunk: list[Problem]) -> list[dict]:
        steps: list[tuple[str, ...]] = [() for _ in chunk]
        tokens = [0] * len(chunk)
        done: list[dict | None] = [None] * len(chunk)
        while any(d is None for d in done):
            idx = [i for i, d in enumerate(done) if d is None]
            res = self._generate(self.strong, [StepRequest(chunk[i].problem, steps[i],
                                                           request_seed(self.s.seed, chunk[i].problem_id, len(steps[i]),
                                                                        "strong_only")) for i in idx])
            for i, r in zip(idx, res):
                context = r.finish_reason == "context"
                if not context or not steps[i]:  # an empty context step still counts as the one step
                    steps[i] += (r.text,)
                tokens[i] += r.tokens
                if r.ends_solution or context or len(steps[i]) >= self.s.max_depth:
                    verdict = judge(solution_text(steps[i]), chunk[i].answer)
                    done[i] = {"tokens": tokens[i], "steps": len(steps[i]), "correct": verdict is Verdict.CORRECT,
                               **({"grade": verdict.value} if verdict is Verdict.TIMEOUT else {})}
        return done  # type: ignore[return-value]

    def _expand(self, chunk: list[Problem]) -> list[dict]:
        k = self.s.max_interventions
        nodes: list[list[dict]] = [[{}] for _ in chunk]
        level = [_Open(t, 0, (), 0) for t in range(len(chunk))]

        def grow(o: _Open, role: str, edge: str, r: StepResult, sc: Score | None, inter: int) -> _Open | None:
            """Write ``role``'s step ``r`` (scored ``sc``) at ``o``'s node; a solution that goes on gets the
            node's ``edge`` child, returned as an open node of the next level (``inter`` steps regenerated)."""
            tree = nodes[o.tree]
            node = tree[o.node]
            node[role], open_ = self._step(chunk[o.tree], o.steps, r, sc)
            node[edge] = None
            if not open_:
                return None
            node[edge] = len(tree)
            tree.append({})
            return _Open(o.tree, node[edge], o.steps + (r.text,), inter)

        while level:
            def req(o: _Open, role: str) -> StepRequest:
                p = chunk[o.tree]
                return StepRequest(p.problem, o.steps, request_seed(self.s.seed, p.problem_id, o.node, role))

            weak = self._generate(self.weak, [req(o, "weak") for o in level])
            with_strong = [o for o in level if o.inter < k]
            strong = self._generate(self.strong, [req(o, "strong") for o in with_strong])
            cands = list(zip(level, weak)) + list(zip(with_strong, strong))
            to_score = [i for i, (_, r) in enumerate(cands) if r.finish_reason != "context"]
            scored = self.scorer.score_last_detail([(chunk[cands[i][0].tree].problem, cands[i][0].steps + (cands[i][1].text,))
                                                    for i in to_score])
            self.stats["prm_inputs"] += len(to_score)
            scores: list[Score | None] = [None] * len(cands)
            for i, sc in zip(to_score, scored):
                scores[i] = sc
            w_scores = scores[: len(level)]
            strong_scored = iter(zip(strong, scores[len(level):]))  # in the order of with_strong, a sub-list of level
            nxt = []
            for o, w, wp in zip(level, weak, w_scores):
                nxt.append(grow(o, "weak", "keep", w, wp, o.inter))
                if o.inter < k:
                    s, sp = next(strong_scored)
                    nxt.append(grow(o, "strong", "regenerate", s, sp, o.inter + 1))
            level = [o for o in nxt if o is not None]
        return nodes

    def trees(self, chunk: list[Problem]) -> list[dict]:
        """Collect the trees of a few problems (one engine call per level and role)."""
        nodes = self._expand(chunk)
        strong_only = self._strong_only(chunk)
        out = []
        for p, ns, so in zip(chunk, nodes, strong_only):
            tree = {"schema": SCHEMA, "problem_id": p.problem_id, "dataset": p.dataset, "split": p.source_split,
                    "problem": p.problem, "answer": p.answer, "level": p.level,
                    "models": {"weak": self.weak.name, "strong": self.strong.name, "prm": self.scorer.name},
                    "max_interventions": self.s.max_interventions, "strong_only": so, "nodes": ns,
                    "meta": {"collected_by": "trim_rl.live.collect", "max_depth": self.s.max_depth, "seed": self.s.seed,
                             **self.s.meta}}
            validate_tree(tree, "collected tree", None)
            out.append(tree)
        return out

    def run(self, problems: Sequence[Problem], out: ResultsFile, progress: bool = True) -> dict:
        """Collect every problem not yet in ``out``; returns a summary (``remaining`` lists what is left)."""
        from tqdm.auto import tqdm

        todo = [p for p in problems if p.problem_id not in out.done]
        error = None
        t0 = time.perf_counter()
        with tqdm(total=len(todo), desc="collect", unit="tree", disable=not progress, file=sys.stderr) as bar:
            try:
                for i in range(0, len(todo), max(1, self.s.chunk)):
                    for tree in self.trees(todo[i : i + self.s.chunk]):
                        out.append(tree)
                        bar.update(1)
            except EngineError as exc:
                error = str(exc)
        ids = [p.problem_id for p in problems]
        rows = [out.done[i] for i in ids if i in out.done]
        return {"problems": len(ids), "finished": len(rows), "remaining": [i for i in ids if i not in out.done],
                "complete": all(i in out.done for i in ids), "error": error,
                "nodes": sum(len(r["nodes"]) for r in rows), "path": str(out.path),
                "wall_s_this_run": round(time.perf_counter() - t0, 3), **self.stats}

    def settings_of(self) -> dict:
        """The settings a tree file records (compared on resume and by ``trim_rl.data merge``)."""
        return {"models": {"weak": self.weak.name, "strong": self.strong.name, "prm": self.scorer.name},
                "max_interventions": self.s.max_interventions, "max_depth": self.s.max_depth, "seed": self.s.seed,
                **self.s.meta}


def tree_settings(tree: dict) -> dict:
    """What :meth:`TreeCollector.settings_of` records, read back from a collected tree."""
    meta = tree.get("meta") or {}
    return {"models": tree.get("models"), "max_interventions": tree.get("max_interventions"),
            **{k: v for k, v in meta.items() if k != "collected_by"}}
