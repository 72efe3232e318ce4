"""``python -m trim_rl.bench live``: router decision time per step; hybrid vs weak-only vs
strong-only throughput on one server; the decoder's and collector's step generations per second at
the new throughput defaults against the old ones."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from trim_rl.data.problems import load_problems
from trim_rl.envs.observations import StepHistory
from trim_rl.live.cli import OLD_DEFAULTS
from trim_rl.live.collector import CollectSettings, TreeCollector
from trim_rl.live.engines import OpenAICompatibleEngine, Sampling
from trim_rl.live.http import HTTPSettings
from trim_rl.live.prm import SelfVerifyScorer
from trim_rl.live.results import ResultsFile
from trim_rl.live.backend_stats import backend_profile, flush_prompt_caches, llama_metrics

DEFAULT_POLICIES = {
    "TRIM-Thr": "thr:0.5",
    "TRIM-Agg": "checkpoints/trim_agg/trim_agg_b20",
    "TRIM-POMDP": "checkpoints/trim_pomdp/trim_pomdp_b20",
    "TRIM-Seq": "checkpoints/trim_seq/trim_seq_b20",
}


def decision_times(specs: dict[str, str], steps: int = 2000, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Median (over ``repeats`` runs) of the mean time per decision, in ms, of each policy on one
    core: observation building plus ``predict``, over solutions of 8 steps with random scores."""
    import torch

    # trim_rl.live.router imports torch
    from trim_rl.live.router import Router, load_policy

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    prm = rng.random(steps)
    tok = rng.integers(20, 120, steps)
    out = {}
    for name, spec in specs.items():
        router = Router(load_policy(spec))
        runs = []
        for _ in range(repeats):
            hist, state = StepHistory(), None
            t0 = time.perf_counter()
            for i in range(steps):
                if i % 8 == 0:
                    hist, state = StepHistory(), None
                a, state = router.decide(hist, float(prm[i]), int(tok[i]), True, state)
                hist.append(float(prm[i]), int(tok[i]), bool(a))
            runs.append(1e3 * (time.perf_counter() - t0) / steps)
        out[name] = statistics.median(runs)
    return out


def throughput(url: str, policy: str, problems: str = "gsm8k", limit: int = 8, max_tokens: int = 64,
               max_steps: int = 8, repeats: int = 1) -> dict[str, float]:
    """Problems per second of hybrid (``policy``, self-verify scorer), weak-only and strong-only
    decoding against the same server (weak and strong are the same model, strong sampled greedily)."""
    # trim_rl.live.decoder and trim_rl.live.router import torch
    from trim_rl.live.decoder import DecodeSettings, HybridDecoder
    from trim_rl.live.router import Router, load_policy

    probs = load_problems(problems)[:limit]
    weak, strong, scorer = _engines(url, max_tokens, 256)
    rates: dict[str, list[float]] = {"hybrid": [], "weak-only": [], "strong-only": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for mode in rates:
                router = Router(load_policy(policy)) if mode == "hybrid" else None
                dec = HybridDecoder(weak if mode != "strong-only" else None, strong, scorer if mode == "hybrid" else None,
                                    router, DecodeSettings(max_steps=max_steps, concurrency=limit, mode=mode), policy)
                flush_prompt_caches(url)  # the modes decode the same prompts: none finds another's in the cache
                seconds = _timed_run(dec, probs, Path(tmp) / f"{mode}_{r}.jsonl", f"{mode} decoding")
                rates[mode].append(len(probs) / seconds)
    return {m: statistics.median(v) for m, v in rates.items()}


def _timed_run(runner, probs: list, out: Path, what: str) -> float:
    """Seconds ``runner`` (a decoder or a collector) takes over ``probs``, its results written to ``out``;
    a run that stops before the end raises, naming ``what`` stopped."""
    t0 = time.perf_counter()
    s = runner.run(probs, ResultsFile(out), progress=False)
    if not s["complete"]:
        raise RuntimeError(f"{what} stopped: {s['error']}")
    return time.perf_counter() - t0


def _engines(url: str, max_tokens: int, concurrency: int, verify_prompt: str = "separate"):
    """Weak (sampled), strong (greedy) and a self-verify scorer on the same server(s), each with one
    client for the whole run, ``concurrency`` requests in flight per server."""
    http = HTTPSettings(timeout=300, retries=1, concurrency=concurrency)
    return (OpenAICompatibleEngine(url, sampling=Sampling(max_tokens, 0.7), http=http),
            OpenAICompatibleEngine(url, sampling=Sampling(max_tokens, 0.0), http=http),
            SelfVerifyScorer(url, http=http, verify_prompt=verify_prompt))


def defaults_throughput(url: str, problems: str = "gsm8k", limit: int = 16, max_tokens: int = 16, max_steps: int = 3,
                        repeats: int = 3, verify_prompt: str = "separate") -> dict[str, dict[str, float]]:
    """Step generations per second of the decoder (TRIM-Thr 0.5, self-verify scorer) and of the
    collector (K = 1, depth ``max_steps``) one request at a time (1 in flight per server, 1 problem
    decoded / expanded at once), at the old throughput defaults (16, 8, 4) and at the new ones (256,
    256, 64), against the same server(s), interleaved run by run; medians of ``repeats``."""
    # trim_rl.live.decoder and trim_rl.live.router import torch
    from trim_rl.live.decoder import DecodeSettings, HybridDecoder
    from trim_rl.live.router import Router, load_policy

    probs = load_problems(problems)[:limit]
    configs = {"one": {"concurrency": 1, "batch": 1, "chunk": 1}, "old": OLD_DEFAULTS,
               "new": {"concurrency": 256, "batch": 256, "chunk": 64}}
    rates: dict[str, dict[str, list[float]]] = {w: {c: [] for c in configs} for w in ("decode", "collect")}
    profiles: dict[str, dict[str, list[dict]]] = {w: {c: [] for c in configs} for w in rates}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name, cfg in configs.items():
                weak, strong, scorer = _engines(url, max_tokens, cfg["concurrency"], verify_prompt)
                dec = HybridDecoder(weak, strong, scorer, Router(load_policy("thr:0.5")),
                                    DecodeSettings(max_steps=max_steps, concurrency=cfg["batch"], seed=r), "thr:0.5")
                # every run starts from empty prompt caches: the configurations send the same prompts
                flush_prompt_caches(url)
                m0 = llama_metrics(url)
                seconds = _timed_run(dec, probs, Path(tmp) / f"decode_{name}_{r}.jsonl", "decoding")
                rates["decode"][name].append(dec.generations / seconds)
                m1 = llama_metrics(url)
                flush_prompt_caches(url)
                m2 = llama_metrics(url)
                col = TreeCollector(weak, strong, scorer, CollectSettings(1, max_steps, cfg["chunk"], seed=r))
                seconds = _timed_run(col, probs, Path(tmp) / f"collect_{name}_{r}.jsonl", "collection")
                rates["collect"][name].append(col.stats["generations"] / seconds)
                for what, prof in (("decode", backend_profile(m1, m0)), ("collect", backend_profile(llama_metrics(url), m2))):
                    if prof is not None:
                        profiles[what][name].append(prof)
    out = {w: {c: statistics.median(v) for c, v in by.items()} for w, by in rates.items()}
    if all(profiles[w][c] for w in profiles for c in configs):  # a llama-server: its own medians too
        out["backend"] = {w: {c: {k: statistics.median(p[k] for p in ps) for k in ps[0]} for c, ps in by.items()}
                          for w, by in profiles.items()}
    return out
