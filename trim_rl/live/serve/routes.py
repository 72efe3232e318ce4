"""The server's routes, on one ``APIRouter``; each hands its request to ``app.state.serving``."""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from trim_rl.live.serve.metrics import CONTENT_TYPE
from trim_rl.live.serve.middleware import with_cancellation
from trim_rl.live.serve.protocol import ChatCompletionRequest, CompletionRequest, Health, ModelList
from trim_rl.live.serve.serving import OpenAIServing

router = APIRouter()


def serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


@router.get("/health")
async def health(raw_request: Request) -> Health:
    return serving(raw_request).health()


@router.get("/v1/models")
async def models(raw_request: Request) -> ModelList:
    return serving(raw_request).models()


@router.get("/metrics")
async def metrics(raw_request: Request):
    return PlainTextResponse(serving(raw_request).metrics.render(), media_type=CONTENT_TYPE)


@router.post("/v1/chat/completions")
@with_cancellation
async def chat_completions(body: ChatCompletionRequest, raw_request: Request):
    return await serving(raw_request).chat(body)


@router.post("/v1/completions")
@with_cancellation
async def completions(body: CompletionRequest, raw_request: Request):
    return await serving(raw_request).completions(body)
