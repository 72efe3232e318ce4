"""The engines and the step scorer that the live commands (decode, collect, serve, online training)
build from one typed :class:`BackendConfig`, every setting checked before any server is asked."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields

from trim_rl.argtypes import add_field_flags, flag, int_at_least, nonneg_float
from trim_rl.live.engines import Sampling, make_engine
from trim_rl.live.http import HTTPSettings, split_urls
from trim_rl.live.prm import VERIFY_PROMPTS, SelfVerifyScorer, VLLMInProcessPRM, VLLMPoolingPRM
from trim_rl.live.prompts import ChatTemplate

ENGINES, REQUESTS = "engines", "requests"
SAMPLING = "sampling (sent explicitly, so a server's generation_config.json does not fill gaps)"
_POSITIVE = int_at_least(1)
_REPLICAS = ("; several URLs (comma-separated or repeated) are replicas of one model: requests are spread over them, "
             "and one that fails is left out and tried again later")


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


@dataclass(frozen=True)
class BackendConfig:
    """The engine, scorer, sampling and request settings of the live commands, built once from their
    flags (:meth:`from_cli_args`) or from Python (:meth:`from_options`, by the flags' names); each
    field's metadata is its flag (:meth:`add_cli_args`), whose default is the field's.  URLs are
    comma-separated replica lists (or ``vllm:MODEL``)."""

    weak_url: str | None = field(default=None, metadata=flag(
        "weak model: an OpenAI-compatible server (http://127.0.0.1:8001) or vllm:MODEL for in-process vLLM"
        + _REPLICAS, ENGINES, required=True, nargs="+"))
    strong_url: str | None = field(default=None, metadata=flag(
        "strong model, same forms as --weak-url (needed to regenerate steps)", ENGINES, nargs="+"))
    prm: str = field(default="vllm", metadata=flag(
        "step scorer: 'vllm' = a process reward model behind vllm serve's /pooling (--prm-url); 'self-verify' = "
        "ask a completions model whether the newest step is correct and read P(yes) from its logprobs "
        "(--prm-url, default the weak server)", ENGINES, choices=("vllm", "self-verify")))
    verify_prompt: str = field(default="separate", metadata=flag(
        "--prm self-verify's question: 'separate' restates the problem and the numbered steps in a turn of its "
        "own; 'continued' asks in the step prompt's own conversation, so that a server's prefix cache (vLLM "
        "--enable-prefix-caching, llama-server's slots) serves a step and its check together (default separate)",
        ENGINES, choices=VERIFY_PROMPTS))
    prm_url: str | None = field(default=None, metadata=flag(
        "server of the step scorer (for --prm vllm: vllm serve Qwen/Qwen2.5-Math-PRM-7B), or vllm:MODEL in-process"
        + _REPLICAS, ENGINES, nargs="+"))
    weak_model: str | None = field(default=None, metadata=flag(
        "model name sent to the weak server (default: the first it lists)", ENGINES))
    strong_model: str | None = field(default=None, metadata=flag(
        "model name sent to the strong server (default: the first it lists)", ENGINES))
    prm_model: str | None = field(default=None, metadata=flag(
        "model name sent to the scorer's server (default: the first it lists)", ENGINES))
    chat_template: str = field(default="chatml", metadata=flag(
        "chat template of the generating models: chatml (Qwen2.5, SmolLM2), llama3, llama3.1 (Llama 3.1-3.3, "
        "with its system header), or a .jinja file", ENGINES))
    vllm_arg: tuple[str, ...] = field(default=(), metadata=flag(
        "an argument of vllm.LLM for the in-process engines (vllm:MODEL), e.g. gpu_memory_utilization=0.3 or "
        "max_model_len=8192; ROLE weak, strong or prm sets it for one engine only (prm:gpu_memory_utilization=0.25); "
        "VALUE is read as JSON, else as text; repeatable", ENGINES, action="append", metavar="[ROLE:]KEY=VALUE"))
    max_tokens: int = field(default=256, metadata=flag(
        "most tokens per step (default %(default)s)", SAMPLING, type=_POSITIVE))
    weak_temperature: float = field(default=0.0, metadata=flag(
        "weak model's sampling temperature (default 0)", SAMPLING, type=nonneg_float))
    strong_temperature: float = field(default=0.0, metadata=flag(
        "strong model's sampling temperature (default 0)", SAMPLING, type=nonneg_float))
    top_p: float = field(default=1.0, metadata=flag("nucleus sampling, both models (default 1: off)", SAMPLING, type=float))
    top_k: int = field(default=0, metadata=flag("top-k sampling, both models (default 0: off)", SAMPLING, type=int))
    min_p: float = field(default=0.0, metadata=flag(
        "min-p sampling, both models (default 0: off)", SAMPLING, type=nonneg_float))
    repetition_penalty: float = field(default=1.0, metadata=flag(
        "repetition penalty, both models (default 1: off)", SAMPLING, type=nonneg_float))
    concurrency: int = field(default=256, metadata=flag(
        "requests in flight per server (default 256, for a GPU server; vLLM batches up to its --max-num-seqs)",
        REQUESTS, type=_POSITIVE))
    prompts_per_request: int | None = field(default=None, metadata=flag(
        "prompts per /v1/completions request for greedy steps (default: 32 against vLLM, 1 elsewhere; sampled "
        "steps go one per request, each with its own seed)", REQUESTS, type=_POSITIVE))
    timeout: float = field(default=120.0, metadata=flag(
        "seconds one attempt of a request may take as a whole before it is retried (default 120)", REQUESTS,
        type=nonneg_float))
    retries: int = field(default=3, metadata=flag(
        "retries per request, with exponential backoff (default 3)", REQUESTS, type=int_at_least(0)))
    wait_ready: float = field(default=60.0, metadata=flag(
        "seconds to wait for each server's GET /health before the first request (default 60)", REQUESTS,
        type=nonneg_float))
    api_key: str | None = field(default=None, metadata=flag("bearer token for the servers (default none)", REQUESTS))

    @classmethod
    def add_cli_args(cls, parser: argparse.ArgumentParser) -> None:
        """The engine, sampling and request flags of ``live decode``, ``collect`` and ``serve``, one per field,
        in argument groups of those names."""
        add_field_flags(parser, cls)

    #: the settings besides the three URLs, by name (what ``--live-option`` and ``from_options`` take)
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if not f.name.endswith("_url"))

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> BackendConfig:
        values = {name: getattr(args, name) for name in cls.option_names() if hasattr(args, name)}
        values["vllm_arg"] = tuple(values.get("vllm_arg") or ())
        urls = {name: flag_url(getattr(args, name, None)) for name in ("weak_url", "strong_url", "prm_url")}
        return cls(**urls, **values)

    @classmethod
    def from_options(cls, weak_url: str | None, strong_url: str | None = None, prm_url: str | None = None,
                     options: dict | None = None) -> BackendConfig:
        """From Python: ``options`` by the flags' names (``max_tokens``, ``weak_model``, ``retries``, ...)."""
        unknown = sorted(set(options or {}) - set(cls.option_names()))
        if unknown:
            raise ValueError(f"live option {unknown[0]!r}: expected one of {', '.join(cls.option_names())}")
        values = dict(options or {})
        if "vllm_arg" in values:
            values["vllm_arg"] = tuple(values["vllm_arg"] or ())
        return cls(weak_url=weak_url, strong_url=strong_url, prm_url=prm_url, **values)

    def sampling_meta(self, template_name: str) -> dict:
        """The sampling settings a results file records (a re-run with others is refused)."""
        return {"max_tokens": self.max_tokens, "weak_temperature": self.weak_temperature,
                "strong_temperature": self.strong_temperature, "top_p": self.top_p, "top_k": self.top_k,
                "min_p": self.min_p, "repetition_penalty": self.repetition_penalty, "chat_template": template_name}


def build_engines(cfg: BackendConfig, need_strong: bool, need_scorer: bool):
    """The weak and strong engines, once every setting they need is checked (before any server is asked)."""
    http = HTTPSettings(timeout=cfg.timeout, retries=cfg.retries, concurrency=cfg.concurrency)
    template = ChatTemplate.resolve(cfg.chat_template)
    vargs = parse_vllm_args(list(cfg.vllm_arg))
    urls = {"weak": cfg.weak_url, "strong": cfg.strong_url, "prm": cfg.prm_url}
    if not urls["weak"]:
        raise ValueError("--weak-url is needed (the weak model drafts every step)")
    for u in urls.values():
        if u and not u.startswith("vllm:"):
            split_urls(u)  # a bad URL is a usage error before any server is asked
    if urls["strong"] is None and need_strong:
        raise ValueError("--strong-url is needed (the strong model regenerates steps)")
    if need_scorer and cfg.prm == "vllm" and not urls["prm"]:
        raise ValueError("--prm vllm needs --prm-url (a vllm serve of the PRM, or vllm:MODEL in-process)")

    def sampling(temperature):
        return Sampling(cfg.max_tokens, temperature, cfg.top_p, cfg.top_k, cfg.min_p, cfg.repetition_penalty)

    def engine(role, temperature, model):
        return make_engine(urls[role], sampling(temperature), template, http, model, cfg.api_key, vargs[role],
                           cfg.prompts_per_request, cfg.wait_ready)

    weak = engine("weak", cfg.weak_temperature, cfg.weak_model)
    strong = engine("strong", cfg.strong_temperature, cfg.strong_model) if urls["strong"] else None
    return weak, strong, http, template, urls, vargs


def build_scorer(cfg: BackendConfig, http, template, urls, vargs):
    url = urls["prm"]
    if cfg.prm == "self-verify":
        url = url or urls["weak"]
        if url.startswith("vllm:"):
            raise ValueError("--prm self-verify needs an HTTP completions server (--prm-url)")
        return SelfVerifyScorer(url, cfg.prm_model, template, http, api_key=cfg.api_key, wait_ready_s=cfg.wait_ready,
                                verify_prompt=cfg.verify_prompt)
    if not url:
        raise ValueError("--prm vllm needs --prm-url (a vllm serve of the PRM, or vllm:MODEL in-process)")
    if url.startswith("vllm:"):
        return VLLMInProcessPRM(url[len("vllm:"):], **vargs["prm"])
    return VLLMPoolingPRM(url, cfg.prm_model, http, api_key=cfg.api_key, wait_ready_s=cfg.wait_ready)
