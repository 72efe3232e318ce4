"""A handler for :class:`_stub_server.StubServer` that answers the way ``vllm serve`` does.

Read from vLLM 0.32.0's published wheel (and checked against 0.8.5, 0.10.2 and 0.24.0):

- ``vllm/entrypoints/openai/completion/protocol.py`` and ``serving.py``: ``prompt`` is a string or a
  list of strings; one choice per prompt, ``index`` in prompt order; ``usage`` sums every prompt;
  ``token_ids`` per choice only with ``return_token_ids``; with ``logprobs: N`` each choice's
  ``logprobs`` is ``CompletionLogProbs`` (``text_offset``, ``token_logprobs``, ``tokens``,
  ``top_logprobs``: one ``{token: logprob}`` per generated token, the sampled one included);
  ``stop_reason`` is the matched stop string,
  a stop token id (int) or None; ``finish_reason`` one of ``vllm/v1/engine/__init__.py``'s
  ``FINISH_REASON_STRINGS`` (stop, length, abort, error, repetition).
- ``vllm/entrypoints/serve/utils/api_utils.py`` ``get_max_tokens``: ``max_tokens`` is clamped to the
  room left in the context; ``vllm/renderers/params.py`` ``_token_len_check``: a prompt longer than
  ``max_model_len`` is HTTP 400 "This model's maximum context length is N tokens. However, your
  prompt contains M input tokens, ...", in the ``ErrorResponse`` of
  ``vllm/entrypoints/serve/engine/protocol.py`` (``{"error": {message, type, param, code}}``); one bad
  input fails the whole request.
- ``vllm/entrypoints/pooling/pooling/protocol.py`` / ``serving.py``: ``/pooling`` takes ``input`` as a
  string or a list; ``task`` is optional (the model's own: ``token_classify`` for a PRM); the answer
  has one ``{"index", "object": "pooling", "data"}`` per input.  ``vllm/model_executor/models/qwen2_rm.py``
  (``Qwen2ForProcessRewardModel``, STEP pooling) with ``models/config.py`` (``step_tag_id`` 151651):
  one ``[p_neg, p_pos]`` row per ``<extra_0>``.
- ``vllm/entrypoints/serve/instrumentator/health.py``: ``GET /health`` is 200 with an empty body;
  ``/v1/models`` cards carry ``owned_by: "vllm"`` and ``max_model_len``.

Token counts here are one token per 4 characters (the stub has no tokenizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

from _stub_server import Request

STEP_TAG = "<extra_0>"


def n_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def error_body(message: str, param: str | None = None, code: int = 400, err_type: str = "BadRequestError") -> dict:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def context_error(max_len: int, tokens: int):
    return 400, error_body(f"This model's maximum context length is {max_len} tokens. However, your prompt contains "
                           f"{tokens} input tokens, which exceeds this limit even without any output tokens. Please "
                           f"reduce the length of the input prompt.", "input_tokens")


@dataclass
class FakeVLLM:
    """``gen(prompt, payload) -> (text, finish_reason, stop_reason)`` answers /v1/completions (the text is
    cut at ``max_tokens``); ``top(prompt) -> {token: logprob}`` gives the first token's alternatives;
    ``prm(prompt) -> [p_pos per step]`` answers /pooling."""

    model: str = "Qwen/Qwen2.5-1.5B-Instruct"
    max_model_len: int = 4096
    gen: Callable[[str, dict], tuple] | None = None
    prm: Callable[[str], list[float]] | None = None
    top: Callable[[str], dict] | None = None
    health: Callable[[int], int] = lambda n: 200  # status of the n-th /health call
    seen: dict = field(default_factory=lambda: {"health": 0})

    def __call__(self, req: Request):
        if req.path == "/health":
            self.seen["health"] += 1
            return self.health(self.seen["health"]), ""
        if req.path == "/v1/models":
            return {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "vllm",
                                                "root": self.model, "parent": None, "max_model_len": self.max_model_len,
                                                "permission": []}]}
        if req.path == "/v1/completions":
            return self.completions(req.payload)
        if req.path == "/pooling":
            return self.pooling(req.payload)
        if req.path == "/tokenize":
            n = n_tokens(req.payload["prompt"])
            return {"count": n, "max_model_len": self.max_model_len, "tokens": list(range(n)), "token_strs": None}
        return 404, error_body(f"no route {req.path}", code=404, err_type="NotFoundError")

    def completions(self, p: dict):
        prompts = p["prompt"] if isinstance(p["prompt"], list) else [p["prompt"]]
        for q in prompts:
            if n_tokens(q) > self.max_model_len:
                return context_error(self.max_model_len, n_tokens(q))
        choices, used, made = [], 0, 0
        for i, q in enumerate(prompts):
            room = self.max_model_len - n_tokens(q)
            max_tokens = min(p.get("max_tokens", 16), room)
            text, finish, stop_reason = self.gen(q, p)
            if n_tokens(text) > max_tokens:
                text, finish, stop_reason = text[: 4 * max_tokens], "length", None
            k = n_tokens(text)
            logprobs = None
            if p.get("logprobs") is not None and self.top is not None:
                alts = dict(list(self.top(q).items())[: int(p["logprobs"]) + 1])
                first = next(iter(alts), text[:4])
                logprobs = {"text_offset": [0], "token_logprobs": [alts.get(first, -1.0)], "tokens": [first],
                            "top_logprobs": [alts]}
            choice = {"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish, "stop_reason": stop_reason,
                      "token_ids": list(range(k)) if p.get("return_token_ids") else None,
                      "prompt_logprobs": None, "prompt_token_ids": None, "routed_experts": None}
            choices.append(choice)
            used += n_tokens(q)
            made += k
        return {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": self.model, "choices": choices,
                "service_tier": None, "system_fingerprint": None,
                "usage": {"prompt_tokens": used, "total_tokens": used + made, "completion_tokens": made,
                          "prompt_tokens_details": None}}

    def pooling(self, p: dict):
        inputs = p["input"] if isinstance(p["input"], list) else [p["input"]]
        if p.get("task") not in (None, "token_classify"):
            return 400, error_body(f"Unsupported task: {p['task']!r} Supported tasks: ('token_classify',)", "task")
        for q in inputs:
            if n_tokens(q) > self.max_model_len:
                return context_error(self.max_model_len, n_tokens(q))
        data = []
        for i, q in enumerate(inputs):
            scores = self.prm(q)
            assert len(scores) == q.count(STEP_TAG)
            data.append({"index": i, "object": "pooling", "data": [[1 - s, s] for s in scores]})
        used = sum(n_tokens(q) for q in inputs)
        return {"id": "pool-x", "object": "list", "created": 0, "model": self.model, "data": data,
                "usage": {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0,
                          "prompt_tokens_details": None}}
