"""The one chat handler: any dialect's chat endpoint, served through its codec.

Read the body, decode it (in a worker when it is big), prepare and generate on the runtime,
then stream the events through the codec's encoder or collect them into its builder.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from agentport.api.common import ChatCodec
from agentport.core import ChatRequest
from agentport.runtime import Runtime
from agentport.runtime.durations import parse_keep_alive
from agentport.server.body import by_size, decode_json, read_body
from agentport.server.state import runtime_of
from agentport.server.streaming import collect, stream_response


async def serve_chat(request: Request, codec: ChatCodec[Any]) -> Response:
    body = await read_body(request)
    headers = request.headers
    chat, echo = await by_size(len(body), lambda: codec.decode(decode_json(body), headers))
    runtime = runtime_of(request)
    if codec.loads_only is not None and codec.loads_only(chat):
        return await _load_or_unload(runtime, chat, codec)
    batches = runtime.generate(await runtime.prepare(chat))
    if chat.stream:
        encoder = codec.stream_encoder(chat, echo)
        return stream_response(batches, encoder.encode_batch, codec.framing)
    builder = codec.builder(chat, echo)
    done = await collect(batches, builder.add)
    return JSONResponse(builder.build(done))


async def _load_or_unload(runtime: Runtime, chat: ChatRequest, codec: ChatCodec[Any]) -> Response:
    """Nothing to generate: load the model, or unload it when `keep_alive` is 0 (as Ollama)."""
    assert codec.load_answer is not None
    keep = None if chat.keep_alive is None else parse_keep_alive(chat.keep_alive)
    entry = runtime.find(chat.model)
    if keep == 0:
        await runtime.unload(entry.name.display)
        return JSONResponse(codec.load_answer(chat, "unload"))
    loaded = await runtime.model(chat.model)
    runtime.keep(loaded, chat.keep_alive)
    return JSONResponse(codec.load_answer(chat, "load"))
