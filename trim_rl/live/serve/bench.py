"""``python -m trim_rl.bench serve``: the step-routing server side by side in one run, on the same
backends and the same GSM8K requests, sent through OpenAI's client:

- continuous batching: every request at once;
- one at a time: the same requests, each sent when the previous one was answered;
- strong-only: the same requests at once, every step by the strong model;

then router and scheduler time per step (from the server's ``/metrics``, over the batching run's
rounds), what the backend alone gains from batching
(:func:`~trim_rl.live.backend_stats.batching_ceiling`, the ceiling of the batching ratio) and, with
``--target-share``, how closely ``--target-strong-share`` holds its target over a stream of GSM8K
problems.  The server runs as ``python -m trim_rl.live serve`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from trim_rl.data.problems import load_problems
from trim_rl.live.backend_stats import (backend_profile, batching_ceiling, ceiling_line, flush_prompt_caches, llama_metrics,
                                        llama_slots, scrape_text)
from trim_rl.live.http import split_urls
from trim_rl.live.local import LlamaCppServer


@contextmanager
def serve_process(args: list[str], log: Path):
    """``python -m trim_rl.live serve ARGS`` on a free port; yields its base URL."""
    fh = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "trim_rl.live", "serve", "--port", "0", "--log-level", "warning",
                             "--no-access-log", *args], stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            m = re.search(r"at (http://[\d.]+:\d+)/v1", log.read_text())
            if m:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        fh.close()


def scrape(url: str) -> dict[str, float]:
    """``/metrics`` as {sample with labels: value}."""
    import httpx

    return scrape_text(httpx.get(url + "/metrics", timeout=30).text)


async def _send(url: str, model: str, problems: list[str], concurrency: int, seed: int = 0,
                on_done=None) -> list[tuple[float, object]]:
    """Send every problem (at most ``concurrency`` in flight); (latency s, usage) per request, in order."""
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=3600)
    out: list = [None] * len(problems)
    todo = list(range(len(problems)))

    async def worker():
        while todo:
            i = todo.pop(0)
            t0 = time.perf_counter()
            r = await client.chat.completions.create(model=model, seed=seed + i,
                                                     messages=[{"role": "user", "content": problems[i]}])
            out[i] = (time.perf_counter() - t0, r.usage)
            if on_done is not None:
                on_done(i, r.usage)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        await client.close()
    return out


def instant_backend(port_queue, steps: int = 6) -> None:
    """A backend answering at once as vLLM does (``/v1/models``, ``/v1/completions`` with prompt lists,
    ``/pooling``), with no model behind it: the k-th step of a solution is "Step k ...", the last states
    an answer, and each step's score is a hash of its text.  It isolates the server's own time per step."""
    import json
    import zlib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def step(prompt: str) -> str:
        k = prompt.rsplit("assistant\n", 1)[-1].count("\n\n") + 1
        return "So the answer is \\boxed{4}." if k >= steps else f"Step {k}: " + "work " * 8

    def answer(path: str, p: dict):
        if path == "/v1/models":
            return {"object": "list", "data": [{"id": "instant", "object": "model", "owned_by": "vllm"}]}
        if path == "/v1/completions":
            prompts = p["prompt"] if isinstance(p["prompt"], list) else [p["prompt"]]
            texts = [step(q) for q in prompts]
            return {"choices": [{"index": i, "text": t, "finish_reason": "stop", "stop_reason": "\n\n",
                                 "token_ids": list(range(len(t) // 4))} for i, t in enumerate(texts)],
                    "usage": {"prompt_tokens": 100, "completion_tokens": sum(len(t) // 4 for t in texts)}}
        if path == "/pooling":
            rows = []
            for i, q in enumerate(p["input"]):
                parts = q.split("<|im_start|>assistant\n", 1)[-1].split("<extra_0>")[:-1]
                score = [(zlib.crc32(x.encode()) % 1000) / 1000 for x in parts]
                rows.append({"index": i, "data": [[1 - v, v] for v in score]})
            return {"data": rows}
        return None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, body) -> None:
            data = json.dumps(body).encode() if body is not None else b"{}"
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply(answer(self.path, {}) if self.path != "/health" else {})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            self._reply(answer(self.path, json.loads(self.rfile.read(n))))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(httpd.server_address[1])
    httpd.serve_forever()


def overhead(policy: str, requests: int, concurrency: int) -> dict:
    """Requests/s and the server's own time per step against :func:`instant_backend`."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    backend = ctx.Process(target=instant_backend, args=(q,), daemon=True)
    backend.start()
    try:
        url = f"http://127.0.0.1:{q.get(timeout=60)}"
        with tempfile.TemporaryDirectory() as tmp, \
                serve_process(["--weak-url", url, "--strong-url", url, "--prm", "vllm", "--prm-url", url,
                               "--policy", f"routed={policy}", "--max-active", str(concurrency)],
                              Path(tmp) / "serve.log") as server:
            run_mode(server, "routed", [f"warm-up {i}" for i in range(8)], 8)
            before = scrape(server)
            out = run_mode(server, "routed", [f"What is {i} + 2?" for i in range(requests)], concurrency)
            out.update(_overhead_of(scrape(server), before))
        return out
    finally:
        backend.terminate()
        backend.join(10)


