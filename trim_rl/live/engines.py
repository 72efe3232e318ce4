"""Engines: generate the next reasoning step of many (problem, accepted steps) prefixes at once.

Both engines answer :meth:`Engine.generate` with one :class:`StepResult` per :class:`StepRequest`:
the step's text (without the blank line that ends it), its completion tokens, and why it ended:
``"stop"`` at the blank line, ``"eos"`` when the model ended its answer, ``"length"`` at
``max_tokens``, ``"repetition"`` when vLLM's repetition detection cut it (not an end of the
solution), ``"context"`` when the prompt no longer fits the model's context (nothing generated: the
solution ends there).  A request the server aborted (``finish_reason: "abort"``) is sent again, and
is an error after the retries.

Engines are async first: :meth:`Engine.agenerate` is awaited on the caller's event loop (the
server's); :meth:`Engine.generate` runs it to its end from synchronous code (the batch commands).

Every sampling field is sent explicitly, so a server does not fill the gaps from the model's
``generation_config.json`` (vLLM does, e.g. ``repetition_penalty`` 1.05 and ``top_k`` 20 for
Qwen2.5-Instruct) and HTTP and in-process decoding sample alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Sequence

from trim_rl.live.aio import run_sync
from trim_rl.live.http import ContextLengthError, EngineError, HTTPSettings, check_number, connect
from trim_rl.live.prompts import DEFAULT_SYSTEM, STEP_SEPARATOR, ChatTemplate, is_final, step_prompt

FINISH_REASONS = ("stop", "eos", "length", "repetition", "context")


@dataclass(frozen=True)
class StepRequest:
    """Generate the step after ``steps`` for ``problem``; ``seed`` fixes sampling; ``system`` replaces
    the engine's system prompt (a chat request's own system message)."""

    problem: str
    steps: tuple[str, ...] = ()
    seed: int | None = None
    system: str | None = None


@dataclass(frozen=True)
class StepResult:
    text: str
    tokens: int
    finish_reason: str  # one of FINISH_REASONS
    #: the prompt's length where the server says it (usage, prompt_token_ids); not part of the step
    prompt_tokens: int | None = field(default=None, compare=False)
    #: the part of the prompt the server took from its prefix cache, where it says so (vLLM's
    #: ``usage.prompt_tokens_details.cached_tokens``; llama-server's prompt tokens less ``timings.prompt_n``)
    cached_tokens: int | None = field(default=None, compare=False)

    @property
    def ends_solution(self) -> bool:
        """The step states the answer, or the model ended its answer with it."""
        return is_final(self.text) or self.finish_reason == "eos"


@dataclass
class Sampling:
    """How a step is sampled (the same for every request of an engine); the defaults switch every
    filter and penalty off."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # <= 0: off (see fields)
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = (STEP_SEPARATOR,)

    def fields(self, vllm: bool = True) -> dict:
        """The sampling fields of a completions request (vLLM's names).  top_k off is -1 for vLLM (0.8
        accepts nothing else) and 0 elsewhere (llama-cpp-python wants top_k >= 0)."""
        top_k = self.top_k if self.top_k > 0 else (-1 if vllm else 0)
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": top_k, "min_p": self.min_p, "repetition_penalty": self.repetition_penalty,
                "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
                "stop": list(self.stop)}


class Engine(Protocol):
    """``agenerate`` is the engine's call; ``generate`` the same from synchronous code.  (An engine of
    one's own may have ``generate`` alone: the routing loop then calls it in place, or in a worker
    thread where it serves requests.)"""

    name: str

    async def agenerate(self, requests: Sequence[StepRequest]) -> list[StepResult]: ...

    def generate(self, requests: Sequence[StepRequest]) -> list[StepResult]: ...


def request_seed(seed: int, *key) -> int:
    """A per-request seed derived from a run seed and a key (problem id, node, role)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(key)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def cached_tokens(answer: dict, usage: dict, prompt_tokens: int, where: str) -> int | None:
    """The prompt tokens a server took from its prefix cache for one answer, where it reports them: vLLM's
    ``usage.prompt_tokens_details.cached_tokens`` (``--enable-prompt-tokens-details``), or llama-server's
    ``timings.prompt_n`` (the prompt tokens it computed) subtracted from the prompt.  None: not reported."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        return int(check_number(where, "usage.prompt_tokens_details.cached_tokens", details["cached_tokens"], 0,
                                prompt_tokens, integer=True))
    timings = answer.get("timings")
    if isinstance(timings, dict) and timings.get("prompt_n") is not None:
        computed = check_number(where, "timings.prompt_n", timings["prompt_n"], 0, prompt_tokens, integer=True)
        return prompt_tokens - int(computed)
    return None


