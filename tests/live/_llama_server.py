"""A handler for :class:`_stub_server.StubServer` that answers the way llama.cpp's ``llama-server`` does.

Read from the llama.cpp that llama-cpp-python 0.3.16's source distribution vendors
(``vendor/llama.cpp/tools/server/server.cpp`` and ``utils.hpp``):

- ``handle_completions_impl``: ``prompt`` is a string or a list; one task per prompt, ``index`` in
  prompt order; ``receive_multi_results`` puts each result at its index, and the answer is that one
  result's JSON for one prompt, else a JSON **array** of them.  An error in any task (a prompt too
  long for its slot) fails the whole request.
- ``server_task_result_cmpl_final::to_json_oaicompat``: each result is a whole completion object with
  one choice (``text``, ``index``, ``logprobs``, ``finish_reason``), its own ``usage`` and ``timings``;
  ``finish_reason`` is ``"stop"`` for a stop word and for EOS alike (no ``stop_reason``), else
  ``"length"``; ``logprobs`` is null, or with ``logprobs: N`` (read as ``n_probs``) the chat form
  ``{"content": [{id, token, bytes, logprob, top_logprobs: [{id, token, bytes, logprob}]}]}``.
- ``update_slots`` with context shift off (``--no-context-shift``): a prompt of at least the slot's
  context is HTTP 400 "the request exceeds the available context size. try increasing the context
  size or enable context shift" (``format_error_response``: ``{"error": {code, message, type}}``);
  a generation stops at the slot's end with ``finish_reason: "length"``.
- ``/health`` is 200 ``{"status": "ok"}`` once the model is loaded; ``/v1/models`` lists one card
  with ``owned_by: "llamacpp"``.

Token counts here are one token per 4 characters (the stub has no tokenizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

from _stub_server import Request

CONTEXT_ERROR = ("the request exceeds the available context size. try increasing the context size or enable "
                 "context shift")


def n_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def error(message: str, code: int = 400, err_type: str = "invalid_request_error"):
    return code, {"error": {"code": code, "message": message, "type": err_type}}


@dataclass
class FakeLlamaServer:
    """``gen(prompt, payload) -> (text, finish_reason)`` answers /v1/completions (the text is cut at
    ``max_tokens``); ``top(prompt) -> {token: logprob}`` gives the first token's alternatives."""

    model: str = "SmolLM2-135M-Instruct.Q4_1"
    n_ctx: int = 4096  # of one slot
    gen: Callable[[str, dict], tuple] | None = None
    top: Callable[[str], dict] | None = None
    seen: list = field(default_factory=list)  # the number of prompts of each completions request

    def __call__(self, req: Request):
        if req.path == "/health":
            return {"status": "ok"}
        if req.path == "/v1/models":
            return {"models": [{"name": self.model, "model": self.model}], "object": "list",
                    "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "llamacpp",
                              "meta": {"n_ctx_train": 8192}}]}
        if req.path == "/v1/completions":
            return self.completions(req.payload)
        return error("File Not Found", 404, "not_found_error")

    def completions(self, p: dict):
        prompts = p["prompt"] if isinstance(p["prompt"], list) else [p["prompt"]]
        self.seen.append(len(prompts))
        if any(n_tokens(q) >= self.n_ctx for q in prompts):
            return error(CONTEXT_ERROR)
        results = [self.result(i, q, p) for i, q in enumerate(prompts)]
        return results[0] if len(results) == 1 else results

    def result(self, i: int, prompt: str, p: dict) -> dict:
        text, finish = self.gen(prompt, p) if self.gen else ("", "stop")
        room = min(p.get("max_tokens", -1) if p.get("max_tokens", -1) >= 0 else 1 << 30,
                   self.n_ctx - n_tokens(prompt))
        if n_tokens(text) > room:
            text, finish = text[: 4 * room], "length"
        made = n_tokens(text)
        logprobs = None
        if p.get("logprobs") and self.top:
            alts = [{"id": j, "token": t, "bytes": list(t.encode()), "logprob": lp}
                    for j, (t, lp) in enumerate(self.top(prompt).items())][: int(p["logprobs"])]
            first = alts[0] if alts else {"id": 0, "token": text[:4], "bytes": [], "logprob": 0.0}
            logprobs = {"content": [{**first, "top_logprobs": alts}]}
        used = n_tokens(prompt)
        return {"choices": [{"text": text, "index": i, "logprobs": logprobs, "finish_reason": finish}],
                "created": 0, "model": self.model, "system_fingerprint": "b1-fake", "object": "text_completion",
                "usage": {"completion_tokens": made, "prompt_tokens": used, "total_tokens": made + used},
                "id": "chatcmpl-x", "timings": {"prompt_n": used, "prompt_ms": 1.0, "prompt_per_token_ms": 0.1,
                                                "prompt_per_second": 1e4, "predicted_n": made, "predicted_ms": 1.0,
                                                "predicted_per_token_ms": 0.1, "predicted_per_second": 1e4}}