def _overhead_of(m: dict, before: dict | None = None) -> dict:
    """Per-step overhead quantiles from /metrics (over the last rounds) and the mean since ``before``."""
    b = before or {}
    steps = m["trim_steps_total"] - b.get("trim_steps_total", 0)
    total = m["trim_scheduler_seconds_per_step_sum"] - b.get("trim_scheduler_seconds_per_step_sum", 0)
    rounds = m["trim_rounds_total"] - b.get("trim_rounds_total", 0)
    return {"overhead_ms_p50": 1e3 * m['trim_scheduler_seconds_per_step{quantile="0.5"}'],
            "overhead_ms_p95": 1e3 * m['trim_scheduler_seconds_per_step{quantile="0.95"}'],
            "router_ms_p50": 1e3 * m['trim_router_seconds{quantile="0.5"}'], "rounds": rounds,
            "steps_per_round": steps / max(1, rounds), "overhead_sum_s": total}


def run_mode(url: str, model: str, problems: list[str], concurrency: int) -> dict:
    t0 = time.perf_counter()
    got = asyncio.run(_send(url, model, problems, concurrency))
    wall = time.perf_counter() - t0
    lats = sorted(lat for lat, _ in got)
    return {"requests_per_s": len(problems) / wall, "p50_s": statistics.median(lats),
            "p95_s": lats[min(len(lats) - 1, int(0.95 * len(lats)))],
            "steps": sum(u.steps for _, u in got), "strong_share": sum(u.strong_tokens for _, u in got)
            / max(1, sum(u.completion_tokens for _, u in got)), "wall_s": wall}


def backend_args(urls: str, max_tokens: int, max_steps: int, verify_prompt: str = "separate") -> list[str]:
    return ["--weak-url", urls, "--strong-url", urls, "--prm", "self-verify", "--verify-prompt", verify_prompt,
            "--weak-temperature", "0.7", "--max-tokens", str(max_tokens), "--max-steps", str(max_steps),
            "--timeout", "600", "--retries", "1"]


def compare(urls: str, policy: str, problems: list[str], max_tokens: int, max_steps: int, slots: int,
            verify_prompt: str = "separate") -> dict:
    """Batching vs one at a time vs strong-only, the overhead per step of the batching run, and (against
    llama-server) the backend's profile of each mode."""
    with tempfile.TemporaryDirectory() as tmp, \
            serve_process([*backend_args(urls, max_tokens, max_steps, verify_prompt), "--policy", f"routed={policy}",
                           "--policy", "strong-only"], Path(tmp) / "serve.log") as url:
        run_mode(url, "routed", [f"Warm up: what is {i} + 1?" for i in range(slots)], slots)  # each server's first call is slow
        before = scrape(url)
        out = {}
        for key, model, concurrency in (("batching", "routed", len(problems)), ("one_at_a_time", "routed", 1),
                                        ("strong_only", "strong-only", len(problems))):
            flush_prompt_caches(urls)  # the modes send the same prompts: none finds another's in the cache
            back = llama_metrics(urls)
            out[key] = run_mode(url, model, problems, concurrency)
            out[key]["backend"] = backend_profile(llama_metrics(urls), back)
            if key == "batching":
                out.update(_overhead_of(scrape(url), before))
    return out


