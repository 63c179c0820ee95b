"""Writers for event streams: SSE (Anthropic, OpenAI) and NDJSON (Ollama), and the collector
for non-streaming answers. A batch of events becomes one write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from agentport.api.common import Framing
from agentport.core import (
    Done,
    ErrorEvent,
    FinishReason,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)

CALL_EVENTS = (ToolCallStart, ToolCallDelta, ToolCallEnd)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _encoded(
    batches: AsyncIterator[list[StreamEvent]], encode: Callable[[list[StreamEvent]], str]
) -> AsyncIterator[str]:
    async for batch in batches:
        chunk = encode(batch)
        if chunk:
            yield chunk


MEDIA_TYPES = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


def stream_response(
    batches: AsyncIterator[list[StreamEvent]],
    encode: Callable[[list[StreamEvent]], str],
    framing: Framing,
) -> StreamingResponse:
    """The encoded stream, framed as SSE (with headers that keep proxies from buffering it) or
    NDJSON."""
    headers = SSE_HEADERS if framing == "sse" else None
    return StreamingResponse(
        _encoded(batches, encode), media_type=MEDIA_TYPES[framing], headers=headers
    )


async def collect(
    batches: AsyncIterator[list[StreamEvent]], add: Callable[[StreamEvent], None]
) -> Done:
    """Feed every event to `add`; return the Done event, raise the error of an ErrorEvent.
    A call the output ended inside (max_tokens) is given as the text the model wrote."""
    events: list[StreamEvent] = []
    async for batch in batches:
        for event in batch:
            if isinstance(event, ErrorEvent):
                raise event.error
            if isinstance(event, Done):
                cut = event.finish_reason is FinishReason.LENGTH
                for settled in cut_calls_as_text(events) if cut else events:
                    add(settled)
                return event
            events.append(event)
    raise RuntimeError("generation ended without a Done event")


def cut_calls_as_text(events: list[StreamEvent]) -> list[StreamEvent]:
    """`events` with every cut call (its ToolCallEnd has `cut`) replaced by its text."""
    cut = {e.index: e.cut for e in events if isinstance(e, ToolCallEnd) and e.cut is not None}
    if not cut:
        return events
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, ToolCallStart) and event.index in cut:
            out.append(TextDelta(cut[event.index]))
        elif not isinstance(event, CALL_EVENTS) or event.index not in cut:
            out.append(event)
    return out