def _clean(text: str) -> str:
    return text.strip("\n").rstrip()


def finish_of(reason, stop_reason, has_stop_reason: bool, text: str, where: str) -> str:
    """Map an OpenAI / vLLM finish reason to one of :data:`FINISH_REASONS`.

    vLLM puts the matched stop string in ``stop_reason`` (a str), a stop token id (an int: the
    ``<|im_end|>`` that ``generation_config.json`` adds to the EOS ids) or None (EOS).  Servers without
    ``stop_reason`` are read by the text: an empty step that stopped means the model ended its answer.
    """
    if reason == "length":
        return "length"
    if reason == "repetition":
        return "repetition"
    if reason not in ("stop", None, "eos"):
        raise EngineError(where, f"bad value in the answer: finish_reason = {reason!r}")
    if reason == "eos":
        return "eos"
    if has_stop_reason:
        return "stop" if isinstance(stop_reason, str) else "eos"
    return "eos" if not text.strip() else "stop"


def room_left(message: str) -> int | None:
    """The completion tokens a context-length 400 says still fit: vLLM 0.10 "... (256 > 8192 - 8000)",
    vLLM 0.8 "maximum context length is 8192 tokens. However, you requested 8256 tokens (8000 in the
    messages, 256 in the completion)"; None when the prompt itself is too long."""
    m = re.search(r"\((\d+) > (\d+) - (\d+)\)", message)
    if m:
        return int(m.group(2)) - int(m.group(3))
    m = re.search(r"maximum context length is (\d+) tokens.*?\((\d+) in the messages, (\d+) in the completion\)",
                  message)
    return int(m.group(1)) - int(m.group(2)) if m else None