#: the routers of ``--compare``: TRIM-Thr at three thresholds and TRIM-Agg trained for three budgets
COMPARE_POLICIES = (("thr-0.3", "thr:0.3"), ("thr-0.5", "thr:0.5"), ("thr-0.7", "thr:0.7"),
                    ("agg-b8", "checkpoints/trim_agg/trim_agg_b8"), ("agg-b16", "checkpoints/trim_agg/trim_agg_b16"),
                    ("agg-b30", "checkpoints/trim_agg/trim_agg_b30"))


def compare_models(weak_url: str, strong_url: str, problems: list[str], max_tokens: int, max_steps: int,
                   verify_prompt: str = "separate") -> dict:
    """Hybrids of a weak and a strong model (TRIM-Thr at three thresholds, TRIM-Agg at three budgets)
    against the strong model alone and the weak model alone, every request of a mode at once through
    ``serve`` (the weak model's self-verify scorer): requests/s, p50 / p95 latency, strong-token share."""
    policies = [*COMPARE_POLICIES, ("weak-only", "weak-only"), ("strong-only", "strong-only")]
    args = ["--weak-url", weak_url, "--strong-url", strong_url, "--prm", "self-verify", "--prm-url", weak_url,
            "--verify-prompt", verify_prompt, "--weak-temperature", "0.7", "--max-tokens", str(max_tokens), "--max-steps", str(max_steps),
            "--timeout", "600", "--retries", "1"]
    for name, spec in policies:
        args += ["--policy", f"{name}={spec}"]
    with tempfile.TemporaryDirectory() as tmp, serve_process(args, Path(tmp) / "serve.log") as url:
        run_mode(url, "strong-only", ["Warm up: what is 1 + 1?"], 1)  # each server's first call is slow
        run_mode(url, "weak-only", ["Warm up: what is 1 + 1?"], 1)
        out = {}
        for name, _ in policies:
            flush_prompt_caches(f"{weak_url},{strong_url}")  # the modes send the same first prompts
            before = {"weak": llama_metrics(weak_url), "strong": llama_metrics(strong_url)}
            out[name] = run_mode(url, name, problems, len(problems))
            out[name]["backend"] = {k: backend_profile(llama_metrics(u), before[k])
                                    for k, u in (("weak", weak_url), ("strong", strong_url))}
        return out


def control(urls: str, policy: str, problems: list[str], target: float, concurrency: int, max_tokens: int,
            max_steps: int, block: int = 16) -> list[dict]:
    """Stream ``problems`` (``concurrency`` in flight) through a server holding ``target`` with a
    budget-conditioned ``policy``; per block of finished requests: their strong-token share and the
    price when the block ended."""
    rows: list[dict] = []
    acc = {"strong": 0, "tokens": 0, "n": 0}
    with tempfile.TemporaryDirectory() as tmp, \
            serve_process([*backend_args(urls, max_tokens, max_steps), "--policy", f"budget={policy}",
                           "--target-strong-share", str(target)], Path(tmp) / "serve.log") as url:
        price0 = scrape(url)['trim_price{policy="budget"}']

        def done(i, usage):
            acc["strong"] += usage.strong_tokens
            acc["tokens"] += usage.completion_tokens
            acc["n"] += 1
            if acc["n"] % block == 0:
                rows.append({"done": acc["n"], "share": acc["strong"] / max(1, acc["tokens"]),
                             "price": scrape(url)['trim_price{policy="budget"}']})
                acc["strong"] = acc["tokens"] = 0

        asyncio.run(_send(url, "budget", problems, concurrency, on_done=done))
    return [{"done": 0, "share": float("nan"), "price": price0}] + rows


