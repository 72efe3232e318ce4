"""Engines: generate the next reasoning step of many (problem, accepted steps) prefixes at once.

Both engines answer :meth:`Engine.generate` with one :class:`StepResult` per :class:`StepRequest`:
the step's text (without the blank line that ends it), its completion tokens, and why it ended
(``"stop"`` at the blank line, ``"eos"`` when the model ended its answer, ``"length"`` at
``max_tokens``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from trim_rl.live.http import EngineError, HTTPSettings, JSONClient
from trim_rl.live.prompts import DEFAULT_SYSTEM, STEP_SEPARATOR, ChatTemplate, is_final, step_prompt


@dataclass(frozen=True)
class StepRequest:
    """Generate the step after ``steps`` for ``problem``; ``seed`` fixes sampling."""

    problem: str
    steps: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class StepResult:
    text: str
    tokens: int
    finish_reason: str  # "stop" | "eos" | "length"

    @property
    def ends_solution(self) -> bool:
        """The step states the answer, or the model ended its answer with it."""
        return is_final(self.text) or self.finish_reason == "eos"


@dataclass
class Sampling:
    """How a step is sampled (the same for every request of an engine)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = (STEP_SEPARATOR,)


class Engine(Protocol):
    name: str

    def generate(self, requests: Sequence[StepRequest]) -> list[StepResult]: ...


def request_seed(seed: int, *key) -> int:
    """A per-request seed derived from a run seed and a key (problem id, node, role)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(key)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def _clean(text: str) -> str:
    return text.strip("\n").rstrip()


@dataclass
class OpenAICompatibleEngine:
    """Steps from ``/v1/completions`` of an OpenAI-compatible server (``vllm serve``, llama.cpp's
    server, SGLang), one request per prefix, sent concurrently.

    The prompt is rendered from ``template`` (:class:`~trim_rl.live.prompts.ChatTemplate`) so that
    the server's prefix cache covers the problem and the accepted steps.
    """

    url: str
    model: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    template: ChatTemplate = field(default_factory=lambda: ChatTemplate.resolve("chatml"))
    system: str = DEFAULT_SYSTEM
    http: HTTPSettings = field(default_factory=HTTPSettings)
    api_key: str | None = None

    def __post_init__(self):
        self.client = JSONClient(self.url, self.http, self.api_key)
        if self.model is None:
            self.model = self.client.model_id()
        self.name = self.model

    def payload(self, req: StepRequest) -> dict:
        s = self.sampling
        p = {"model": self.model, "prompt": step_prompt(self.template, req.problem, req.steps, self.system),
             "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p, "stop": list(s.stop)}
        if req.seed is not None:
            p["seed"] = int(req.seed)
        return p

    def generate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        answers = self.client.post_many("/v1/completions", [self.payload(r) for r in requests])
        return [self._parse(a) for a in answers]

    def _parse(self, answer: dict) -> StepResult:
        try:
            choice = answer["choices"][0]
            text = choice.get("text") or ""
            reason = choice.get("finish_reason") or "stop"
            usage = answer.get("usage") or {}
            tokens = int(usage.get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EngineError(self.client.url("/v1/completions"), f"unexpected answer ({exc}): {str(answer)[:300]}") from None
        return StepResult(_clean(text), tokens, _finish(reason, choice, text))


def _finish(reason: str, choice: dict, text: str) -> str:
    """Map an OpenAI finish reason to stop / eos / length.

    vLLM reports the matched stop string in ``stop_reason`` (None at end of sequence); servers that
    do not are read by the text: an empty step that stopped means the model ended its answer.
    """
    if reason == "length":
        return "length"
    if "stop_reason" in choice:
        return "stop" if isinstance(choice["stop_reason"], str) else "eos"
    return "eos" if not text.strip() else "stop"


class VLLMEngine:
    """In-process ``vllm.LLM`` with prefix caching; one batched ``generate`` per call.

    Needs the ``[live]`` extra (vllm is imported here only).
    """

    def __init__(self, model: str, sampling: Sampling | None = None, template: ChatTemplate | None = None,
                 system: str = DEFAULT_SYSTEM, **llm_kwargs):
        from vllm import LLM

        self.sampling = sampling or Sampling()
        self.template = template or ChatTemplate.resolve("chatml")
        self.system = system
        self.name = model
        llm_kwargs.setdefault("enable_prefix_caching", True)
        self.llm = LLM(model=model, **llm_kwargs)

    def generate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        from vllm import SamplingParams

        s = self.sampling
        params = [SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                                 stop=list(s.stop), seed=r.seed) for r in requests]
        prompts = [step_prompt(self.template, r.problem, r.steps, self.system) for r in requests]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            reason = "length" if c.finish_reason == "length" else ("stop" if isinstance(c.stop_reason, str) else "eos")
            res.append(StepResult(_clean(c.text), len(c.token_ids), reason))
        return res


def make_engine(spec: str, sampling: Sampling, template: ChatTemplate, http: HTTPSettings,
                model: str | None = None, api_key: str | None = None) -> Engine:
    """``http(s)://host:port`` (OpenAI-compatible server) or ``vllm:MODEL`` (in-process vLLM)."""
    if spec.startswith("vllm:"):
        return VLLMEngine(spec[len("vllm:"):], sampling, template)
    if spec.startswith(("http://", "https://")):
        return OpenAICompatibleEngine(spec, model, sampling, template, http=http, api_key=api_key)
    raise ValueError(f"engine {spec!r}: give a server URL (http://host:port) or vllm:MODEL")