@dataclass
class OpenAICompatibleEngine:
    """Steps from ``/v1/completions`` of OpenAI-compatible servers (``vllm serve``, llama.cpp's
    server, SGLang); ``url`` may list replicas (``http://a:8001,http://b:8001``).

    The prompt is rendered from ``template`` (sent with ``add_special_tokens: false``: the template
    holds the special tokens) so that the server's prefix cache covers the problem and the accepted
    steps.  Against vLLM (its ``/v1/models`` card says ``owned_by: "vllm"``) greedy requests go up to
    ``prompts_per_request`` prompts per request, as the completions API allows; sampled ones go one
    per request, each with its own seed (the API takes one seed per request).

    An answer to several prompts is read in both forms servers give: vLLM's one object with a choice
    per prompt (``index`` in prompt order, ``token_ids`` per choice with ``return_token_ids``), and
    llama.cpp's ``llama-server``'s JSON array of one whole completion object per prompt, in prompt
    order, each with its own ``usage``.  Should a server answer several prompts in a form read by
    neither, those prompts are asked again one per request, and so are all later ones.
    """

    url: str | Sequence[str]
    model: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    template: ChatTemplate = field(default_factory=lambda: ChatTemplate.resolve("chatml"))
    system: str = DEFAULT_SYSTEM
    http: HTTPSettings = field(default_factory=HTTPSettings)
    api_key: str | None = None
    prompts_per_request: int | None = None  # None: 32 against vLLM, 1 elsewhere
    wait_ready_s: float = 0.0

    def __post_init__(self):
        self.client = connect(self.url, self.http, self.api_key, self.wait_ready_s)
        card = self.client.model_card(self.model)
        self.model = str(card["id"])
        self.name = self.model
        self.vllm = card.get("owned_by") == "vllm"
        if self.prompts_per_request is None:
            self.prompts_per_request = 32 if self.vllm else 1
        self.batch_error: str | None = None  # why answers to several prompts could not be read, if so
        self.path = "/v1/completions"

    def _base(self) -> dict:
        p = {"model": self.model, **self.sampling.fields(self.vllm), "add_special_tokens": False}
        p["repeat_penalty"] = self.sampling.repetition_penalty  # llama-cpp-python's name; vLLM ignores it
        return p

    def payload(self, req: StepRequest) -> dict:
        p = {**self._base(), "prompt": step_prompt(self.template, req.problem, req.steps, req.system or self.system)}
        if req.seed is not None:
            p["seed"] = int(req.seed)
        return p

    def _groups(self, requests: Sequence[StepRequest]) -> list[list[int]]:
        k = max(1, int(self.prompts_per_request or 1))
        if k == 1 or self.sampling.temperature > 0:
            return [[i] for i in range(len(requests))]
        return [list(range(i, min(i + k, len(requests)))) for i in range(0, len(requests), k)]

    def _group_payload(self, requests: Sequence[StepRequest], idx: list[int]) -> dict:
        if len(idx) == 1:
            return self.payload(requests[idx[0]])
        return {**self._base(), "prompt": [step_prompt(self.template, requests[i].problem, requests[i].steps,
                                                       requests[i].system or self.system) for i in idx],
                "return_token_ids": True}  # usage sums the prompts: per-prompt counts come from token_ids

    def generate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        """:meth:`agenerate`, run to its end."""
        return run_sync(self.agenerate(requests)) if requests else []

    async def agenerate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        """One :class:`StepResult` per request, in order."""
        out: list[StepResult | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        for _attempt in range(self.http.retries + 1):
            groups = [[todo[j] for j in g] for g in self._groups([requests[i] for i in todo])]
            aborted = await self._send(requests, groups, out)
            if not aborted:
                return out  # type: ignore[return-value]
            todo = aborted
        raise EngineError(self.client.url(self.path), f"the server aborted {len(todo)} requests "
                                                      f"{self.http.retries + 1} times (finish_reason 'abort')")

    async def _send(self, requests, groups: list[list[int]], out: list) -> list[int]:
        """Send the groups; fill ``out``; return the indexes the server aborted."""
        payloads = [self._group_payload(requests, g) for g in groups]
        keys = [requests[g[0]].problem for g in groups]
        replies = await self.client.areplies(self.path, payloads, keys, context_errors=True)
        aborted: list[int] = []
        again: list[list[int]] = []  # prompts to ask again one per request
        for g, payload, key, reply in zip(groups, payloads, keys, replies):
            if isinstance(reply, ContextLengthError):
                if len(g) > 1:  # one prompt of the request is too long (the server fails it whole): find it
                    again += [[i] for i in g]
                    continue
                reply = await self._ask_for_room(payload, key, str(reply))
                if reply is None:
                    out[g[0]] = StepResult("", 0, "context")
                    continue
            try:
                results = self._parse(reply.data, len(g), self.client.url(self.path, reply.url))
            except EngineError as exc:
                if len(g) == 1:
                    raise
                # an answer to several prompts in a form not read here: one per request from now on
                self.prompts_per_request, self.batch_error = 1, str(exc)
                again += [[i] for i in g]
                continue
            for i, res in zip(g, results):
                if res is None:
                    aborted.append(i)
                else:
                    out[i] = res
        return aborted + (await self._send(requests, again, out) if again else [])

    async def _ask_for_room(self, payload: dict, key, message: str):
        """vLLM < 0.11 refuses prompt + max_tokens past the context: ask again for the tokens that fit
        (vLLM >= 0.11 and llama.cpp clamp max_tokens themselves).  None: the prompt itself does not fit."""
        room = room_left(message)
        if room is None or not 0 < room < payload["max_tokens"]:
            return None
        try:
            return (await self.client.areplies(self.path, [{**payload, "max_tokens": room}], [key]))[0]
        except ContextLengthError:
            return None

    def _parse(self, answer, n: int, where: str) -> list[StepResult | None]:
        if isinstance(answer, list):  # llama-server: one completion object per prompt
            if len(answer) != n or n < 2:
                raise EngineError(where, f"unexpected answer ({n} completions expected, got {len(answer)}): "
                                         f"{str(answer)[:300]}")
            return [r for one in answer for r in self._parse(one, 1, where)]
        try:
            choices = answer["choices"]
            if not isinstance(choices, list) or len(choices) != n:
                raise ValueError(f"{n} choices expected, got {len(choices) if isinstance(choices, list) else choices!r}")
            choices = sorted(choices, key=lambda c: c.get("index", 0)) if n > 1 else choices
            res: list[StepResult | None] = []
            for choice in choices:
                text = choice.get("text") or ""
                if not isinstance(text, str):
                    raise ValueError(f"text is {type(text).__name__}")
                reason = choice.get("finish_reason")
                if reason == "abort":
                    res.append(None)
                    continue
                prompt_ids = choice.get("prompt_token_ids")
                prompt_tokens = len(prompt_ids) if isinstance(prompt_ids, list) else None
                cached = None
                if n == 1:
                    usage = answer.get("usage") or {}
                    tokens = check_number(where, "usage.completion_tokens", usage.get("completion_tokens", 0),
                                          0, self.sampling.max_tokens, integer=True)
                    if usage.get("prompt_tokens") is not None:
                        prompt_tokens = check_number(where, "usage.prompt_tokens", usage["prompt_tokens"], 0,
                                                     integer=True)
                        cached = cached_tokens(answer, usage, int(prompt_tokens), where)
                else:
                    ids = choice.get("token_ids")
                    if not isinstance(ids, list):
                        raise EngineError(where, "bad value in the answer: choices[].token_ids missing in an answer "
                                                 "to several prompts (a vLLM older than 0.10.2?); use "
                                                 "--prompts-per-request 1")
                    tokens = check_number(where, "choices[].token_ids (length)", len(ids), 0,
                                          self.sampling.max_tokens, integer=True)
                res.append(StepResult(_clean(text), int(tokens),
                                      finish_of(reason, choice.get("stop_reason"), "stop_reason" in choice, text, where),
                                      prompt_tokens, cached))
            return res
        except EngineError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise EngineError(where, f"unexpected answer ({exc}): {str(answer)[:300]}") from None


class VLLMEngine:
    """In-process ``vllm.LLM`` with prefix caching; one batched ``generate`` per call.

    ``vllm.LLM.generate`` blocks until the whole batch is done, so :meth:`agenerate` runs it in a worker
    thread, one call at a time (the engine is not meant to be entered from two threads at once);
    ``vllm.AsyncLLM`` would stream per request and needs its own engine set-up, for no gain in a
    round that waits for the whole batch anyway.

    Needs the ``[live]`` extra (vllm is imported here only).  ``llm_kwargs`` go to ``vllm.LLM``
    (``--vllm-arg``: ``gpu_memory_utilization``, ``max_model_len`` ...).
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
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._lock = threading.Lock()

    async def agenerate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        """:meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, requests)

    def generate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        with self._lock:
            return self._generate(requests)

    def _generate(self, requests: Sequence[StepRequest]) -> list[StepResult]:
        from vllm import SamplingParams

        f = self.sampling.fields()
        prompts = [step_prompt(self.template, r.problem, r.steps, r.system or self.system) for r in requests]
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        fits = [i for i, t in enumerate(ids) if len(t) < self.max_model_len]
        res: list[StepResult] = [StepResult("", 0, "context")] * len(requests)
        if not fits:
            return res
        # what the server does (vLLM >= 0.11 clamps max_tokens to the room left in the context)
        params = [SamplingParams(**{**f, "max_tokens": min(f["max_tokens"], self.max_model_len - len(ids[i]))},
                                 seed=requests[i].seed) for i in fits]
        outs = self.llm.generate([{"prompt_token_ids": ids[i]} for i in fits], params, use_tqdm=False)
        for i, o in zip(fits, outs):
            c = o.outputs[0]
            if c.finish_reason == "abort":
                raise EngineError(f"vllm:{self.name}", "the engine aborted a request (finish_reason 'abort')")
            reason = finish_of(c.finish_reason, c.stop_reason, True, c.text, f"vllm:{self.name}")
            res[i] = StepResult(_clean(c.text), len(c.token_ids), reason, len(ids[i]))
        return res


def make_engine(spec: str, sampling: Sampling, template: ChatTemplate, http: HTTPSettings,
                model: str | None = None, api_key: str | None = None, vllm_args: dict | None = None,
                prompts_per_request: int | None = None, wait_ready_s: float = 0.0) -> Engine:
    """``http(s)://host:port[,http://...]`` (OpenAI-compatible servers) or ``vllm:MODEL`` (in-process vLLM)."""
    if spec.startswith("vllm:"):
        return VLLMEngine(spec[len("vllm:"):], sampling, template, **(vllm_args or {}))
    return OpenAICompatibleEngine(spec, model, sampling, template, http=http, api_key=api_key,
                                  prompts_per_request=prompts_per_request, wait_ready_s=wait_ready_s)
