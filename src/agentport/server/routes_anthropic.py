"""Anthropic Messages routes: /v1/messages, /v1/messages/count_tokens, /v1/models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentport.api import anthropic
from agentport.runtime import Runtime
from agentport.server.body import read_json
from agentport.server.streaming import collect, sse_response

router = APIRouter()

SESSION_HEADER = "x-claude-code-session-id"


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    body = await read_json(request)
    chat = anthropic.decode_messages(body, session_id=request.headers.get(SESSION_HEADER))
    runtime = _runtime(request)
    prepared = await runtime.prepare(chat)
    batches = runtime.generate(prepared)
    if chat.stream:
        return sse_response(batches, anthropic.StreamEncoder(chat.model).encode_batch)
    builder = anthropic.MessageBuilder(chat.model)
    done = await collect(batches, builder.add)
    return JSONResponse(builder.build(done))


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> JSONResponse:
    chat = anthropic.decode_count_tokens(await read_json(request))
    return JSONResponse({"input_tokens": await _runtime(request).count_tokens(chat)})


def anthropic_models(request: Request) -> JSONResponse:
    entries = _runtime(request).store.list()
    return JSONResponse(anthropic.models_page([(e.name.display, e.modified) for e in entries]))
