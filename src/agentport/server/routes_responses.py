"""OpenAI Responses routes: /v1/responses (streaming and not) and /v1/responses/input_tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentport.api import responses
from agentport.runtime import Runtime
from agentport.server.body import read_json
from agentport.server.streaming import collect, sse_response

router = APIRouter()


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    chat, echo = responses.decode_responses(await read_json(request))
    runtime = _runtime(request)
    prepared = await runtime.prepare(chat)
    batches = runtime.generate(prepared)
    if chat.stream:
        return sse_response(batches, responses.StreamEncoder(echo).encode_batch)
    builder = responses.ResponseBuilder(echo)
    done = await collect(batches, builder.add)
    return JSONResponse(builder.build(done))


@router.post("/v1/responses/input_tokens")
async def input_tokens(request: Request) -> JSONResponse:
    chat = responses.decode_input_tokens(await read_json(request))
    count = await _runtime(request).count_tokens(chat)
    return JSONResponse({"object": "response.input_tokens", "input_tokens": count})
