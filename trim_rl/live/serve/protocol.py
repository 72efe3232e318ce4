"""The OpenAI API as this server speaks it: request models, and response, chunk and error bodies.

Requests keep OpenAI's fields (unknown ones are accepted and ignored, as clients send many); every
known field is strictly typed (``"stream": "yes"`` or ``"max_tokens": "5"`` is a 400 naming it, not a
guess), and the ``trim`` extension (``extra_body={"trim": {...}}`` from the OpenAI client) also
refuses unknown fields, so a misspelt one is a 400 naming it.  Sampling fields (``temperature``, ``top_p``, ...) are ignored: the
server samples as its flags say (``--weak-temperature`` ...); ``seed`` fixes a request's sampling.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trim_rl.data.schema import MAX_STEPS


class TrimOptions(BaseModel):
    """Per-request routing: which policy, at what price, under which caps, with which trace."""

    model_config = ConfigDict(extra="forbid", strict=True)

    policy: str | None = Field(None, description="a served policy (default: the request's model)")
    budget: float | None = Field(None, ge=0, le=100, allow_inf_nan=False,
                                 description="% of always-strong's strong tokens, via the checkpoint's budget table")
    lam: float | None = Field(None, gt=0, allow_inf_nan=False, description="the price of one strong token")
    max_strong_tokens: int | None = Field(None, ge=0, description="no step is regenerated past this many strong tokens")
    max_interventions: int | None = Field(None, ge=0, description="most steps regenerated")
    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="most steps of the solution")
    return_steps: bool = Field(False, description="return the per-step trace")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=1, description="one choice per prompt")
    seed: int | None = Field(None, ge=-2 ** 63, le=2 ** 63 - 1)
    trim: TrimOptions | None = None
    user: str | None = None


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: Literal[False] | None = None
    tools: list | None = Field(None, max_length=0, description="no tool calls")


class CompletionRequest(_Common):
    prompt: str | list[str] = Field(min_length=1)
    logprobs: None = None
    echo: Literal[False] = False
    best_of: int | None = Field(None, ge=1, le=1)
    suffix: None = None


# ---------------------------------------------------------------------------------------------
# response bodies
# ---------------------------------------------------------------------------------------------
class Usage(BaseModel):
    """OpenAI's usage, plus how the solution's tokens split between the models."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    weak_tokens: int
    strong_tokens: int
    discarded_tokens: int
    prm_calls: int
    interventions: int
    steps: int
    strong_prompt_tokens: int = Field(0, description="prompt tokens of the strong calls whose server reported its cache")
    strong_cached_tokens: int = Field(0, description="the part of them the strong server's prefix cache held")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str | None
    trim: dict[str, Any] = Field(description="policy, lam, finish and, with return_steps, the step trace")


class _Response(BaseModel):
    """What the chat and completion responses share; a subclass narrows ``object`` and ``choices``
    (an overridden field keeps its place, so the JSON keys stay in OpenAI's order)."""
    id: str
    object: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Any]
    usage: Usage


class ChatCompletionResponse(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: str | None
    trim: dict[str, Any]


class CompletionResponse(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "trim_rl"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    active: int
    queued: int


def chat_response(rid: str, model: str, jobs, steps: bool) -> ChatCompletionResponse:
    (job,) = jobs
    return ChatCompletionResponse(id=rid, model=model, usage=Usage(**job.usage()), choices=[
        ChatChoice(index=0, message=AssistantMessage(content=job.content), finish_reason=job.finish,
                   trim=job.trace(steps))])


def completion_response(rid: str, model: str, jobs, steps: bool) -> CompletionResponse:
    return CompletionResponse(id=rid, model=model, usage=Usage(**sum_usage([j.usage() for j in jobs])), choices=[
        CompletionChoice(index=i, text=j.content, finish_reason=j.finish, trim=j.trace(steps))
        for i, j in enumerate(jobs)])


def sum_usage(usages: list[dict]) -> dict:
    return {k: sum(u[k] for u in usages) for k in usages[0]}


class ChunkWriter:
    """The server-sent events of one stream (chat: ``chat.completion.chunk``; completions:
    ``text_completion``), as OpenAI sends them: the deltas, a last chunk with the finish reason, then
    with ``include_usage`` one chunk with empty choices and the usage (every earlier chunk has
    ``usage: null``), then ``[DONE]``."""

    def __init__(self, rid: str, model: str, chat: bool, include_usage: bool):
        self.rid, self.model, self.chat, self.include_usage = rid, model, chat, include_usage
        self.created = int(time.time())

    def _chunk(self, choices: list, **extra) -> str:
        import json

        body = {"id": self.rid, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": choices, **extra}
        if self.include_usage and "usage" not in body:
            body["usage"] = None
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def _choice(self, text: str | None, finish: str | None, role: bool = False, **extra) -> dict:
        if self.chat:
            delta = {} if text is None else {"content": text}
            if role:
                delta = {"role": "assistant", **delta}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish, **extra}

    def start(self) -> str | None:
        """The chat stream's first chunk carries the role (completions have none)."""
        return self._chunk([self._choice("", None, role=True)]) if self.chat else None

    def delta(self, text: str) -> str:
        return self._chunk([self._choice(text, None)])

    def finish(self, job, steps: bool) -> str:
        out = self._chunk([self._choice(None, job.finish, trim=job.trace(steps))])
        if self.include_usage:
            out += self._chunk([], usage=job.usage())
        return out

    @staticmethod
    def error(body: dict) -> str:
        import json

        return f"data: {json.dumps(body)}\n\n"

    @staticmethod
    def done() -> str:
        return "data: [DONE]\n\n"


def models_list(names: list[str], created: int) -> ModelList:
    return ModelList(data=[ModelCard(id=n, created=created) for n in names])
