"""What a backend did and what it can do: llama-server's own counters (``--metrics``) and the gain a
backend alone takes from batching, the ceiling that step-level batching in front of it works under.

The same completions (``max_tokens`` tokens each, end of text ignored, so every request writes
exactly as many) are sent straight to the backend's ``/v1/completions``, first all at once, then one
at a time; the ratio of their generated tokens per second is what sending requests together gains
over sending them one by one on this backend, with no router in the way.  It is measured once, on
short prompts and mostly generation, so a router's mix (long prompts, cached prefixes, the client's
own time overlapped) can land a few percent either side of it.  On a GPU, where a decode call is
bound by reading the weights, it grows with the number of requests; on one CPU thread, where a call
of k sequences costs about k single-token calls, it stays near 1.
"""

from __future__ import annotations

import asyncio
import time

from trim_rl.live.http import split_urls


def llama_metrics(urls: str) -> dict[str, float] | None:
    """llama-server's own counters (``--metrics``), summed over the servers; None where a server has
    none (another backend)."""
    import httpx

    out: dict[str, float] = {}
    for u in split_urls(urls):
        try:
            r = httpx.get(u + "/metrics", timeout=30)
        except httpx.HTTPError:
            return None
        if r.status_code != 200 or "llamacpp:" not in r.text:
            return None
        m = {k.removeprefix("llamacpp:"): v for k, v in scrape_text(r.text).items() if k.startswith("llamacpp:")}
        m["busy_slots_total"] = m.get("n_busy_slots_per_decode", 0.0) * m.get("n_decode_total", 0.0)
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


def scrape_text(text: str) -> dict[str, float]:
    """A Prometheus text page as {sample with labels: value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def backend_profile(after: dict | None, before: dict | None) -> dict | None:
    """Where the backend's time went between two :func:`llama_metrics`: prompt tokens computed (not
    taken from a slot's cache) and tokens generated, the seconds the slots spent on each (summed over
    slots: overlapping slots count each), ``llama_decode`` calls and the slots busy per call."""
    if after is None or before is None:
        return None
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    calls = d.get("n_decode_total", 0.0)
    return {"prompt_tokens": d.get("prompt_tokens_total", 0.0), "prompt_s": d.get("prompt_seconds_total", 0.0),
            "generated_tokens": d.get("tokens_predicted_total", 0.0),
            "generation_s": d.get("tokens_predicted_seconds_total", 0.0), "decode_calls": calls,
            "busy_slots_per_call": d.get("busy_slots_total", 0.0) / calls if calls else 0.0}


def llama_slots(urls: str) -> list[int] | None:
    """The slots of each llama-server behind ``urls`` (comma-separated), from ``/props``; None where a
    backend is not llama-server (no ``total_slots``)."""
    import httpx

    slots = []
    for base in split_urls(urls):
        try:
            n = httpx.get(base + "/props", timeout=30).json().get("total_slots")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if not isinstance(n, int) or n < 1:
            return None
        slots.append(n)
    return slots


def flush_prompt_caches(urls: str) -> bool:
    """Empty the prompt cache of every llama-server slot behind ``urls`` (comma-separated): each slot
    gets a one-token completion of a prompt of its own (``id_slot``), which replaces what it held.

    Runs that send the same prompts one after another (one mode of a bench after another, the same
    seeds) would otherwise find the earlier run's prefixes in the slots and compute less than they
    would alone.  False where a backend is not llama-server (:func:`llama_slots`): vLLM's prefix cache
    is one pool that only its dev-mode ``/reset_prefix_cache`` empties."""
    import httpx

    bases, slots = split_urls(urls), llama_slots(urls)
    if slots is None:
        return False

    async def flush() -> None:
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=sum(slots))) as client:
            calls = [client.post(base + "/v1/completions", json={
                "prompt": f"Cache flush of slot {i}: " + "the quick brown fox jumps over the lazy dog. " * 4,
                "max_tokens": 1, "temperature": 0.0, "id_slot": i})
                for base, n in zip(bases, slots) for i in range(n)]
            for r in await asyncio.gather(*calls):
                r.raise_for_status()

    asyncio.run(flush())
    return True


async def _complete_all(urls: list[str], prompts: list[str], max_tokens: int, concurrency: int) -> list[int]:
    """Completion tokens of each prompt, at most ``concurrency`` in flight, spread over ``urls``."""
    import httpx

    out = [0] * len(prompts)
    todo = list(range(len(prompts)))
    limits = httpx.Limits(max_connections=max(1, concurrency))
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:

        async def worker() -> None:
            while todo:
                i = todo.pop(0)
                body = {"prompt": prompts[i], "max_tokens": max_tokens, "temperature": 0.0, "seed": i,
                        "ignore_eos": True, "cache_prompt": False}
                r = await client.post(urls[i % len(urls)] + "/v1/completions", json=body)
                r.raise_for_status()
                out[i] = int(r.json()["usage"]["completion_tokens"])

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return out


def batching_ceiling(urls: str, prompts: list[str], max_tokens: int) -> dict:
    """Generated tokens/s of ``prompts`` sent to the backend(s) ``urls`` (comma-separated) all at once
    and one at a time, and their ratio; with llama-server, its own profile of each run.

    ``ignore_eos`` and ``cache_prompt`` are llama-server's fields (vLLM reads ``ignore_eos`` too), so
    both runs write the same tokens and prefill the same prompts."""
    bases = split_urls(urls)
    asyncio.run(_complete_all(bases, prompts[:1], 4, 1))  # the first call of a server is slow
    out: dict = {}
    for key, concurrency in (("all_at_once", len(prompts)), ("one_at_a_time", 1)):
        before = llama_metrics(urls)
        t0 = time.perf_counter()
        tokens = asyncio.run(_complete_all(bases, prompts, max_tokens, concurrency))
        wall = time.perf_counter() - t0
        out[key] = {"tokens": sum(tokens), "tokens_per_s": sum(tokens) / wall, "wall_s": wall,
                    "backend": backend_profile(llama_metrics(urls), before)}
    out["ratio"] = out["all_at_once"]["tokens_per_s"] / out["one_at_a_time"]["tokens_per_s"]
    return out


def ceiling_line(c: dict, n: int, max_tokens: int) -> str:
    """One line for a bench's output."""
    line = (f"the backend alone, {n} completions of {max_tokens} tokens straight to it (no router): all at once "
            f"{c['all_at_once']['tokens_per_s']:.1f} tokens/s, one at a time {c['one_at_a_time']['tokens_per_s']:.1f}; "
            f"ratio all at once / one at a time: {c['ratio']:.2f} (the backend's own gain from batching)")
    b = c["all_at_once"]["backend"]
    if b is not None:
        line += f"; all at once: {b['decode_calls']:.0f} decode calls of {b['busy_slots_per_call']:.2f} busy slots"
    return line
