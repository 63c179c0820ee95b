"""Writers for event streams: SSE (Anthropic, OpenAI) and NDJSON (Ollama), and the collector
for non-streaming answers. A batch of events becomes one write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from agentport.core import Done, ErrorEvent, StreamEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _encoded(
    batches: AsyncIterator[list[StreamEvent]], encode: Callable[[list[StreamEvent]], str]
) -> AsyncIterator[str]:
    async for batch in batches:
        chunk = encode(batch)
        if chunk:
            yield chunk


def sse_response(
    batches: AsyncIterator[list[StreamEvent]], encode: Callable[[list[StreamEvent]], str]
) -> StreamingResponse:
    return StreamingResponse(
        _encoded(batches, encode), media_type="text/event-stream", headers=SSE_HEADERS
    )


def ndjson_response(
    batches: AsyncIterator[list[StreamEvent]], encode: Callable[[list[StreamEvent]], str]
) -> StreamingResponse:
    return StreamingResponse(_encoded(batches, encode), media_type="application/x-ndjson")


async def collect(
    batches: AsyncIterator[list[StreamEvent]], add: Callable[[StreamEvent], None]
) -> Done:
    """Feed every event to `add`; return the Done event, raise the error of an ErrorEvent."""
    async for batch in batches:
        for event in batch:
            if isinstance(event, Done):
                return event
            if isinstance(event, ErrorEvent):
                raise event.error
            add(event)
    raise RuntimeError("generation ended without a Done event")
