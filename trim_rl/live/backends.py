"""The engines and the step scorer that the live commands (decode, collect, serve) build from their
parsed flags, every flag checked before any server is asked."""

from __future__ import annotations

import json

from trim_rl.live.engines import Sampling, make_engine
from trim_rl.live.http import HTTPSettings, split_urls
from trim_rl.live.prm import SelfVerifyScorer, VLLMInProcessPRM, VLLMPoolingPRM
from trim_rl.live.prompts import ChatTemplate


def parse_vllm_args(items: list[str]) -> dict[str, dict]:
    """``--vllm-arg [ROLE:]KEY=VALUE`` -> {role: {key: value}} for roles weak, strong, prm."""
    out: dict[str, dict] = {"weak": {}, "strong": {}, "prm": {}}
    for item in items:
        role, _, rest = item.partition(":") if item.split("=", 1)[0].count(":") else ("", "", item)
        key, eq, text = rest.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key.isidentifier() or (role and role not in out):
            raise ValueError(f"--vllm-arg {item!r}: expected [weak|strong|prm:]KEY=VALUE, e.g. gpu_memory_utilization=0.3")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        for r in [role] if role else list(out):
            out[r][key] = value
    return out


def flag_url(spec: list[str] | None) -> str | None:
    """The URL list of a ``--*-url`` flag as one comma-separated string (``vllm:MODEL`` as it is)."""
    if not spec:
        return None
    joined = ",".join(spec)
    if any(s.startswith("vllm:") for s in spec) and len(spec) > 1:
        raise ValueError(f"{joined!r}: vllm:MODEL runs one in-process engine; it takes no URL list")
    return joined


def build_engines(args, need_strong: bool, need_scorer: bool):
    """The weak and strong engines, once every flag they need is checked (before any server is asked)."""
    http = HTTPSettings(timeout=args.timeout, retries=args.retries, concurrency=args.concurrency)
    template = ChatTemplate.resolve(args.chat_template)
    vargs = parse_vllm_args(args.vllm_arg)
    urls = {"weak": flag_url(args.weak_url), "strong": flag_url(args.strong_url), "prm": flag_url(args.prm_url)}
    for u in urls.values():
        if u and not u.startswith("vllm:"):
            split_urls(u)  # a bad URL is a usage error before any server is asked
    if urls["strong"] is None and need_strong:
        raise ValueError("--strong-url is needed (the strong model regenerates steps)")
    if need_scorer and args.prm == "vllm" and not urls["prm"]:
        raise ValueError("--prm vllm needs --prm-url (a vllm serve of the PRM, or vllm:MODEL in-process)")

    def sampling(temperature):
        return Sampling(args.max_tokens, temperature, args.top_p, args.top_k, args.min_p, args.repetition_penalty)

    def engine(role, temperature, model):
        return make_engine(urls[role], sampling(temperature), template, http, model, args.api_key, vargs[role],
                           args.prompts_per_request, args.wait_ready)

    weak = engine("weak", args.weak_temperature, args.weak_model)
    strong = engine("strong", args.strong_temperature, args.strong_model) if urls["strong"] else None
    return weak, strong, http, template, urls, vargs


def build_scorer(args, http, template, urls, vargs):
    url = urls["prm"]
    if args.prm == "self-verify":
        url = url or urls["weak"]
        if url.startswith("vllm:"):
            raise ValueError("--prm self-verify needs an HTTP completions server (--prm-url)")
        return SelfVerifyScorer(url, args.prm_model, template, http, api_key=args.api_key, wait_ready_s=args.wait_ready)
    if not url:
        raise ValueError("--prm vllm needs --prm-url (a vllm serve of the PRM, or vllm:MODEL in-process)")
    if url.startswith("vllm:"):
        return VLLMInProcessPRM(url[len("vllm:"):], **vargs["prm"])
    return VLLMPoolingPRM(url, args.prm_model, http, api_key=args.api_key, wait_ready_s=args.wait_ready)
