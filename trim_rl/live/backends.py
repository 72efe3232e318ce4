"""The engines and the step scorer that the live commands (decode, collect, serve, online training)
build from one typed :class:`BackendConfig`, every setting checked before any server is asked."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields

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


@dataclass(frozen=True)
class BackendConfig:
    """The engine, scorer, sampling and request settings of the live commands, built once from their
    flags (:meth:`from_cli_args`) or from Python (:meth:`from_options`, by the flags' names); the
    flags' defaults are these.  URLs are comma-separated replica lists (or ``vllm:MODEL``)."""

    weak_url: str | None = None
    strong_url: str | None = None
    prm_url: str | None = None
    weak_model: str | None = None
    strong_model: str | None = None
    prm_model: str | None = None
    prm: str = "vllm"  # vllm | self-verify
    chat_template: str = "chatml"
    vllm_arg: tuple[str, ...] = ()
    max_tokens: int = 256
    weak_temperature: float = 0.0
    strong_temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    concurrency: int = 256
    prompts_per_request: int | None = None
    timeout: float = 120.0
    retries: int = 3
    wait_ready: float = 60.0
    api_key: str | None = None

    #: the settings besides the three URLs, by name (what ``--live-option`` and ``from_options`` take)
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if not f.name.endswith("_url"))

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> BackendConfig:
        values = {name: getattr(args, name) for name in cls.option_names() if hasattr(args, name)}
        values["vllm_arg"] = tuple(values.get("vllm_arg") or ())
        return cls(flag_url(getattr(args, "weak_url", None)), flag_url(getattr(args, "strong_url", None)),
                   flag_url(getattr(args, "prm_url", None)), **values)

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
        return cls(weak_url, strong_url, prm_url, **values)

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
        return SelfVerifyScorer(url, cfg.prm_model, template, http, api_key=cfg.api_key, wait_ready_s=cfg.wait_ready)
    if not url:
        raise ValueError("--prm vllm needs --prm-url (a vllm serve of the PRM, or vllm:MODEL in-process)")
    if url.startswith("vllm:"):
        return VLLMInProcessPRM(url[len("vllm:"):], **vargs["prm"])
    return VLLMPoolingPRM(url, cfg.prm_model, http, api_key=cfg.api_key, wait_ready_s=cfg.wait_ready)