def main_compare(args, probs: list[str]) -> int:
    """``bench serve --compare``: weak SmolLM2-135M and strong Gemma 3 270M, each a llama-server."""
    log = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    weak = LlamaCppServer("smollm2", parallel=args.slots, n_ctx=args.ctx, n_threads=args.threads, log=log / "weak.log")
    strong = LlamaCppServer("gemma3", parallel=args.slots, n_ctx=args.ctx, n_threads=args.threads,
                            log=log / "strong.log")
    try:
        weak.start()
        strong.start()
        print(f"weak {weak.model.name} and strong {strong.model.name}: llama-servers of {args.slots} slots of "
              f"{args.ctx} tokens, {args.threads} thread(s) each; self-verify scorer on the weak model; "
              f"{args.requests} {args.problems} requests per mode, all at once, at most {args.max_steps} steps of "
              f"{args.max_tokens} tokens; {os.cpu_count()} CPU cores", flush=True)
        for layout in args.verify_prompt:
            r = compare_models(weak.url, strong.url, probs[: args.requests], args.max_tokens, args.max_steps, layout)
            print(f"self-verify question: {layout}")
            print(f"{'mode':<14}{'requests/s':>11}{'p50 s':>8}{'p95 s':>8}{'strong share':>14}{'vs strong-only':>16}")
            ref = r["strong-only"]["requests_per_s"]
            for name, v in r.items():
                print(f"{name:<14}{v['requests_per_s']:>11.3f}{v['p50_s']:>8.1f}{v['p95_s']:>8.1f}"
                      f"{v['strong_share']:>14.2f}{v['requests_per_s'] / ref:>15.2f}x", flush=True)
            _print_model_profiles(r)
    finally:
        weak.stop()
        strong.stop()
    return 0


def _print_model_profiles(r: dict) -> None:
    """Each model's llama-server counters per mode of ``--compare``: where its time went."""
    if any(b is None for v in r.values() for b in v["backend"].values()):
        return
    print("each model's llama-server per mode (prompt tokens computed, not cached; generated tokens; decode calls "
          "and busy slots per call):")
    print(f"{'mode':<14}{'weak prompt':>12}{'weak gen':>10}{'weak calls':>11}{'strong prompt':>15}{'strong gen':>12}"
          f"{'strong calls':>14}")
    for name, v in r.items():
        w, s = v["backend"]["weak"], v["backend"]["strong"]
        print(f"{name:<14}{w['prompt_tokens']:>12.0f}{w['generated_tokens']:>10.0f}"
              f"{w['decode_calls']:>5.0f} x {w['busy_slots_per_call']:<3.1f}{s['prompt_tokens']:>15.0f}"
              f"{s['generated_tokens']:>12.0f}{s['decode_calls']:>8.0f} x {s['busy_slots_per_call']:<3.1f}", flush=True)


def _print_compare(r: dict, requests: int, layout: str) -> None:
    """One layout's modes, ratio, backend profile and overhead, as ``bench serve`` prints them."""
    print(f"self-verify question: {layout}")
    print(f"{'mode':<34}{'requests/s':>11}{'p50 s':>9}{'steps':>7}{'strong share':>14}")
    for key, label in (("batching", f"continuous batching ({requests} at once)"),
                       ("one_at_a_time", "one at a time"),
                       ("strong_only", f"strong-only ({requests} at once)")):
        v = r[key]
        print(f"{label:<34}{v['requests_per_s']:>11.3f}{v['p50_s']:>9.1f}{v['steps']:>7}{v['strong_share']:>14.2f}")
    print(f"ratio batching / one at a time: {r['batching']['requests_per_s'] / r['one_at_a_time']['requests_per_s']:.2f} "
          f"(requests/s)")
    if r["batching"]["backend"] is not None:
        print("llama-server's own time per mode (prompt tokens computed, not cached; slot-seconds, overlapping "
              "slots each counted):")
        print(f"{'mode':<34}{'prompt tok':>11}{'prompt s':>10}{'gen tok':>9}{'gen s':>8}{'decodes':>9}"
              f"{'slots/decode':>14}")
        for key in ("batching", "one_at_a_time", "strong_only"):
            b = r[key]["backend"]
            print(f"{key.replace('_', ' '):<34}{b['prompt_tokens']:>11.0f}{b['prompt_s']:>10.1f}"
                  f"{b['generated_tokens']:>9.0f}{b['generation_s']:>8.1f}{b['decode_calls']:>9.0f}"
                  f"{b['busy_slots_per_call']:>14.2f}")
    print(f"router + scheduler time per step in the batching run ({requests} at once, {r['rounds']:.0f} "
          f"rounds): p50 {r['overhead_ms_p50']:.3f} ms, p95 {r['overhead_ms_p95']:.3f} ms (router alone p50 "
          f"{r['router_ms_p50']:.3f} ms)", flush=True)


