"""The /v1 routes besides chat: token counts (Anthropic, Responses), OpenAI embeddings, and the
model list, which answers in the Anthropic shape when the request carries an
`anthropic-version` header, as Claude Code's model discovery expects."""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.requests import Request

from agentport.api import anthropic, openai, responses
from agentport.server.body import read_json
from agentport.server.state import runtime_of

ANTHROPIC_HEADER = "anthropic-version"


async def count_tokens(request: Request) -> JSONResponse:
    chat = anthropic.decode_count_tokens(await read_json(request))
    return JSONResponse({"input_tokens": await runtime_of(request).count_tokens(chat)})


async def input_tokens(request: Request) -> JSONResponse:
    chat = responses.decode_input_tokens(await read_json(request))
    count = await runtime_of(request).count_tokens(chat)
    return JSONResponse({"object": "response.input_tokens", "input_tokens": count})


async def embeddings(request: Request) -> JSONResponse:
    decoded = openai.decode_embeddings(await read_json(request))
    vectors, n_tokens = await runtime_of(request).embed(decoded.request)
    body = openai.embeddings_response(
        vectors, decoded.request.model, n_tokens, decoded.encoding_format
    )
    return JSONResponse(body)


async def models(request: Request) -> JSONResponse:
    entries = await asyncio.to_thread(runtime_of(request).store.list)
    listed = [(e.name.display, e.modified) for e in entries]
    if ANTHROPIC_HEADER in request.headers:
        return JSONResponse(anthropic.models_page(listed))
    return JSONResponse(openai.models_list(listed))


async def model(request: Request) -> JSONResponse:
    model_id = request.path_params["model_id"]
    entry = runtime_of(request).find(model_id)
    if ANTHROPIC_HEADER in request.headers:
        return JSONResponse(anthropic.models_page([(model_id, entry.modified)])["data"][0])
    return JSONResponse(openai.model_object(model_id, entry.modified))
