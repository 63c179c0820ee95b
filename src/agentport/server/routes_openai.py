"""OpenAI routes: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and
/v1/models/{id} (the model list answers in the Anthropic shape when the request carries an
`anthropic-version` header, as Claude Code's model discovery expects)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentport.api import anthropic, openai
from agentport.runtime import Runtime
from agentport.server import routes_anthropic
from agentport.server.body import read_json
from agentport.server.streaming import collect, sse_response

router = APIRouter()


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    decoded = openai.decode_chat(await read_json(request))
    chat = decoded.request
    runtime = _runtime(request)
    batches = runtime.generate(await runtime.prepare(chat))
    if chat.stream:
        encoder = openai.ChatStreamEncoder(chat.model, include_usage=decoded.include_usage)
        return sse_response(batches, encoder.encode_batch)
    builder = openai.ChatCompletionBuilder(chat.model)
    done = await collect(batches, builder.add)
    return JSONResponse(builder.build(done))


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    decoded = openai.decode_completion(await read_json(request))
    chat = decoded.request
    runtime = _runtime(request)
    batches = runtime.generate(await runtime.prepare(chat))
    if chat.stream:
        encoder = openai.CompletionStreamEncoder(
            chat.model, include_usage=decoded.include_usage, completion_id=openai.new_id("cmpl-")
        )
        return sse_response(batches, encoder.encode_batch)
    builder = openai.CompletionBuilder(chat.model)
    done = await collect(batches, builder.add)
    return JSONResponse(builder.build(done))


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> JSONResponse:
    decoded = openai.decode_embeddings(await read_json(request))
    vectors, n_tokens = await _runtime(request).embed(decoded.request)
    body = openai.embeddings_response(
        vectors, decoded.request.model, n_tokens, decoded.encoding_format
    )
    return JSONResponse(body)


@router.get("/v1/models")
async def models(request: Request) -> JSONResponse:
    if "anthropic-version" in request.headers:
        return routes_anthropic.anthropic_models(request)
    entries = _runtime(request).store.list()
    return JSONResponse(openai.models_list([(e.name.display, e.modified) for e in entries]))


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, request: Request) -> JSONResponse:
    entry = _runtime(request).find(model_id)
    if "anthropic-version" in request.headers:
        return JSONResponse(anthropic.models_page([(model_id, entry.modified)])["data"][0])
    return JSONResponse(openai.model_object(model_id, entry.modified))