def main(args) -> int:
    import torch

    probs = [p.problem for p in load_problems(args.problems)]
    if getattr(args, "compare", False):
        torch.set_num_threads(1)
        return main_compare(args, probs)
    if args.url:
        urls, pool = args.url, None
    else:
        log = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "llama-server.log"
        pool = LlamaCppServer(parallel=args.slots, n_ctx=args.ctx, n_threads=args.threads, log=log)
        pool.start()
        urls = pool.url
        print(f"llama-server: {args.slots} slots of {args.ctx} tokens, {pool.n_threads} threads, {pool.model.name} "
              f"(log {log})", flush=True)
    torch.set_num_threads(1)
    try:
        print(f"backends: {urls} (weak sampled at 0.7, strong greedy: the same model; self-verify scorer); "
              f"{args.requests} {args.problems} requests, at most {args.max_steps} steps of {args.max_tokens} "
              f"tokens; policy {args.policy}; {os.cpu_count()} CPU cores", flush=True)
        o = overhead(args.policy, args.overhead_requests, args.overhead_concurrency)
        print(f"server's own time per step against an instant backend (no model; answers as vLLM does), "
              f"{args.overhead_requests} requests, {args.overhead_concurrency} at once, {o['rounds']:.0f} rounds of "
              f"{o['steps_per_round']:.1f} steps: router + scheduler p50 {o['overhead_ms_p50']:.3f} ms, p95 "
              f"{o['overhead_ms_p95']:.3f} ms per step (router alone p50 {o['router_ms_p50']:.3f} ms); "
              f"{o['requests_per_s']:.1f} requests/s", flush=True)
        c = batching_ceiling(urls, probs[: args.requests], args.max_tokens)
        print(ceiling_line(c, args.requests, args.max_tokens), flush=True)
        if llama_slots(urls) is not None:  # compare() flushes them before each mode
            print("every mode below starts from empty prompt caches (each llama-server slot flushed first)")
        for layout in args.verify_prompt:
            r = compare(urls, args.policy, probs[: args.requests], args.max_tokens, args.max_steps,
                        args.slots if pool is not None else len(split_urls(urls)), layout)
            _print_compare(r, args.requests, layout)
        if args.target_share is not None:
            stream = probs[args.requests : args.requests + args.control_requests]
            rows = control(urls, args.budget_policy, stream, args.target_share, args.control_concurrency,
                           args.max_tokens, args.max_steps)
            print(f"--target-strong-share {args.target_share} with {args.budget_policy}: {len(stream)} more "
                  f"{args.problems} problems, {args.control_concurrency} in flight")
            print(f"{'finished':>9}{'share of the block':>20}{'price after':>13}")
            for row in rows:
                print(f"{row['done']:>9}{row['share']:>20.3f}{row['price']:>13.5f}")
            late = [row["share"] for row in rows[len(rows) // 2 :] if row["done"]]
            if late:
                print(f"median block share over the second half: {statistics.median(late):.3f} "
                      f"(target {args.target_share})")
    finally:
        if pool is not None:
            pool.stop()
    return 0
